using System.Runtime.InteropServices;

namespace Vserver.Isolation.Interop;

/// <summary>libc and raw system calls the runtime does not expose. One partial class per native area.</summary>
internal static partial class Libc
{
    private const string LibcName = "libc";

    public const int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_NOCTTY = 0x100, O_TRUNC = 0x200, O_APPEND = 0x400,
        O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;

    [LibraryImport(LibcName, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags, int mode);

    [LibraryImport(LibcName, EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport(LibcName, EntryPoint = "lchown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Lchown(string path, uint owner, uint group);

    [LibraryImport(LibcName, EntryPoint = "mknod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mknod(string path, uint mode, ulong dev);

    public const uint S_IFCHR = 0x2000;

    public const int LOCK_EX = 2;

    /// <summary>flock(2) on an fd of our own; .NET's FileStream takes a non-blocking one of its own.</summary>
    [LibraryImport(LibcName, EntryPoint = "flock", SetLastError = true)]
    public static partial int Flock(int fd, int operation);

    [LibraryImport(LibcName, EntryPoint = "fchown", SetLastError = true)]
    public static partial int Fchown(int fd, uint owner, uint group);

    [LibraryImport(LibcName, EntryPoint = "pipe2", SetLastError = true)]
    public static unsafe partial int Pipe2(int* fds, int flags);

    [LibraryImport(LibcName, EntryPoint = "read", SetLastError = true)]
    public static unsafe partial nint Read(int fd, byte* buffer, nint count);

    [LibraryImport(LibcName, EntryPoint = "write", SetLastError = true)]
    public static unsafe partial nint Write(int fd, byte* buffer, nint count);

    [LibraryImport(LibcName, EntryPoint = "ioctl", SetLastError = true)]
    public static unsafe partial int Ioctl(int fd, nuint request, void* arg);

    [LibraryImport(LibcName, EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    [LibraryImport(LibcName, EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Umount2(string target, int flags);

    public const int MNT_DETACH = 2;

    [LibraryImport(LibcName, EntryPoint = "syscall", SetLastError = true)]
    public static partial nint Syscall(nint number, nint a1, nint a2, nint a3, nint a4, nint a5);

    public const int SYS_pidfd_send_signal = 424, SYS_pidfd_open = 434, SYS_openat2 = 437;
    public const int O_PATH = 0x200000, O_DIRECTORY = 0x10000;
    public const ulong RESOLVE_NO_MAGICLINKS = 0x02, RESOLVE_NO_SYMLINKS = 0x04, RESOLVE_IN_ROOT = 0x10;

    [StructLayout(LayoutKind.Sequential)]
    public struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    public static unsafe int Openat2(int dirfd, string path, OpenHow how)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
            return (int)Syscall(SYS_openat2, dirfd, (nint)p, (nint)(&how), sizeof(OpenHow), 0);
    }

    public static int PidfdOpen(int pid) => (int)Syscall(SYS_pidfd_open, pid, 0, 0, 0, 0);

    public static int PidfdSendSignal(int pidfd, int signal) => (int)Syscall(SYS_pidfd_send_signal, pidfd, signal, 0, 0, 0);

    [LibraryImport(LibcName, EntryPoint = "waitid", SetLastError = true)]
    public static unsafe partial int Waitid(int idtype, int id, SigInfo* info, int options);

    public const int P_PIDFD = 3, WEXITED = 4, WNOHANG = 1;
    public const int CLD_EXITED = 1, CLD_KILLED = 2, CLD_DUMPED = 3;

    /// <summary>The head of siginfo_t that waitid fills for SIGCHLD (x86_64 layout); the full struct is 128 bytes.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    public struct SigInfo
    {
        [FieldOffset(0)] public int Signo;
        [FieldOffset(4)] public int Errno;
        [FieldOffset(8)] public int Code;
        [FieldOffset(16)] public int Pid;
        [FieldOffset(20)] public int Uid;
        [FieldOffset(24)] public int Status;
    }

    [LibraryImport(LibcName, EntryPoint = "epoll_create1", SetLastError = true)]
    public static partial int EpollCreate1(int flags);

    [LibraryImport(LibcName, EntryPoint = "epoll_ctl", SetLastError = true)]
    public static unsafe partial int EpollCtl(int epfd, int op, int fd, EpollEvent* ev);

    [LibraryImport(LibcName, EntryPoint = "epoll_wait", SetLastError = true)]
    public static unsafe partial int EpollWait(int epfd, EpollEvent* events, int maxevents, int timeout);

    public const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2, EPOLLIN = 1;

    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    public struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    [LibraryImport(LibcName, EntryPoint = "eventfd", SetLastError = true)]
    public static partial int EventFd(uint initval, int flags);

    // posix_spawn: glibc spawns with CLONE_VM|CLONE_VFORK, which is safe from a multi-threaded runtime, unlike fork().
    [LibraryImport(LibcName, EntryPoint = "posix_spawn", StringMarshalling = StringMarshalling.Utf8)]
    public static unsafe partial int PosixSpawn(out int pid, string path, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport(LibcName, EntryPoint = "posix_spawn_file_actions_init")]
    public static unsafe partial int PosixSpawnFileActionsInit(void* actions);

    [LibraryImport(LibcName, EntryPoint = "posix_spawn_file_actions_destroy")]
    public static unsafe partial int PosixSpawnFileActionsDestroy(void* actions);

    [LibraryImport(LibcName, EntryPoint = "posix_spawn_file_actions_adddup2")]
    public static unsafe partial int PosixSpawnFileActionsAddDup2(void* actions, int fd, int newfd);

    [LibraryImport(LibcName, EntryPoint = "posix_spawnattr_init")]
    public static unsafe partial int PosixSpawnAttrInit(void* attr);

    [LibraryImport(LibcName, EntryPoint = "posix_spawnattr_destroy")]
    public static unsafe partial int PosixSpawnAttrDestroy(void* attr);

    [LibraryImport(LibcName, EntryPoint = "posix_spawnattr_setflags")]
    public static unsafe partial int PosixSpawnAttrSetFlags(void* attr, short flags);

    [LibraryImport(LibcName, EntryPoint = "posix_spawnattr_setsigmask")]
    public static unsafe partial int PosixSpawnAttrSetSigMask(void* attr, void* sigset);

    [LibraryImport(LibcName, EntryPoint = "posix_spawnattr_setsigdefault")]
    public static unsafe partial int PosixSpawnAttrSetSigDefault(void* attr, void* sigset);

    [LibraryImport(LibcName, EntryPoint = "sigemptyset")]
    public static unsafe partial int SigEmptySet(void* set);

    [LibraryImport(LibcName, EntryPoint = "sigfillset")]
    public static unsafe partial int SigFillSet(void* set);

    public const short POSIX_SPAWN_SETSIGDEF = 0x04, POSIX_SPAWN_SETSIGMASK = 0x08, POSIX_SPAWN_SETSID = 0x80;

    // Terminals: a pty opened from the guest's own devpts instance.
    public const nuint TIOCSPTLCK = 0x40045431, TIOCGPTPEER = 0x5441, TIOCSWINSZ = 0x5414;

    [StructLayout(LayoutKind.Sequential)]
    public struct WinSize
    {
        public ushort Rows, Cols, XPixel, YPixel;
    }
}

internal static partial class Libc
{
    public const int F_DUPFD_CLOEXEC = 1030;

    [LibraryImport(LibcName, EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int cmd, int arg);
}
