namespace Vserver.Isolation.Cgroups;

/// <summary>Linux errno values (generic ABI: x86-64, arm64, riscv64) with their symbolic names.</summary>
internal static class Errno
{
    public const int EPERM = 1;
    public const int ENOENT = 2;
    public const int ESRCH = 3;
    public const int EINTR = 4;
    public const int EIO = 5;
    public const int EAGAIN = 11;
    public const int ENOMEM = 12;
    public const int EACCES = 13;
    public const int EBUSY = 16;
    public const int EEXIST = 17;
    public const int ENOTDIR = 20;
    public const int EINVAL = 22;
    public const int ENOSPC = 28;
    public const int EROFS = 30;
    public const int ENOTEMPTY = 39;
    public const int EOPNOTSUPP = 95;
    public const int ETIMEDOUT = 110;

    private static readonly Dictionary<int, (string Name, string Text)> Table = new()
    {
        [EPERM] = ("EPERM", "Operation not permitted"),
        [ENOENT] = ("ENOENT", "No such file or directory"),
        [ESRCH] = ("ESRCH", "No such process"),
        [EINTR] = ("EINTR", "Interrupted system call"),
        [EIO] = ("EIO", "Input/output error"),
        [6] = ("ENXIO", "No such device or address"),
        [7] = ("E2BIG", "Argument list too long"),
        [9] = ("EBADF", "Bad file descriptor"),
        [EAGAIN] = ("EAGAIN", "Resource temporarily unavailable"),
        [ENOMEM] = ("ENOMEM", "Cannot allocate memory"),
        [EACCES] = ("EACCES", "Permission denied"),
        [EBUSY] = ("EBUSY", "Device or resource busy"),
        [EEXIST] = ("EEXIST", "File exists"),
        [19] = ("ENODEV", "No such device"),
        [ENOTDIR] = ("ENOTDIR", "Not a directory"),
        [21] = ("EISDIR", "Is a directory"),
        [EINVAL] = ("EINVAL", "Invalid argument"),
        [24] = ("EMFILE", "Too many open files"),
        [27] = ("EFBIG", "File too large"),
        [ENOSPC] = ("ENOSPC", "No space left on device"),
        [EROFS] = ("EROFS", "Read-only file system"),
        [34] = ("ERANGE", "Numerical result out of range"),
        [36] = ("ENAMETOOLONG", "File name too long"),
        [ENOTEMPTY] = ("ENOTEMPTY", "Directory not empty"),
        [EOPNOTSUPP] = ("EOPNOTSUPP", "Operation not supported"),
        [ETIMEDOUT] = ("ETIMEDOUT", "Connection timed out"),
    };

    public static string Name(int errno) =>
        Table.TryGetValue(errno, out var e) ? e.Name : $"errno {errno}";

    public static string Describe(int errno) =>
        Table.TryGetValue(errno, out var e) ? e.Text : "Unknown error";
}
