using HybridHypervisor.Model;
using Vserver.Isolation.Storage;

namespace HybridHypervisor.Vservers;

/// <summary>
/// Where a vserver's writable layer (the overlay's upper and work directories) lives. Without a disk quota: upper/ and
/// work/ in the guest's directory, on the host's disk. With one (<see cref="GuestLimits.DiskBytes"/>): the same pair
/// inside guests/NAME/layer.ext4, an ext4 image of the quota's size (<see cref="LayerImage"/>), loop-mounted at
/// guests/NAME/layer/ while something runs from it (the vserver, or the domain a promotion booted from its files) and
/// unmounted when nothing does, so a stopped vserver holds no loop device.
/// </summary>
public static class WritableLayer
{
    public static bool HasQuota(GuestConfig config) => config.Limits.DiskBytes is not null;

    public static string Upper(GuestConfig config, GuestPaths paths) =>
        HasQuota(config) ? Path.Combine(paths.LayerMount, "upper") : paths.Upper;

    public static string Work(GuestConfig config, GuestPaths paths) =>
        HasQuota(config) ? Path.Combine(paths.LayerMount, "work") : paths.Work;

    /// <summary>At create: the empty layer. The upper layer's root is the guest's "/", owned by the guest's root;
    /// everything below it the overlay creates with the ids of whoever writes inside, i.e. within the guest's host range.</summary>
    public static void Provision(GuestConfig config, GuestPaths paths)
    {
        var root = config.Security.IdMap is { } map ? checked((uint)map.HostBase) : 0u;
        if (config.Limits.DiskBytes is { } quota)
        {
            LayerImage.Create(paths.LayerImage, quota, root);
            return;
        }
        Directory.CreateDirectory(paths.Upper);
        if (root != 0) FileOwner.Chown(paths.Upper, root, root);
        Directory.CreateDirectory(paths.Work);
    }

    /// <summary>
    /// Before an overlay is made over the layer: a quota's image is mounted (unless it is already), grown first to the
    /// quota if a grow waits for it and nothing holds the image, and its upper/ must be there. Returns upper and work.
    /// </summary>
    public static (string Upper, string Work) Attach(GuestConfig config, GuestPaths paths)
    {
        var upper = Upper(config, paths);
        var work = Work(config, paths);
        // The overlay is mounted as root on what these paths name: never through a link, never outside the guest's directory.
        if (config.Limits.DiskBytes is not { } quota)
        {
            Require(config, paths.GuestsRoot, upper, StateEntry.Directory);
            Require(config, paths.GuestsRoot, work, StateEntry.Directory);
            return (upper, work);
        }
        try
        {
            if (!HostMounts.IsMountpoint(paths.LayerMount))
            {
                if (StateFile.ShapeProblem(paths.GuestsRoot, paths.LayerImage, StateEntry.RegularFile) is { } problem)
                    throw FleetException.Broken(config.Name, problem);
                if (StateFile.Inspect(paths.GuestsRoot, paths.LayerImage) == StateEntry.Missing)
                    throw FleetException.Coded(FleetError.Conflict, Vserver.Api.ErrorCodes.LayerMissing,
                        $"the disk quota image of '{config.Name}' is missing ({paths.LayerImage}): its writable layer is gone",
                        ("guest", config.Name), ("path", paths.LayerImage));
                // A grow that had to wait (the layer was mounted and the agent may not grow a mounted ext4) happens now,
                // before the mount; never while a loop device holds the file (the overlay of a run that just ended may
                // take a moment to go; if it takes longer, the grow waits for another start).
                if (LayerImage.FilesystemBytes(paths.LayerImage) < quota && LayerImage.WaitUntilFree(paths.LayerImage, TimeSpan.FromSeconds(2)))
                    LayerImage.GrowOffline(paths.LayerImage, quota);
                LayerImage.Mount(paths.LayerImage, paths.LayerMount);
            }
            // Inside the image now: its upper/ and work/ were made by the agent, but the image is a file anyone with the
            // state root may have replaced.
            if (StateFile.Inspect(paths.LayerMount, upper) == StateEntry.Missing)
                throw FleetException.Conflict($"the disk quota image of '{config.Name}' ({paths.LayerImage}) has no upper/ directory: its writable layer is gone");
            Require(config, paths.LayerMount, upper, StateEntry.Directory);
            if (StateFile.Inspect(paths.LayerMount, work) == StateEntry.Missing) Directory.CreateDirectory(work);
            Require(config, paths.LayerMount, work, StateEntry.Directory);
        }
        catch (StateFileException e)
        {
            Detach(paths);
            throw FleetException.Broken(config.Name, e.Message);
        }
        catch (DiskException e)
        {
            throw new FleetException(FleetError.Failed, $"the writable layer of '{config.Name}': {e.Message}", e);
        }
        return (upper, work);
    }

    private static void Require(GuestConfig config, string root, string path, StateEntry kind)
    {
        try
        {
            if (kind == StateEntry.Directory) StateFile.RequireDirectory(root, path);
            else StateFile.RequireRegularFile(root, path);
        }
        catch (StateFileException e)
        {
            throw FleetException.Broken(config.Name, e.Message);
        }
    }

    /// <summary>Unmounts a quota's image (the loop device goes with its last user); nothing to do without one.</summary>
    public static void Detach(GuestPaths paths) => LayerImage.Unmount(paths.LayerMount);

    /// <summary>Removes the layer of either kind: the mount, the image, the directories.</summary>
    public static void Discard(GuestPaths paths, Action<string> log)
    {
        try
        {
            Detach(paths);
            File.Delete(paths.LayerImage);
            if (Directory.Exists(paths.LayerMount) && !HostMounts.IsMountpoint(paths.LayerMount)) Directory.Delete(paths.LayerMount);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            log($"removing the disk quota image {paths.LayerImage} failed: {e.Message}");
        }
        foreach (var dir in new[] { paths.Upper, paths.Work })
        {
            if (!Directory.Exists(dir)) continue;
            try
            {
                AtomicFile.DeleteDirectory(dir, "discard");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                log($"removing {dir} failed: {e.Message}");
            }
        }
    }

    /// <summary>After a run (or an agent's start-up finding none): unmounts the quota's image, unless a domain booted from
    /// the vserver's files still has them mounted on the host (a promotion's root; its end releases the layer).</summary>
    public static void Release(GuestPaths paths, Action<string> log)
    {
        if (HostMounts.IsMountpoint(paths.Rootfs)) return;
        try
        {
            Detach(paths);
        }
        catch (IOException e)
        {
            log($"unmounting the disk quota image of {Path.GetFileName(paths.Dir)} failed: {e.Message}");
        }
    }

    /// <summary>An adopted running guest's layer must be mounted on the host (set --disk and status use it); an operator
    /// may have unmounted it. Mounting the image again reuses the loop device its overlay holds: one superblock.</summary>
    public static void Reattach(GuestConfig config, GuestPaths paths, Action<string> log)
    {
        if (!HasQuota(config) || HostMounts.IsMountpoint(paths.LayerMount)) return;
        if (paths.LayoutProblem() is { } problem)
        {
            log($"guest {config.Name}: not mounting its disk quota image again: {problem}");
            return;
        }
        try
        {
            LayerImage.Mount(paths.LayerImage, paths.LayerMount);
            log($"mounted the disk quota image of running guest {config.Name} again");
        }
        catch (Exception e) when (e is DiskException or IOException)
        {
            log($"guest {config.Name}: {e.Message}");
        }
    }
}
