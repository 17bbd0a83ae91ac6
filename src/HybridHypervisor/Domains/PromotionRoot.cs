using System.Globalization;
using HybridHypervisor.Model;
using Vserver.Isolation.Guests;
using Vserver.Isolation.Images;
using Vserver.Isolation.Processes;
using Vserver.Isolation.Storage;

namespace HybridHypervisor.Domains;

/// <summary>
/// A vserver's root filesystem outside the vserver, for promotion and demotion.
///
/// <see cref="Mount"/> attaches on the host, at the guest's rootfs/ directory, the same overlay its init gets (the image
/// idmapped into its id range over its writable layer; <c>vsinit mount-root</c>). A domain with a virtiofs root boots
/// from it through virtiofsd (<see cref="StartDaemonAsync"/>), which runs as root of a user namespace with the guest's id
/// map (<c>vsinit userns-exec</c>): the domain sees its files owned by 0.., and what it creates lands in the vserver's
/// host range, so a later demotion finds the files as the vserver left them. QEMU 7.2's virtiofsd cannot translate ids
/// itself. <see cref="CopyToExt4"/> makes a raw ext4 image of the same tree (mkfs.ext4 -d, in the same kind of
/// namespace); <see cref="CopyFromDisk"/> makes a writable layer out of a domain's disk for the way back.
/// </summary>
public sealed class PromotionRoot(FleetOptions options, ImageStore images)
{
    public const string VirtiofsdProgram = "/usr/lib/qemu/virtiofsd";
    /// <summary>The virtiofs tag the domain mounts as its root (root=TAG rootfstype=virtiofs).</summary>
    public const string Tag = "root";
    /// <summary>Where virtiofsd keeps its lock file (fixed in QEMU 7.2's virtiofsd); each guest's virtiofs directory is
    /// bound over it in virtiofsd's own mount namespace.</summary>
    private const string NamespaceDir = "/run/virtiofsd";
    private static readonly TimeSpan DaemonReadyTimeout = TimeSpan.FromSeconds(10);

    // ---- the tree ----

    /// <summary>Attaches the vserver's overlay at <see cref="GuestPaths.Rootfs"/> unless something is mounted there
    /// already; a disk quota's layer image is mounted first (it stays mounted while the root is).</summary>
    public void Mount(GuestConfig config, GuestPaths paths)
    {
        var image = images.Find(config.Image)
            ?? throw FleetException.ImageMissing(config.Image, config.Name);
        if (HostMounts.IsMountpoint(paths.Rootfs)) return;
        var (upper, work) = Vservers.WritableLayer.Attach(config, paths);
        MountOver(config, paths, image.RootfsPath, upper, work, paths.Rootfs);
    }

    private void MountOver(GuestConfig config, GuestPaths paths, string lower, string upper, string work, string target)
    {
        if (HostMounts.IsMountpoint(target)) return;
        // Made first: while it exists, an agent starting up knows a root may be mounted (see ReleaseRoot).
        Directory.CreateDirectory(paths.VirtiofsDir);
        Directory.CreateDirectory(target);
        Directory.CreateDirectory(work);
        Directory.CreateDirectory(paths.RunDir);
        var spec = new VsinitSpec
        {
            Rootfs = target, Lower = lower, Upper = upper, Work = work,
            IdMap = config.Security.IdMap is { } map ? (map.HostBase, map.Count) : null,
            Args = [], Env = [], Masked = [], ReadOnly = [],
        };
        var specPath = Path.Combine(paths.RunDir, "mount-root.spec");
        AtomicFile.WriteAllText(specPath, spec.Render());
        try
        {
            Vsinit.MountRoot(options.VsinitPath, specPath);
        }
        catch (HostProgramException e)
        {
            throw new FleetException(FleetError.Failed, $"mounting the root of '{config.Name}' on {target} failed: {e.Message}", e);
        }
        finally
        {
            File.Delete(specPath);
        }
    }

    /// <summary>Attaches at <see cref="GuestPaths.Rootfs"/> the root mount the running vserver's init has (<c>vsinit
    /// grab-root</c>): the same overlay, so a domain can boot from it while the vserver still serves from it.</summary>
    public void Grab(GuestConfig config, GuestPaths paths, int initPid)
    {
        if (HostMounts.IsMountpoint(paths.Rootfs))
            throw FleetException.Conflict($"{paths.Rootfs} is mounted already: an earlier promotion of '{config.Name}' left it; restart the agent to clean up");
        Directory.CreateDirectory(paths.VirtiofsDir);
        Directory.CreateDirectory(paths.Rootfs);
        try
        {
            Vsinit.GrabRoot(options.VsinitPath, initPid, paths.Rootfs);
        }
        catch (HostProgramException e)
        {
            throw new FleetException(FleetError.Failed, $"sharing the running root of '{config.Name}' on {paths.Rootfs} failed: {e.Message}", e);
        }
    }

