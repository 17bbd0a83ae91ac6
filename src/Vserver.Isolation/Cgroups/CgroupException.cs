using Errno = Vserver.Isolation.Interop.Errno;
namespace Vserver.Isolation.Cgroups;

/// <summary>
/// A cgroup operation failed. For kernel errors the message reads like
/// <c>write '/sys/fs/cgroup/memory/vserver/web1/memory.limit_in_bytes': EBUSY (usage is above the new limit)</c>.
/// </summary>
public sealed class CgroupException : Exception
{
    public CgroupException()
    {
    }

    public CgroupException(string message)
        : base(message)
    {
    }

    public CgroupException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    private CgroupException(string message, string operation, string path, int errno)
        : base(message)
    {
        Operation = operation;
        Path = path;
        Errno = errno;
    }

    /// <summary>The failed operation (write, read, mkdir, rmdir, kill, freeze, ...), null for configuration errors.</summary>
    public string? Operation { get; }

    /// <summary>The file or directory involved, null for configuration errors.</summary>
    public string? Path { get; }

    /// <summary>The errno reported by the kernel (ETIMEDOUT for our own bounded waits), 0 when not applicable.</summary>
    public int Errno { get; }

    /// <summary>The symbolic errno name (EBUSY, ENOENT, ...), null when <see cref="Errno"/> is 0.</summary>
    public string? ErrnoName => Errno == 0 ? null : Interop.Errno.Name(Errno);

    /// <summary>Builds <c>op 'path': ENAME (detail)</c>; detail defaults to the strerror text.</summary>
    internal static CgroupException FromErrno(string operation, string path, int errno, string? detail = null) =>
        new($"{operation} '{path}': {Interop.Errno.Name(errno)} ({detail ?? Interop.Errno.Describe(errno)})", operation, path, errno);
}
