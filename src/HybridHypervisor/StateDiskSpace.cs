using System.Globalization;

namespace HybridHypervisor;

/// <summary>
/// The state disk (the filesystem of the state root, VSERVER_ROOT, that holds configs, images and writable layers)
/// running out of space: every write there can fail with ENOSPC, or EDQUOT under a user quota. A failure of that kind
/// becomes one refusal that says the disk is full, which path could not be written and what to do, instead of the
/// runtime's "No space left on device : 'PATH'" out of the middle of an operation.
/// </summary>
public static class StateDiskSpace
{
    private const int ENOSPC = 28;
    private const int EDQUOT = 122;

    /// <summary>Whether <paramref name="e"/> is a write that failed for want of space (.NET on Linux puts the errno in
    /// HResult of the IOException it throws).</summary>
    public static bool IsFull(Exception e) => e is IOException { HResult: ENOSPC or EDQUOT };

    /// <summary>The refusal for a write of <paramref name="path"/> that failed with ENOSPC or EDQUOT, or null when
    /// <paramref name="e"/> is some other failure.</summary>
    public static FleetException? Refusal(Exception e, string path, string stateRoot)
    {
        if (e is FleetException fleet) return fleet;
        if (!IsFull(e)) return null;
        var quota = e.HResult == EDQUOT;
        return new FleetException(FleetError.Failed,
            $"the state disk is full: cannot write {path} ({(quota ? "EDQUOT, the disk quota of the agent's user" : "ENOSPC")}); " +
            $"free space on the filesystem of {stateRoot} (df {stateRoot}) and retry", e);
    }

    /// <summary>Writes through <paramref name="write"/>, turning a full state disk into <see cref="Refusal"/>.</summary>
    public static void Write(string path, string stateRoot, Action write)
    {
        try
        {
            write();
        }
        catch (IOException e) when (IsFull(e))
        {
            throw Refusal(e, path, stateRoot)!;
        }
    }

    /// <summary>What the state disk has free for the agent (root may also use the blocks ext4 reserves, but the agent
    /// should not count on them), or null if statfs fails.</summary>
    public static long? FreeBytes(string path)
    {
        try
        {
            return new DriveInfo(path).AvailableFreeSpace;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return null;
        }
    }

    /// <summary>Refuses a vserver's disk quota the state disk cannot hold: its layer image is sparse, and when the
    /// state disk fills under it the guest's filesystem gets write errors (the kernel then mounts it read-only), not a
    /// clean "no space" of its own.</summary>
    public static void EnsureRoomForQuota(string guest, long quotaBytes, string stateRoot)
    {
        if (FreeBytes(stateRoot) is not { } free || free >= quotaBytes) return;
        throw new FleetException(FleetError.Conflict,
            $"the state disk is too full for the {Mib(quotaBytes)} disk quota of '{guest}': {Mib(free)} free on the " +
            $"filesystem of {stateRoot}; free space there (df {stateRoot}) or give a smaller disk quota");
    }

    private static string Mib(long bytes) => (bytes / (double)(1L << 20)).ToString("0.#", CultureInfo.InvariantCulture) + "M";
}