    public static void Unmount(GuestPaths paths) => HostMounts.Unmount(paths.Rootfs);

    /// <summary>What the private mount namespace of a tool run through <c>vsinit userns-exec</c> detaches after its binds:
    /// every mount of this agent's guests, and the disk quota layers of other agents' (a private agent beside the system
    /// one, as bench/ and the tests run). A copy held there by a long-lived tool (virtiofsd) would keep a stopped guest's
    /// layer image on its loop device until the tool ends.</summary>
    private string[] ToolDetach() =>
    [
        options.GuestsRoot, options.RunGuestsRoot,
        .. HostMounts.All().Where(m => m.Source.StartsWith("/dev/loop", StringComparison.Ordinal) && IsLayerMountPoint(m.MountPoint))
            .Select(m => m.MountPoint).Distinct(),
    ];

    /// <summary>STATEROOT/guests/NAME/layer: where any agent mounts a vserver's disk quota image.</summary>
    private static bool IsLayerMountPoint(string path) =>
        Path.GetFileName(path) == "layer" && Path.GetFileName(Path.GetDirectoryName(Path.GetDirectoryName(path))) == "guests";

    /// <summary>Removes the virtiofs directory once nothing is mounted or served from it: entry by entry, never
    /// recursively (its root/ is a mount point in virtiofsd's namespace).</summary>
    public static void RemoveNamespaceDir(GuestPaths paths)
    {
        if (!Directory.Exists(paths.VirtiofsDir)) return;
        // The socket, virtiofsd's lock file (NAME.pid), mkfs's bind target.
        foreach (var file in Directory.EnumerateFiles(paths.VirtiofsDir)) File.Delete(file);
        var root = Path.Combine(paths.VirtiofsDir, "root");
        if (Directory.Exists(root) && !HostMounts.IsMountpoint(root)) Directory.Delete(root);
        Directory.Delete(paths.VirtiofsDir);
    }

    // ---- virtiofsd ----

    /// <summary>Starts virtiofsd on the mounted tree (unless one still serves it) and waits for its socket.</summary>
    public async Task StartDaemonAsync(GuestConfig config, GuestPaths paths, CancellationToken ct = default)
    {
        if (FindDaemon(paths) is { } running)
        {
            running.Dispose();
            return;
        }
        if (!File.Exists(VirtiofsdProgram))
            throw FleetException.Conflict($"{VirtiofsdProgram} not found: a virtiofs root needs it (Debian: apt-get install qemu-system-common, or run make deps)");
        Mount(config, paths);
        PrepareNamespaceDir(config, paths);
        File.Delete(paths.VirtiofsSocket);
        string[] daemon = [VirtiofsdProgram, "-o", "cache=auto", "--rlimit-nofile=0"];
        ProcessHandle process;
        if (config.Security.IdMap is { } map)
        {
            var spec = new VsinitSpec
            {
                IdMap = (map.HostBase, map.Count),
                Binds = [(paths.VirtiofsDir, NamespaceDir), (paths.Rootfs, $"{NamespaceDir}/root")],
                Detach = ToolDetach(),
                Args = [.. daemon, $"--socket-path={NamespaceDir}/sock", "-o", $"source={NamespaceDir}/root"],
                // Its command line names only paths inside its namespace: the environment says whose it is.
                Env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", $"VSERVER_GUEST_RUN={paths.RunDir}"], Masked = [], ReadOnly = [],
            };
            var specPath = Path.Combine(paths.RunDir, "virtiofsd.spec");
            AtomicFile.WriteAllText(specPath, spec.Render());
            process = Vsinit.SpawnUsernsExec(options.VsinitPath, specPath, paths.VirtiofsdLog);
        }
        else
        {
            process = ChildProcess.SpawnLogged(VirtiofsdProgram,
                [.. daemon, $"--socket-path={paths.VirtiofsSocket}", "-o", $"source={FuseOptionValue(paths.Rootfs)}"], paths.VirtiofsdLog);
        }
        // Reap it whenever it ends (it ends by itself when QEMU goes away).
        _ = process.Exited.ContinueWith(_ => process.Dispose(), TaskScheduler.Default);
        File.WriteAllText(paths.VirtiofsdPidFile, process.Pid.ToString(CultureInfo.InvariantCulture));
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(DaemonReadyTimeout);
        while (!File.Exists(paths.VirtiofsSocket))
        {
            if (process.HasExited || deadline.IsCancellationRequested)
            {
                StopDaemon(paths);
                throw new FleetException(FleetError.Failed, $"virtiofsd for '{config.Name}' " +
                    $"{(process.HasExited ? "ended at start" : $"did not open its socket within {DaemonReadyTimeout.TotalSeconds:0} s")}: " +
                    DomainDriver.LastLines(paths.VirtiofsdLog, 2));
            }
            await Task.Delay(10, CancellationToken.None);
        }
    }

