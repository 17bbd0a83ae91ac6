using System.Diagnostics;
using System.Security.Cryptography;

namespace Vserver.Isolation.Images;

/// <summary>A read-only stream that hashes every byte read through it (the digest of an imported file, of an OCI blob).</summary>
internal sealed class HashingStream(Stream inner, HashAlgorithmName algorithm) : Stream
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(algorithm);

    private long _read;

    /// <summary>The digest of what was read, as OCI spells digests ("sha256:hex").</summary>
    public string Digest()
    {
        var name = algorithm == HashAlgorithmName.SHA512 ? "sha512" : "sha256";
        return $"{name}:{Convert.ToHexStringLower(_hash.GetCurrentHash())}";
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = inner.Read(buffer);
        _hash.AppendData(buffer[..n]);
        _read += n;
        return n;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) _hash.Dispose();
        base.Dispose(disposing);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => _read; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>
/// The tar stream inside an archive: its compression told by its first bytes, undone by the host's own tool (gzip,
/// xz, zstd, bzip2) as a filter, fed from the raw stream by a thread of its own. The raw stream is always read to its
/// end, whatever happens to the tar inside (an upload is taken whole before the answer, and its digest is of all of
/// it); a decompressor that fails says so, which is how a truncated .tar.gz is told from a whole one.
/// </summary>
internal sealed class ArchiveInput : IDisposable
{
    private readonly Stream _raw;
    private readonly Process? _filter;
    private readonly Task _feeder = Task.CompletedTask;
    private readonly List<string> _stderr = [];

    private ArchiveInput(Stream raw, ArchiveCompression compression, byte[] head, string what)
    {
        _raw = raw;
        Compression = compression;
        What = what;
        if (compression == ArchiveCompression.None)
        {
            Tar = new ConcatStream(head, raw);
            return;
        }
        var (program, args) = ArchiveFormat.Filter(compression, compress: false);
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["LC_ALL"] = "C";
        try
        {
            _filter = Process.Start(psi) ?? throw new IOException($"{program}: could not start");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Drain(raw);
            throw new IOException($"{program} is needed to unpack a {ArchiveFormat.Name(compression)} archive and cannot run ({e.Message}); install it (make deps)");
        }
        _filter.ErrorDataReceived += (_, e) =>
        {
            lock (_stderr)
                if (e.Data is { Length: > 0 } line && _stderr.Count < 20) _stderr.Add(line);
        };
        _filter.BeginErrorReadLine();
        var stdin = _filter.StandardInput.BaseStream;
        _feeder = Task.Factory.StartNew(() => Feed(head, raw, stdin), TaskCreationOptions.LongRunning);
        Tar = _filter.StandardOutput.BaseStream;
    }

    public ArchiveCompression Compression { get; }
    public string What { get; }

    /// <summary>The uncompressed tar bytes.</summary>
    public Stream Tar { get; }

    /// <summary>Looks at the first bytes of <paramref name="raw"/> and opens the tar inside; anything but a tar archive
    /// (plain or compressed with a known tool) is refused, after <paramref name="raw"/> was read to its end.</summary>
    public static ArchiveInput Open(Stream raw, string what)
    {
        var head = new byte[ArchiveFormat.HeadBytes];
        var length = 0;
        int n;
        while (length < head.Length && (n = raw.Read(head, length, head.Length - length)) > 0) length += n;
        head = head[..length];
        if (ArchiveFormat.Sniff(head) is { } compression) return new ArchiveInput(raw, compression, head, what);
        Drain(raw);
        throw new ArchiveException(ArchiveReasons.UnknownFormat,
            $"{what} is not a tar archive (plain, gzip, xz, zstd or bzip2) nor an OCI layout: {ArchiveFormat.Describe(head)}");
    }

