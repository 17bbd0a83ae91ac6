using System.Runtime.InteropServices;

namespace Vserver.Cli;

/// <summary>The local terminal as exec needs it; a fake stands in for it in tests.</summary>
internal interface ITerminal
{
    bool IsTerminal(int fd);

    /// <summary>Rows and columns of the terminal on stdin (else stdout), or null when neither is a terminal.</summary>
    (int Rows, int Cols)? Size();

    /// <summary>Switches stdin to raw mode; disposing the result restores the previous settings.</summary>
    IDisposable EnterRawMode();
}

/// <summary>termios and winsize through libc (no Console: .NET's console layer rewrites terminal settings).</summary>
internal sealed unsafe partial class PosixTerminal : ITerminal
{
    public static readonly PosixTerminal Instance = new();

    private const int StdIn = 0;
    private const int StdOut = 1;
    private const int TCSANOW = 0;
    private const int TCSADRAIN = 1;
    private const nuint TIOCGWINSZ = 0x5413;
    // struct termios is 60 bytes with glibc and musl on x86-64 and arm64; the buffer is opaque and generous.
    private const int TermiosBufferSize = 256;

    public bool IsTerminal(int fd) => isatty(fd) == 1;

    public (int Rows, int Cols)? Size()
    {
        foreach (var fd in (ReadOnlySpan<int>)[StdIn, StdOut])
        {
            WinSize size;
            if (ioctl(fd, TIOCGWINSZ, &size) == 0 && size.Rows > 0 && size.Cols > 0) return (size.Rows, size.Cols);
        }
        return null;
    }

    public IDisposable EnterRawMode()
    {
        var saved = new byte[TermiosBufferSize];
        var raw = new byte[TermiosBufferSize];
        fixed (byte* s = saved)
        fixed (byte* r = raw)
        {
            if (tcgetattr(StdIn, s) != 0) throw LastError("cannot read the terminal settings");
            Buffer.MemoryCopy(s, r, TermiosBufferSize, TermiosBufferSize);
            cfmakeraw(r);
            if (tcsetattr(StdIn, TCSANOW, r) != 0) throw LastError("cannot switch the terminal to raw mode");
        }
        return new Restore(saved);
    }

    private static IOException LastError(string what) =>
        new($"{what}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");

    private sealed class Restore(byte[] saved) : IDisposable
    {
        private int _done;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _done, 1) != 0) return;
            fixed (byte* s = saved)
            {
                _ = tcsetattr(StdIn, TCSADRAIN, s);
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct WinSize
    {
        public ushort Rows;
        public ushort Cols;
        public ushort XPixels;
        public ushort YPixels;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int isatty(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int tcgetattr(int fd, byte* termios);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int tcsetattr(int fd, int optionalActions, byte* termios);

    [LibraryImport("libc")]
    private static partial void cfmakeraw(byte* termios);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, nuint request, WinSize* size);
}

/// <summary>Whether a standard descriptor is really the one vsctl was started with.</summary>
internal static partial class StandardDescriptors
{
    private const int F_GETFD = 1;
    private const int FD_CLOEXEC = 1;

    /// <summary>
    /// Started with a closed stdin (<c>&lt;&amp;-</c>), descriptor 0 is soon reused by the runtime for its own pipes, and
    /// reading it would hang or steal the runtime's wake-ups. Those are opened close-on-exec; a descriptor inherited
    /// across exec never is.
    /// </summary>
    public static bool IsInherited(int fd)
    {
        var flags = fcntl(fd, F_GETFD);
        return flags >= 0 && (flags & FD_CLOEXEC) == 0;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fcntl(int fd, int cmd);
}