    /// <summary>Ends the guest's virtiofsd if it still runs (SIGTERM, then SIGKILL) and forgets it; its socket and lock
    /// file go with <see cref="RemoveNamespaceDir"/>.</summary>
    public static void StopDaemon(GuestPaths paths)
    {
        using (var process = FindDaemon(paths))
        {
            if (process is not null && process.Signal(15) && !process.Exited.Wait(TimeSpan.FromSeconds(3)))
            {
                process.Signal(9);
                process.Exited.Wait(TimeSpan.FromSeconds(5));
            }
        }
        AtomicFile.Delete(paths.VirtiofsdPidFile);
    }

    /// <summary>The guest's virtiofsd by its pid file, if that process is still a virtiofsd serving this guest.</summary>
    private static ProcessHandle? FindDaemon(GuestPaths paths)
    {
        try
        {
            if (StateFile.TryReadAllText(paths.RunGuestsRoot, paths.VirtiofsdPidFile) is not { } text || !int.TryParse(text.Trim(), out var pid)) return null;
            // vsinit userns-exec names the guest's run directory in its command line, then virtiofsd in its environment;
            // a privileged guest's virtiofsd names it in its command line.
            var mine = $"/proc/{pid}/cmdline" is var c && File.ReadAllText(c).Contains(paths.RunDir + "/", StringComparison.Ordinal)
                       || File.ReadAllText($"/proc/{pid}/environ").Contains($"VSERVER_GUEST_RUN={paths.RunDir}\0", StringComparison.Ordinal);
            return mine ? ProcessHandle.TryOpen(pid) : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>A value in virtiofsd's -o list, which libfuse splits at commas: backslash escapes (not QEMU's doubling).</summary>
    private static string FuseOptionValue(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace(",", "\\,", StringComparison.Ordinal);

    /// <summary>RUN/guests/NAME/virtiofs: owned by the guest's root, so virtiofsd can create its socket and lock file
    /// there, with root/ to bind the tree on; /run/virtiofsd must exist to be bound over.</summary>
    private static void PrepareNamespaceDir(GuestConfig config, GuestPaths paths)
    {
        Directory.CreateDirectory(NamespaceDir);
        Directory.CreateDirectory(Path.Combine(paths.VirtiofsDir, "root"));
        if (config.Security.IdMap is { } map)
        {
            var id = checked((uint)map.HostBase);
            FileOwner.Chown(paths.VirtiofsDir, id, id);
            FileOwner.Chown(Path.Combine(paths.VirtiofsDir, "root"), id, id);
        }
        File.SetUnixFileMode(paths.VirtiofsDir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    // ---- copies ----

    /// <summary>
    /// promote --copy: a raw ext4 image at <see cref="GuestPaths.Ext4Disk"/> holding the vserver's tree, of
    /// <paramref name="sizeBytes"/> (sparse) or what the tree needs if that is more. mkfs.ext4 -d runs as root of the
    /// guest's user namespace, so the files keep the ids the vserver saw. Written to a temp file, renamed when complete.
    /// Returns the size.
    /// </summary>
    public long CopyToExt4(GuestConfig config, GuestPaths paths, long sizeBytes)
    {
        Mount(config, paths);
        var (bytes, entries) = BaseDisk.Measure(paths.Rootfs);
        var size = Math.Max(sizeBytes, BaseDisk.SizeFor(bytes));
        var temp = Path.Combine(paths.Dir, $".{Path.GetFileName(paths.Ext4Disk)}.tmp");
        File.Delete(temp);
        using (File.Create(temp)) { }
        try
        {
            string[] mkfs = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-N", BaseDisk.InodesFor(size, entries).ToString(CultureInfo.InvariantCulture), "-L", "root"];
            var kib = (size / 1024).ToString(CultureInfo.InvariantCulture) + "k";
            if (config.Security.IdMap is { } map)
            {
                PrepareNamespaceDir(config, paths);
                var target = Path.Combine(paths.VirtiofsDir, "disk.ext4");
                using (File.Create(target)) { }
                var id = checked((uint)map.HostBase);
                FileOwner.Chown(temp, id, id);
                var spec = new VsinitSpec
                {
                    IdMap = (map.HostBase, map.Count),
                    Binds = [(paths.VirtiofsDir, NamespaceDir), (paths.Rootfs, $"{NamespaceDir}/root"), (temp, $"{NamespaceDir}/disk.ext4")],
                    Detach = ToolDetach(),
                    Args = [.. mkfs, "-d", $"{NamespaceDir}/root", $"{NamespaceDir}/disk.ext4", kib],
                    Env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], Masked = [], ReadOnly = [],
                };
                var specPath = Path.Combine(paths.RunDir, "mkfs.spec");
                AtomicFile.WriteAllText(specPath, spec.Render());
                try
                {
                    Vsinit.UsernsExec(options.VsinitPath, specPath, timeout: TimeSpan.FromMinutes(30));
                }
                finally
                {
                    File.Delete(specPath);
                    File.Delete(target);
                }
                FileOwner.Chown(temp, 0, 0);
            }
            else
            {
                HostProgram.Run("mkfs.ext4", [.. mkfs[1..], "-d", paths.Rootfs, temp, kib], timeout: TimeSpan.FromMinutes(30));
            }
            using (var stream = new FileStream(temp, FileMode.Open, FileAccess.ReadWrite)) stream.Flush(flushToDisk: true);
            File.Move(temp, paths.Ext4Disk, overwrite: false);
            AtomicFile.FsyncDirectory(paths.Dir);
            return size;
        }
        catch (HostProgramException e)
        {
            throw new FleetException(FleetError.Failed, $"copying the root of '{config.Name}' into {paths.Ext4Disk} failed: {e.Message}", e);
        }
        finally
        {
            File.Delete(temp);
        }
    }

    /// <summary>
    /// demote from a disk: the files of the domain's ext4 disk (raw, or a qcow2 overlay exported as raw) become the
    /// vserver's writable layer, owned in its id range, over its image: loop-mounted, shown through the same
    /// idmapping overlay as a vserver's root, copied with cp -a into a new layer, and whatever the image has that the disk
    /// does not gets a whiteout so it stays deleted. The new layer replaces <see cref="GuestPaths.Upper"/> once complete.
    /// </summary>
    public void CopyFromDisk(GuestConfig vserver, GuestPaths paths, string rawDisk)
    {
        var image = images.Find(vserver.Image)
            ?? throw FleetException.ImageMissing(vserver.Image, vserver.Name);
        var staging = Path.Combine(paths.Dir, ".demote");
        if (Directory.Exists(staging)) AtomicFile.DeleteDirectory(staging, "discard");
        var loop = Path.Combine(staging, "disk");
        var view = Path.Combine(staging, "view");
        var upper = Path.Combine(staging, "upper");
        Directory.CreateDirectory(loop);
        Directory.CreateDirectory(upper);
        try
        {
            // Read-write: a guest that powered off without unmounting (busybox init does not) leaves a journal to replay,
            // which a read-only mount refuses to do.
            HostProgram.Run("mount", ["-o", "loop", "-t", "ext4", rawDisk, loop]);
            // An empty upper over the disk: only the idmap of the lower layer matters here.
            var emptyUpper = Path.Combine(staging, "empty");
            Directory.CreateDirectory(emptyUpper);
            if (vserver.Security.IdMap is { } map) FileOwner.Chown(emptyUpper, checked((uint)map.HostBase), checked((uint)map.HostBase));
            MountOver(vserver, paths, loop, emptyUpper, Path.Combine(staging, "work"), view);
            HostProgram.Run("cp", ["-a", "--", view + "/.", upper], timeout: TimeSpan.FromMinutes(30));
            var root = vserver.Security.IdMap is { } m ? checked((uint)m.HostBase) : 0u;
            OverlayWhiteouts.Hide(image.RootfsPath, upper, root);
            if (Directory.Exists(paths.Upper)) AtomicFile.DeleteDirectory(paths.Upper, "discard");
            Directory.Move(upper, paths.Upper);
            if (Directory.Exists(paths.Work)) AtomicFile.DeleteDirectory(paths.Work, "discard");
        }
        catch (HostProgramException e)
        {
            throw new FleetException(FleetError.Failed, $"copying the disk of '{vserver.Name}' into its writable layer failed: {e.Message}", e);
        }
        finally
        {
            HostMounts.Unmount(view);
            HostMounts.Unmount(loop);
            RemoveNamespaceDir(paths);
            if (Directory.Exists(staging)) AtomicFile.DeleteDirectory(staging, "discard");
        }
    }
}
