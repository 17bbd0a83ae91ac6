using System.Runtime.InteropServices;

namespace Vserver.Isolation.Interop;

/// <summary>Making, inspecting and removing entries of a file tree relative to a directory fd, never through a link:
/// what unpacking an image archive (<see cref="Images.RootfsWriter"/>) and packing one (<see cref="Images.ImageExport"/>)
/// need.</summary>
internal static partial class Libc
{
    public const int AT_SYMLINK_NOFOLLOW = 0x100, AT_REMOVEDIR = 0x200, AT_EMPTY_PATH = 0x1000;
    public const uint RENAME_NOREPLACE = 1;
    public const long UTIME_OMIT = (1L << 30) - 2;

    [LibraryImport(LibcName, EntryPoint = "mkdirat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mkdirat(int dirfd, string path, uint mode);

    [LibraryImport(LibcName, EntryPoint = "symlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Symlinkat(string target, int newdirfd, string linkpath);

    [LibraryImport(LibcName, EntryPoint = "linkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Linkat(int olddirfd, string oldpath, int newdirfd, string newpath, int flags);

    [LibraryImport(LibcName, EntryPoint = "mknodat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mknodat(int dirfd, string path, uint mode, ulong dev);

    [LibraryImport(LibcName, EntryPoint = "fchownat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Fchownat(int dirfd, string path, uint owner, uint group, int flags);

    [LibraryImport(LibcName, EntryPoint = "fchmod", SetLastError = true)]
    public static partial int Fchmod(int fd, uint mode);

    [LibraryImport(LibcName, EntryPoint = "fchmodat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Fchmodat(int dirfd, string path, uint mode, int flags);

    [LibraryImport(LibcName, EntryPoint = "utimensat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int Utimensat(int dirfd, string path, Timespec* times, int flags);

    [LibraryImport(LibcName, EntryPoint = "readlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial nint Readlinkat(int dirfd, string path, byte* buffer, nint size);

    [LibraryImport(LibcName, EntryPoint = "fsetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int Fsetxattr(int fd, string name, byte* value, nint size, int flags);

    [LibraryImport(LibcName, EntryPoint = "fgetxattr", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial nint Fgetxattr(int fd, string name, byte* value, nint size);

    [LibraryImport(LibcName, EntryPoint = "syncfs", SetLastError = true)]
    public static partial int Syncfs(int fd);

    [LibraryImport(LibcName, EntryPoint = "renameat2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Renameat2(int olddirfd, string oldpath, int newdirfd, string newpath, uint flags);

    [StructLayout(LayoutKind.Sequential)]
    public struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    /// <summary>struct stat on x86-64 with every field a file tree's entry has.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 144)]
    public struct TreeStat
    {
        [FieldOffset(0)] public ulong Dev;
        [FieldOffset(8)] public ulong Ino;
        [FieldOffset(16)] public ulong Nlink;
        [FieldOffset(24)] public uint Mode;
        [FieldOffset(28)] public uint Uid;
        [FieldOffset(32)] public uint Gid;
        [FieldOffset(40)] public ulong Rdev;
        [FieldOffset(48)] public long Size;
        [FieldOffset(88)] public long MtimeSeconds;
        [FieldOffset(96)] public long MtimeNanoseconds;
    }

    private const int SYS_newfstatat = 262;

    /// <summary>fstatat(2) by its raw system call (glibc exports it under its own name only from 2.33 on).</summary>
    public static unsafe int Fstatat(int dirfd, string path, out TreeStat stat, int flags)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        fixed (TreeStat* s = &stat)
            return (int)Syscall(SYS_newfstatat, dirfd, (nint)p, (nint)s, flags, 0);
    }
}
