using System.Globalization;
using System.Text;

namespace Vserver.Isolation.Images;

/// <summary>What a tar entry makes.</summary>
public enum TarEntryKind { File, HardLink, Symlink, CharDevice, BlockDevice, Directory, Fifo }

/// <summary>One entry of a tar archive as <see cref="TarArchiveReader"/> reads it (names as the archive spells them).</summary>
public sealed record TarArchiveEntry
{
    public required string Name { get; init; }
    public required TarEntryKind Kind { get; init; }
    /// <summary>Permission bits with setuid, setgid and sticky (07777).</summary>
    public uint Mode { get; init; }
    public long Uid { get; init; }
    public long Gid { get; init; }
    /// <summary>Bytes of data that follow (a regular file's contents; 0 for every other kind).</summary>
    public long Size { get; init; }
    public long MtimeSeconds { get; init; }
    public int MtimeNanoseconds { get; init; }
    /// <summary>A symlink's target, or the archive member a hard link names.</summary>
    public string LinkName { get; init; } = "";
    public uint DevMajor { get; init; }
    public uint DevMinor { get; init; }
    /// <summary>Extended attributes from pax records (SCHILY.xattr.*, LIBARCHIVE.xattr.*), values as raw bytes.</summary>
    public IReadOnlyDictionary<string, byte[]> Xattrs { get; init; } = new Dictionary<string, byte[]>();
}

/// <summary>
/// A strict reader of tar archives (POSIX ustar and pax, GNU long names) from a stream that need not seek. Its own
/// rather than System.Formats.Tar's for three things an image import needs: pax values as bytes (a file capability
/// is binary, and .NET decodes pax records as text), an end-of-archive marker that is required (an archive cut at an
/// entry's boundary would otherwise read as a smaller, whole one) and every header's checksum verified.
/// </summary>
public sealed class TarArchiveReader : IDisposable
{
    private const int Block = 512;
    private const int MaxPaxBytes = 1 << 20, MaxLongNameBytes = 64 << 10;
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Stream _input;
    private readonly byte[] _header = new byte[Block];
    private readonly Dictionary<string, byte[]> _globals = new(StringComparer.Ordinal);
    private EntryData? _data;
    private string _last = "";

    public TarArchiveReader(Stream input)
    {
        _input = input is BufferedStream or MemoryStream ? input : new BufferedStream(input, 1 << 16);
    }

    /// <summary>Entries read so far.</summary>
    public int Count { get; private set; }

    /// <summary>The data of the entry <see cref="Next"/> returned last; what is left unread is skipped by the next call.</summary>
    public Stream Data => _data ?? Stream.Null;

    /// <summary>The next entry, or null at the end-of-archive marker. Throws <see cref="ArchiveException"/> for an
    /// archive that ends early, a header that is not one, or an entry of a kind an image cannot hold.</summary>
    public TarArchiveEntry? Next()
    {
        _data?.SkipRest();
        _data = null;
        Dictionary<string, byte[]>? pax = null;
        string? longName = null, longLink = null;
        while (true)
        {
            if (!ReadBlock(_header))
                throw new ArchiveException(ArchiveReasons.Truncated, Count == 0 && pax is null && longName is null
                    ? "the archive is empty"
                    : $"the archive ends after {Count} entr{(Count == 1 ? "y" : "ies")}{After()} without its end marker (two zero blocks): it is truncated");
            if (_header.AsSpan().IndexOfAnyExcept((byte)0) < 0)
            {
                // The end: a second zero block, or (GNU tar reads it so too) the end of the stream after one.
                var second = new byte[Block];
                _ = ReadBlock(second);
                return null;
            }
            VerifyChecksum();
            if (!ArchiveFormat.IsTarHeader(_header))
                throw new ArchiveException(Count == 0 ? ArchiveReasons.UnknownFormat : ArchiveReasons.Corrupt,
                    Count == 0 ? "not a ustar or pax tar archive (its first header has no 'ustar' magic)" : $"the header after entry '{Shown(_last)}' is no tar header");
            var type = (char)_header[156];
            var size = Number(_header.AsSpan(124, 12), "size");
            switch (type)
            {
                case 'x':
                    pax ??= new Dictionary<string, byte[]>(StringComparer.Ordinal);
                    foreach (var (k, v) in ReadPax(size)) pax[k] = v;
                    continue;
                case 'g':
                    foreach (var (k, v) in ReadPax(size)) _globals[k] = v;
                    continue;
                case 'L':
                    longName = Text(ReadLong(size), "long name");
                    continue;
                case 'K':
                    longLink = Text(ReadLong(size), "long link name");
                    continue;
                case 'V':
                    // A volume label names the archive, not a file.
                    Skip(Padded(size));
                    continue;
            }
            var entry = Entry(type, size, pax, longName, longLink);
            Count++;
            _last = entry.Name;
            _data = new EntryData(this, entry, entry.Kind == TarEntryKind.File || type == 'D' ? entry.Size : 0);
            if (type == 'D') _data.SkipRest();
            return entry;
        }
    }

