using Vserver.Api;
using HybridHypervisor.Model;
using HybridHypervisor.Vservers;
using Vserver.Isolation.Storage;

namespace HybridHypervisor;

/// <summary>A guest's disk quota as views show it: the quota, the size its layer's filesystem has now (below the quota
/// while a grow waits for the next start), and what the mounted filesystem reports (null while it is not mounted).</summary>
public sealed record DiskView(long QuotaBytes, long? FilesystemBytes, LayerUsage? Usage)
{
    public bool GrowPending => FilesystemBytes is { } now && now < QuotaBytes;
}

/// <summary>
/// Disk quotas (<c>vsctl create --disk</c>, <c>vsctl set --disk</c>): a vserver's writable layer in an ext4 image of the
/// quota's size (<see cref="WritableLayer"/>). The image is mounted while the vserver (or a domain promoted from it with
/// its files shared) runs, and unmounted when the run ends.
/// </summary>
public sealed partial class Fleet
{
    /// <summary>
    /// <c>set --disk</c>, under the guest's lock: grow only. A stopped guest's image grows at once (offline); a running
    /// one's grows online when the agent holds CAP_SYS_RESOURCE (the kernel's condition for growing a mounted ext4),
    /// otherwise at its next start, which its view says. Persisted.
    /// </summary>
    private void GrowDiskLocked(GuestRuntime g, long bytes)
    {
        var name = g.Config.Name;
        var paths = _store.PathsFor(name);
        if (g.Config.Limits.DiskBytes is not { } quota)
            throw g.Config.Kind == GuestKind.Domain
                ? FleetException.Conflict($"'{name}' is a domain: its disk is its own ({ByteSize.FormatExact(g.Config.Domain?.DiskBytes ?? 0)}), set at create or promotion; only a vserver's disk quota grows")
                : FleetException.Coded(FleetError.Conflict, ErrorCodes.NoDiskQuota,
                    $"'{name}' has no disk quota: its writable layer is a directory on the host's disk; a quota is given at create", ("guest", name));
        if (GuestConfigValidator.DiskQuotaError(bytes) is { } error) throw FleetException.Invalid(error);
        long now;
        try
        {
            now = LayerImage.FilesystemBytes(paths.LayerImage);
        }
        catch (Exception e) when (e is IOException or DiskException)
        {
            throw new FleetException(FleetError.Failed, $"reading the disk quota image of '{name}' failed: {e.Message}", e);
        }
        var current = Math.Max(quota, now);
        if (LayerImage.GrowError(name, current, bytes) is { } shrink)
            throw FleetException.Invalid(new SettingError(GuestSpec.Fields.DiskBytes, bytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ErrorCodes.Reasons.BelowMinimum, shrink).With("minimum", current));
        if (bytes == quota) return;
        try
        {
            if (!g.IsRunning)
            {
                WritableLayer.Detach(paths);
                if (LayerImage.WaitUntilFree(paths.LayerImage, TimeSpan.FromSeconds(5)))
                    LayerImage.GrowOffline(paths.LayerImage, bytes);
                else
                    _log($"the disk quota of {name} grows to {ByteSize.FormatExact(bytes)} at its next start: a loop device still holds its image");
            }
            else if (LayerImage.CanGrowOnline)
            {
                LayerImage.GrowOnline(paths.LayerImage, paths.LayerMount, bytes);
            }
            else
            {
                _log($"the disk quota of {name} grows to {ByteSize.FormatExact(bytes)} at its next start: growing a mounted ext4 needs CAP_SYS_RESOURCE, which the agent does not have");
            }
        }
        catch (Exception e) when (e is DiskException or IOException)
        {
            throw new FleetException(FleetError.Failed, $"growing the disk quota of '{name}' to {ByteSize.FormatExact(bytes)} failed: {e.Message}", e);
        }
        g.Config = g.Config with { Limits = g.Config.Limits with { DiskBytes = bytes } };
        _store.Save(g.Config);
    }

    /// <summary>The quota and its use, for views; null without a quota.</summary>
    private DiskView? DiskViewOf(GuestConfig config)
    {
        if (config.Limits.DiskBytes is not { } quota) return null;
        var paths = _store.PathsFor(config.Name);
        long? now;
        try
        {
            now = LayerImage.FilesystemBytes(paths.LayerImage);
        }
        catch (Exception e) when (e is IOException or DiskException or UnauthorizedAccessException)
        {
            now = null;
        }
        return new DiskView(quota, now, LayerImage.Usage(paths.LayerMount, paths.Dir));
    }
}