    /// <summary>After the tar's end marker: the rest read and dropped (tar pads to whole records), the raw stream read
    /// to its end, and the decompressor's verdict (a truncated or corrupt stream fails it).</summary>
    public void Complete()
    {
        Drain(Tar);
        _feeder.GetAwaiter().GetResult();
        if (_filter is null) return;
        _filter.WaitForExit();
        if (FilterFailure() is { } failure) throw failure;
    }

    /// <summary>On a refusal: the decompressor ended, the raw stream read to its end. A truncation the tar reader saw
    /// is said in the decompressor's words when it failed too.</summary>
    public ArchiveException Abandon(ArchiveException refusal)
    {
        Abandon();
        return refusal.Reason == ArchiveReasons.Truncated && FilterFailure() is { } failure ? failure : refusal;
    }

    public void Abandon()
    {
        if (_filter is not null)
        {
            // A decompressor that already ended (a truncated stream) keeps its exit status; one still running is ended.
            if (!_filter.WaitForExit(TimeSpan.FromMilliseconds(200)))
            {
                try
                {
                    _filter.Kill();
                }
                catch (InvalidOperationException)
                {
                }
                _filter.WaitForExit();
            }
        }
        try
        {
            _feeder.GetAwaiter().GetResult();
        }
        catch (IOException)
        {
        }
        if (_filter is not null) return;
        try
        {
            Drain(_raw);
        }
        catch (IOException)
        {
            // The raw stream failed (the client went away): nothing is left to read.
        }
    }

    private ArchiveException? FilterFailure()
    {
        if (_filter is not { HasExited: true, ExitCode: not 0 }) return null;
        _filter.WaitForExit();
        string said;
        var program = ArchiveFormat.Filter(Compression, compress: false).Program;
        lock (_stderr) said = _stderr.Count == 0 ? $"{program} exited with code {_filter.ExitCode}" : string.Join("; ", _stderr.TakeLast(2));
        var truncated = said.Contains("end of", StringComparison.OrdinalIgnoreCase) || said.Contains("truncated", StringComparison.OrdinalIgnoreCase)
            || said.Contains("premature", StringComparison.OrdinalIgnoreCase);
        return new ArchiveException(truncated ? ArchiveReasons.Truncated : ArchiveReasons.Corrupt,
            $"{What} is a {(truncated ? "truncated" : "corrupt")} {ArchiveFormat.Name(Compression)} stream ({said})");
    }

    /// <summary>Copies the raw stream into the decompressor; once it stops taking input (it ended, or was ended), the rest
    /// is read and dropped.</summary>
    private static void Feed(byte[] head, Stream raw, Stream stdin)
    {
        var buffer = new byte[1 << 16];
        var open = true;
        try
        {
            try
            {
                stdin.Write(head);
            }
            catch (IOException)
            {
                open = false;
            }
            int n;
            // A read that fails (the client went away mid-upload) ends the feeding too; whoever waits for the feeder sees it.
            while ((n = raw.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (!open) continue;
                try
                {
                    stdin.Write(buffer, 0, n);
                }
                catch (IOException)
                {
                    open = false;
                }
            }
        }
        finally
        {
            // Always closed: the decompressor then ends, and so does the reading of its output.
            try
            {
                stdin.Dispose();
            }
            catch (IOException)
            {
            }
        }
    }

    private static void Drain(Stream stream)
    {
        var buffer = new byte[1 << 16];
        while (stream.Read(buffer, 0, buffer.Length) > 0)
        {
        }
    }

    public void Dispose()
    {
        if (_filter is null) return;
        if (!_filter.HasExited)
        {
            try
            {
                _filter.Kill();
            }
            catch (InvalidOperationException)
            {
            }
        }
        _filter.Dispose();
    }

    /// <summary>The bytes looked at first, then the rest of the stream.</summary>
    private sealed class ConcatStream(byte[] head, Stream rest) : Stream
    {
        private int _position;

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_position < head.Length)
            {
                var n = Math.Min(buffer.Length, head.Length - _position);
                head.AsSpan(_position, n).CopyTo(buffer);
                _position += n;
                return n;
            }
            return rest.Read(buffer);
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