    private TarArchiveEntry Entry(char type, long size, Dictionary<string, byte[]>? local, string? longName, string? longLink)
    {
        var records = new Dictionary<string, byte[]>(_globals, StringComparer.Ordinal);
        if (local is not null)
            foreach (var (k, v) in local) records[k] = v;
        var gnu = _header.AsSpan(257, 8).SequenceEqual("ustar  \0"u8);
        var name = Field(0, 100, "name");
        // The POSIX prefix field; GNU archives keep times there instead.
        if (!gnu && _header[345] != 0) name = Field(345, 155, "name prefix") + "/" + name;
        if (longName is not null) name = longName;
        if (PaxText(records, "path") is { Length: > 0 } paxName) name = paxName;
        if (records.Keys.Any(k => k.StartsWith("GNU.sparse.", StringComparison.Ordinal)) || type == 'S')
            throw new ArchiveException(ArchiveReasons.Unsupported,
                $"entry '{Shown(name)}' is a sparse file, which an image import does not unpack; make the archive without --sparse", name);
        var kind = type switch
        {
            '0' or '\0' or '7' => TarEntryKind.File,
            '1' => TarEntryKind.HardLink,
            '2' => TarEntryKind.Symlink,
            '3' => TarEntryKind.CharDevice,
            '4' => TarEntryKind.BlockDevice,
            '5' or 'D' => TarEntryKind.Directory,
            '6' => TarEntryKind.Fifo,
            _ => throw new ArchiveException(ArchiveReasons.Unsupported,
                $"entry '{Shown(name)}' is of tar type '{Shown(type.ToString())}' ({TypeName(type)}), which no root file system holds", name),
        };
        var link = Field(157, 100, "link name");
        if (longLink is not null) link = longLink;
        if (PaxText(records, "linkpath") is { Length: > 0 } paxLink) link = paxLink;
        var (seconds, nanoseconds) = records.TryGetValue("mtime", out var mtime) ? Time(mtime, name) : (Number(_header.AsSpan(136, 12), "mtime"), 0);
        var xattrs = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var (key, value) in records)
        {
            if (key.StartsWith("SCHILY.xattr.", StringComparison.Ordinal)) xattrs[key["SCHILY.xattr.".Length..]] = value;
        }
        foreach (var (key, value) in records)
        {
            // libarchive writes both; its own form URL-encodes the name and base64-encodes the value.
            if (!key.StartsWith("LIBARCHIVE.xattr.", StringComparison.Ordinal)) continue;
            var attribute = Uri.UnescapeDataString(key["LIBARCHIVE.xattr.".Length..]);
            if (xattrs.ContainsKey(attribute)) continue;
            try
            {
                xattrs[attribute] = Convert.FromBase64String(Encoding.ASCII.GetString(value));
            }
            catch (FormatException)
            {
                throw new ArchiveException(ArchiveReasons.Corrupt, $"entry '{Shown(name)}' has an extended attribute '{Shown(attribute)}' that is not base64", name);
            }
        }
        return new TarArchiveEntry
        {
            Name = name,
            Kind = kind,
            Mode = (uint)(Number(_header.AsSpan(100, 8), "mode") & 0xFFF),
            Uid = PaxNumber(records, "uid", name) ?? Number(_header.AsSpan(108, 8), "uid"),
            Gid = PaxNumber(records, "gid", name) ?? Number(_header.AsSpan(116, 8), "gid"),
            Size = kind == TarEntryKind.File || type == 'D' ? PaxNumber(records, "size", name) ?? size : 0,
            MtimeSeconds = seconds,
            MtimeNanoseconds = nanoseconds,
            LinkName = link,
            DevMajor = (uint)Math.Min(uint.MaxValue, Number(_header.AsSpan(329, 8), "devmajor")),
            DevMinor = (uint)Math.Min(uint.MaxValue, Number(_header.AsSpan(337, 8), "devminor")),
            Xattrs = xattrs,
        };
    }

    private static string TypeName(char type) => type switch
    {
        'M' => "a GNU multi-volume continuation",
        'N' => "an old GNU long-name list",
        _ => "unknown",
    };

    private void VerifyChecksum()
    {
        var stored = Number(_header.AsSpan(148, 8), "checksum");
        long unsigned = 0, signed = 0;
        for (var i = 0; i < Block; i++)
        {
            var b = i is >= 148 and < 156 ? (byte)' ' : _header[i];
            unsigned += b;
            signed += (sbyte)b;
        }
        if (stored != unsigned && stored != signed)
            throw new ArchiveException(Count == 0 ? ArchiveReasons.UnknownFormat : ArchiveReasons.Corrupt,
                Count == 0 ? "not a tar archive (its first header's checksum is wrong)" : $"the header after entry '{Shown(_last)}' has a wrong checksum: the archive is corrupt");
    }

    /// <summary>A numeric header field: octal digits (space or NUL terminated) or GNU's base-256 (high bit set).</summary>
    private long Number(ReadOnlySpan<byte> field, string what)
    {
        if ((field[0] & 0x80) != 0)
        {
            if (field[0] == 0xff) throw Corrupt($"a negative {what}");
            long big = field[0] & 0x7f;
            foreach (var b in field[1..])
            {
                if (big > (long.MaxValue >> 8)) throw Corrupt($"a {what} too large");
                big = (big << 8) | b;
            }
            return big;
        }
        long value = 0;
        var i = 0;
        while (i < field.Length && field[i] is (byte)' ' or 0) i++;
        for (; i < field.Length && field[i] is not ((byte)' ' or 0); i++)
        {
            if (field[i] is < (byte)'0' or > (byte)'7') throw Corrupt($"a {what} field that is not octal");
            if (value > (long.MaxValue >> 3)) throw Corrupt($"a {what} too large");
            value = (value << 3) | (long)(field[i] - '0');
        }
        return value;
    }

    private ArchiveException Corrupt(string what) =>
        new(Count == 0 ? ArchiveReasons.UnknownFormat : ArchiveReasons.Corrupt,
            Count == 0 ? $"not a tar archive (its first header has {what})" : $"the header after entry '{Shown(_last)}' has {what}: the archive is corrupt");

    private string Field(int offset, int length, string what)
    {
        var span = _header.AsSpan(offset, length);
        var end = span.IndexOf((byte)0);
        return Text(end < 0 ? span : span[..end], what);
    }

    private string Text(ReadOnlySpan<byte> bytes, string what)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw new ArchiveException(ArchiveReasons.Unsupported,
                $"an entry{After()} has a {what} that is not UTF-8 ({Convert.ToHexStringLower(bytes[..Math.Min(bytes.Length, 32)])}); rename it or repack the archive");
        }
    }

    private string After() => Count == 0 ? "" : $" (after '{Shown(_last)}')";

    private byte[] ReadLong(long size)
    {
        if (size > MaxLongNameBytes) throw Corrupt($"a long name of {size} bytes");
        var data = ReadData(size);
        var end = Array.IndexOf(data, (byte)0);
        return end < 0 ? data : data[..end];
    }

    private Dictionary<string, byte[]> ReadPax(long size)
    {
        if (size > MaxPaxBytes) throw Corrupt($"pax records of {size} bytes");
        var data = ReadData(size);
        var records = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var pos = 0;
        while (pos < data.Length)
        {
            // "LENGTH KEY=VALUE\n", LENGTH counting the whole record.
            var space = Array.IndexOf(data, (byte)' ', pos);
            if (space < 0 || !int.TryParse(data.AsSpan(pos, space - pos), NumberStyles.None, CultureInfo.InvariantCulture, out var length)
                || length <= space - pos || pos + length > data.Length || data[pos + length - 1] != (byte)'\n')
                throw Corrupt("malformed pax records");
            var record = data.AsSpan(space + 1, pos + length - 1 - (space + 1));
            var eq = record.IndexOf((byte)'=');
            if (eq <= 0) throw Corrupt("a pax record without '='");
            records[Text(record[..eq], "pax key")] = record[(eq + 1)..].ToArray();
            pos += length;
        }
        return records;
    }

    private string? PaxText(Dictionary<string, byte[]> records, string key) =>
        records.TryGetValue(key, out var value) ? Text(value, $"pax {key}") : null;

    private long? PaxNumber(Dictionary<string, byte[]> records, string key, string name)
    {
        if (!records.TryGetValue(key, out var value) || value.Length == 0) return null;
        return long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var number)
            ? number
            : throw new ArchiveException(ArchiveReasons.Corrupt, $"entry '{Shown(name)}' has a pax {key} that is no number", name);
    }

    private static (long Seconds, int Nanoseconds) Time(byte[] value, string name)
    {
        var text = Encoding.ASCII.GetString(value);
        var dot = text.IndexOf('.', StringComparison.Ordinal);
        var whole = dot < 0 ? text : text[..dot];
        var fraction = dot < 0 ? "" : text[(dot + 1)..];
        if (!long.TryParse(whole, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var seconds) || fraction.Any(c => c is < '0' or > '9'))
            throw new ArchiveException(ArchiveReasons.Corrupt, $"entry '{Shown(name)}' has a pax mtime '{Shown(text)}' that is no time", name);
        var nanos = fraction.Length == 0 ? 0 : int.Parse(fraction.PadRight(9, '0')[..9], CultureInfo.InvariantCulture);
        // A negative time with a fraction counts down: -1.5 is 2 s before the epoch plus 0.5.
        if (text.StartsWith('-') && nanos > 0)
        {
            seconds -= 1;
            nanos = 1_000_000_000 - nanos;
        }
        return (seconds, nanos);
    }

    private static long Padded(long size) => (size + Block - 1) / Block * Block;

    private byte[] ReadData(long size)
    {
        var data = new byte[size];
        ReadExactly(data, "pax or long-name records");
        Skip(Padded(size) - size);
        return data;
    }

    private void ReadExactly(Span<byte> buffer, string what)
    {
        var read = 0;
        while (read < buffer.Length)
        {
            var n = _input.Read(buffer[read..]);
            if (n == 0) throw new ArchiveException(ArchiveReasons.Truncated, $"the archive ends in the middle of {what}{After()}: it is truncated");
            read += n;
        }
    }

    /// <summary>One whole block; false at the end of the stream; a part of one is a truncated archive.</summary>
    private bool ReadBlock(byte[] block)
    {
        var read = 0;
        while (read < Block)
        {
            var n = _input.Read(block, read, Block - read);
            if (n == 0)
            {
                if (read == 0) return false;
                throw new ArchiveException(ArchiveReasons.Truncated, $"the archive ends in the middle of a header{After()}: it is truncated");
            }
            read += n;
        }
        return true;
    }

    private void Skip(long bytes)
    {
        var buffer = new byte[(int)Math.Min(bytes, 1 << 16)];
        while (bytes > 0)
        {
            var n = _input.Read(buffer, 0, (int)Math.Min(bytes, buffer.Length));
            if (n == 0) throw new ArchiveException(ArchiveReasons.Truncated, $"the archive ends in the middle of entry '{Shown(_last)}': it is truncated", _last);
            bytes -= n;
        }
    }

    private static string Shown(string name) => ArchivePath.Shown(name);

    /// <summary>The input is the caller's: it stays open.</summary>
    public void Dispose() => _data?.Dispose();

    /// <summary>One entry's data: exactly its size, then the padding to the next block is skipped.</summary>
    private sealed class EntryData : Stream
    {
        private readonly TarArchiveReader _reader;
        private readonly TarArchiveEntry _entry;
        private readonly long _size;
        private long _remaining;
        private bool _padded;

        public EntryData(TarArchiveReader reader, TarArchiveEntry entry, long size)
        {
            _reader = reader;
            _entry = entry;
            _size = size;
            _remaining = size;
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_remaining == 0 || buffer.Length == 0) return 0;
            var n = _reader._input.Read(buffer[..(int)Math.Min(buffer.Length, _remaining)]);
            if (n == 0)
                throw new ArchiveException(ArchiveReasons.Truncated,
                    $"entry '{Shown(_entry.Name)}' ends after {_size - _remaining} of its {_size} bytes: the archive is truncated", _entry.Name);
            _remaining -= n;
            return n;
        }

        public void SkipRest()
        {
            if (_padded) return;
            _reader.Skip(_remaining);
            _remaining = 0;
            _reader.Skip(Padded(_size) - _size);
            _padded = true;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => _size;
        public override long Position { get => _size - _remaining; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
