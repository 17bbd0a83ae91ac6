using System.Runtime.InteropServices;

namespace Vserver.Isolation.Interop;

/// <summary>A failed system call with its errno, operation and path, the way crun reports them:
/// <c>mount overlay on /var/lib/vserver/guests/web1/rootfs: EINVAL (Invalid argument)</c>.</summary>
public sealed class SystemCallException(string operation, int errno, string? hint = null)
    : IOException(Format(operation, errno, hint))
{
    public int Errno { get; } = errno;
    public string Operation { get; } = operation;

    public static SystemCallException FromLastError(string operation, string? hint = null) =>
        new(operation, Marshal.GetLastPInvokeError(), hint);

    public static string Format(string operation, int errno, string? hint = null) =>
        $"{operation}: {Interop.Errno.Name(errno)} ({Marshal.GetPInvokeErrorMessage(errno)}){(hint is null ? "" : $"; {hint}")}";
}

public static class Errno
{
    public const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12,
        EACCES = 13, EBUSY = 16, EEXIST = 17, ENODEV = 19, ENOTDIR = 20, EINVAL = 22, ENOSPC = 28, EROFS = 30, ENOSYS = 38,
        ENOTEMPTY = 39, EOPNOTSUPP = 95, ETIMEDOUT = 110, EXDEV = 18, EISDIR = 21, ELOOP = 40;

    private static readonly Dictionary<int, string> Names = new()
    {
        [1] = "EPERM", [2] = "ENOENT", [3] = "ESRCH", [4] = "EINTR", [5] = "EIO", [7] = "E2BIG", [9] = "EBADF", [10] = "ECHILD",
        [11] = "EAGAIN", [12] = "ENOMEM", [13] = "EACCES", [14] = "EFAULT", [16] = "EBUSY", [17] = "EEXIST", [18] = "EXDEV",
        [19] = "ENODEV", [20] = "ENOTDIR", [21] = "EISDIR", [22] = "EINVAL", [23] = "ENFILE", [24] = "EMFILE", [25] = "ENOTTY",
        [26] = "ETXTBSY", [27] = "EFBIG", [28] = "ENOSPC", [30] = "EROFS", [32] = "EPIPE", [36] = "ENAMETOOLONG", [38] = "ENOSYS",
        [39] = "ENOTEMPTY", [40] = "ELOOP", [95] = "EOPNOTSUPP", [110] = "ETIMEDOUT", [6] = "ENXIO", [98] = "EADDRINUSE", [111] = "ECONNREFUSED", [122] = "EDQUOT",
        [71] = "EPROTO",
    };

    public static string Name(int errno) => Names.TryGetValue(errno, out var name) ? name : $"errno {errno}";

    /// <summary>The errno a name such as <c>ENOENT</c> stands for (as vsinit reports it), or null for one not known here.</summary>
    public static int? FromName(string name) => Names.Where(n => n.Value == name).Select(n => (int?)n.Key).FirstOrDefault();

    /// <summary>The C library's text for an errno (strerror).</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);
}
