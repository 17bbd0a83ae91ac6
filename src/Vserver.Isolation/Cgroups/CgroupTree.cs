using Errno = Vserver.Isolation.Interop.Errno;
namespace Vserver.Isolation.Cgroups;

/// <summary>Operations over a cgroup directory and its descendants, shared by both backends.</summary>
internal static class CgroupTree
{
    /// <summary>Appends the pids of <paramref name="dir"/> and every descendant; missing directories add nothing.</summary>
    public static void CollectPids(CgroupFileSystem fs, string dir, List<int> into)
    {
        string? procs = fs.ReadIfExists(CgroupPath.Join(dir, "cgroup.procs"));
        if (procs is null)
        {
            return;
        }

        into.AddRange(CgroupParsing.ParsePidList(procs));
        foreach (string child in fs.SubDirectories(dir))
        {
            CollectPids(fs, child, into);
        }
    }

    /// <summary>
    /// Repeats: list the pids; stop when none are left; otherwise kill them (SIGKILL each, or
    /// <paramref name="killRound"/> when given) and wait a little. Throws ETIMEDOUT naming the survivors.
    /// </summary>
    public static void KillUntilEmpty(
        CgroupFileSystem fs,
        string dir,
        Func<IReadOnlyList<int>> listPids,
        TimeSpan timeout,
        Action<IReadOnlyList<int>>? killRound = null)
    {
        IReadOnlyList<int> survivors = [];
        string? lastKillError = null;
        bool empty = CgroupWait.Until(
            () =>
            {
                survivors = listPids();
                if (survivors.Count == 0)
                {
                    return true;
                }

                if (killRound is not null)
                {
                    killRound(survivors);
                }
                else
                {
                    foreach (int pid in survivors)
                    {
                        int errno = fs.TryKill(pid);
                        if (errno is not 0 and not Errno.ESRCH)
                        {
                            lastKillError = $"kill {pid}: {Errno.Name(errno)}";
                        }
                    }
                }

                return false;
            },
            timeout);

        if (!empty)
        {
            throw CgroupException.FromErrno("destroy", dir, Errno.ETIMEDOUT,
                $"processes still running after {CgroupWait.Describe(timeout)}: {string.Join(' ', survivors.Take(20))}" +
                (lastKillError is null ? string.Empty : $"; last error {lastKillError}"));
        }
    }

    /// <summary>rmdir of every descendant, deepest first, then <paramref name="dir"/>; ENOENT is fine, EBUSY is retried.</summary>
    public static void RemoveTree(CgroupFileSystem fs, string dir, TimeSpan timeout)
    {
        foreach (string child in fs.SubDirectories(dir))
        {
            RemoveTree(fs, child, timeout);
        }

        int errno = 0;
        // Exiting tasks may keep the cgroup busy for a moment after cgroup.procs is empty.
        bool removed = CgroupWait.Until(
            () =>
            {
                errno = fs.TryRemoveDirectory(dir);
                return errno is 0 or Errno.ENOENT || errno != Errno.EBUSY;
            },
            timeout);

        if (!removed || errno is not 0 and not Errno.ENOENT)
        {
            throw CgroupException.FromErrno("rmdir", dir, errno == 0 ? Errno.ETIMEDOUT : errno,
                errno == Errno.EBUSY ? "the cgroup still has tasks or child cgroups" : null);
        }
    }
}
