using System.Runtime.InteropServices;

namespace Vserver.Isolation.Cgroups;

/// <summary>The few libc calls the cgroup layer needs, so errors carry the real errno.</summary>
internal static unsafe partial class CgroupNative
{
    private const string Libc = "libc";

    // Generic Linux ABI values (identical on x86-64 and arm64).
    public const int O_RDONLY = 0;
    public const int O_WRONLY = 1;
    public const int O_TRUNC = 0x200;
    public const int O_CLOEXEC = 0x80000;
    public const int SIGKILL = 9;

    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, uint mode);

    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, byte* buffer, nuint count);

    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, byte* buffer, nuint count);

    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(Libc, EntryPoint = "mkdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int MkDir(string path, uint mode);

    [LibraryImport(Libc, EntryPoint = "rmdir", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int RmDir(string path);

    [LibraryImport(Libc, EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);
}
