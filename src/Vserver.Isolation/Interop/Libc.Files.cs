using System.Runtime.InteropServices;

namespace Vserver.Isolation.Interop;

/// <summary>Opening, inspecting and renaming files relative to a directory fd: what <see cref="Storage.StateFile"/> and
/// <see cref="Storage.AtomicFile"/> need to stay below a root without following links.</summary>
internal static partial class Libc
{
    public const int O_EXCL = 0x80, O_NOFOLLOW = 0x20000;
    public const ulong RESOLVE_BENEATH = 0x08;
    public const int AT_FDCWD = -100;

    public const uint S_IFMT = 0xF000, S_IFSOCK = 0xC000, S_IFLNK = 0xA000, S_IFREG = 0x8000, S_IFBLK = 0x6000,
        S_IFDIR = 0x4000, S_IFIFO = 0x1000;

    [LibraryImport(LibcName, EntryPoint = "openat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Openat(int dirfd, string path, int flags, int mode);

    [LibraryImport(LibcName, EntryPoint = "renameat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Renameat(int olddirfd, string oldpath, int newdirfd, string newpath);

    [LibraryImport(LibcName, EntryPoint = "unlinkat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Unlinkat(int dirfd, string path, int flags);

    [LibraryImport(LibcName, EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    /// <summary>struct stat on x86-64 (144 bytes); only what the callers read is named.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 144)]
    public struct Stat
    {
        [FieldOffset(0)] public ulong Dev;
        [FieldOffset(8)] public ulong Ino;
        [FieldOffset(24)] public uint Mode;
        [FieldOffset(28)] public uint Uid;
        [FieldOffset(32)] public uint Gid;
        [FieldOffset(48)] public long Size;
    }

    private const int SYS_fstat = 5;

    // The raw system call: glibc exports fstat only from 2.33 on (before, __fxstat).
    public static unsafe int Fstat(int fd, out Stat stat)
    {
        fixed (Stat* p = &stat)
            return (int)Syscall(SYS_fstat, fd, (nint)p, 0, 0, 0);
    }
}
