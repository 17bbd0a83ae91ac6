using System.Runtime.InteropServices;

namespace Vserver.Cli;

/// <summary>
/// A stream straight over an inherited fd with read(2)/write(2). FileStream would keep its own position and
/// pwrite at offset 0 when stdout is a regular file (`vsctl exec web1 -- cat f > out`), overwriting earlier output.
/// </summary>
internal sealed partial class FdStream(int fd, bool canRead) : Stream
{
    private const int EINTR = 4, EBADF = 9;

    public override bool CanRead => canRead;
    public override bool CanWrite => !canRead;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException("a stream over an inherited fd (pipe, terminal or appended file) does not seek");
    public override long Position { get => throw new NotSupportedException("a stream over an inherited fd (pipe, terminal or appended file) does not seek"); set => throw new NotSupportedException("a stream over an inherited fd (pipe, terminal or appended file) does not seek"); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override unsafe int Read(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            while (true)
            {
                var n = ReadFd(fd, p, buffer.Length);
                if (n >= 0) return (int)n;
                var errno = Marshal.GetLastPInvokeError();
                if (errno == EBADF) return 0;
                if (errno != EINTR) throw new IOException($"read fd {fd}: errno {errno}");
            }
        }
    }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override unsafe void Write(ReadOnlySpan<byte> buffer)
    {
        fixed (byte* start = buffer)
        {
            var p = start;
            var count = buffer.Length;
            while (count > 0)
            {
                var n = WriteFd(fd, p, count);
                if (n < 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    if (errno == EINTR) continue;
                    if (errno == EBADF) return;
                    throw new IOException($"write fd {fd}: errno {errno}");
                }
                p += n;
                count -= (int)n;
            }
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Task.Run(() => Read(buffer, offset, count), cancellationToken);

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (MemoryMarshal.TryGetArray<byte>(buffer, out var segment))
            return new ValueTask<int>(ReadAsync(segment.Array!, segment.Offset, segment.Count, cancellationToken));
        return base.ReadAsync(buffer, cancellationToken);
    }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        Write(buffer.Span);
        return ValueTask.CompletedTask;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        Write(buffer, offset, count);
        return Task.CompletedTask;
    }

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException("a stream over an inherited fd (pipe, terminal or appended file) does not seek");
    public override void SetLength(long value) => throw new NotSupportedException("a stream over an inherited fd (pipe, terminal or appended file) does not seek");

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint ReadFd(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    private static unsafe partial nint WriteFd(int fd, byte* buffer, nint count);
}
