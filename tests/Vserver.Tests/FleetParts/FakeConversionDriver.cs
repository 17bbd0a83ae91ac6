using HybridHypervisor;
using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using Vserver.Isolation.Guests;

namespace Vserver.Tests.FleetParts;

/// <summary>
/// A stand-in for what promotion and demotion do on the host, for unit tests of the fleet's plans of steps: every call
/// is recorded as "operation guest", the domain it boots is a run of the fake domain driver, and a test can make one
/// operation fail (<see cref="FailAt"/>) or a held boot's kernel never come up (<see cref="KernelNeverUp"/>).
/// </summary>
internal sealed class FakeConversionDriver(FakeGuestDriver domains) : IConversionDriver
{
    private readonly Lock _gate = new();
    private readonly List<string> _calls = [];

    /// <summary>Set by a test: the operation of this name fails (with a <see cref="FleetException"/>).</summary>
    public string? FailAt { get; set; }

    /// <summary>Set by a test: a held boot's kernel never says it is ready.</summary>
    public bool KernelNeverUp { get; set; }

    public IReadOnlyList<string> Calls
    {
        get
        {
            lock (_gate) return _calls.ToList();
        }
    }

    private void Do(string operation, GuestPaths paths) => Do(operation, Path.GetFileName(paths.Dir));

    private void Do(string operation, string guest)
    {
        lock (_gate) _calls.Add($"{operation} {guest}");
        if (operation == FailAt) throw new FleetException(FleetError.Failed, $"{operation} failed (the test's fault)");
    }

    public string? SharedRootRefusal() => null;

    public Task CheckBootAsync(GuestConfig domain) => Task.CompletedTask;

    public void ShareRoot(GuestConfig vserver, GuestPaths paths, IGuestRun vserverRun) => Do("share-root", paths);

    public void ReleaseSharedRoot(GuestPaths paths, bool keepLayer) => Do(keepLayer ? "release-root-keep-layer" : "release-root", paths);

    public long CopyRootToImage(GuestConfig vserver, GuestPaths paths, long sizeBytes)
    {
        Do("copy-root", paths);
        File.WriteAllText(paths.Ext4Disk, "the copy");
        return sizeBytes;
    }

    public Task CopyOutOfDiskAsync(GuestConfig vserver, DomainSettings settings, GuestPaths paths)
    {
        Do("copy-out", paths);
        return Task.CompletedTask;
    }

    public void DiscardLayers(GuestPaths paths) => Do("discard-layers", paths);

    public void EnsureVserverNetwork(GuestConfig vserver, GuestPaths paths) => Do("vserver-network", paths);

    public void RemoveVserverNetwork(GuestPaths paths) => Do("remove-vserver-network", paths);

    public void ReleaseVserverCgroup(GuestPaths paths) => Do("release-cgroup", paths);

    public void EnsureTap(GuestPaths paths) => Do("tap", paths);

    public void RemoveTap(GuestPaths paths) => Do("remove-tap", paths);

    public async Task<IGuestRun> BootDomainAsync(GuestConfig domain, GuestPaths paths, bool held, CancellationToken ct)
    {
        Do(held ? "boot-held" : "boot", paths);
        return await domains.StartAsync(domain, paths, ct);
    }

    public Task<IDomainHold> ConnectHoldAsync(GuestPaths paths, CancellationToken ct)
    {
        Do("connect-hold", paths);
        return Task.FromResult<IDomainHold>(new Hold(this, Path.GetFileName(paths.Dir)));
    }

    public Task WaitUpAsync(IGuestRun domain, GuestPaths paths, TimeSpan timeout, CancellationToken ct)
    {
        Do("wait-up", paths);
        return Task.CompletedTask;
    }

    public Task SetBalloonTargetAsync(GuestConfig domain, IGuestRun run)
    {
        Do("balloon", domain.Name);
        return Task.CompletedTask;
    }

    public async Task KillDomainAsync(IGuestRun? domain, GuestPaths paths)
    {
        Do(domain is null ? "kill-domain-by-pid-file" : "kill-domain", paths);
        if (domain is not null) await domains.StopAsync(domain, TimeSpan.Zero);
    }

    public void RemoveDomainLeftovers(GuestPaths paths) => Do("remove-domain-leftovers", paths);

    private sealed class Hold(FakeConversionDriver driver, string guest) : IDomainHold
    {
        public Task WaitReadyAsync(TimeSpan timeout, CancellationToken ct)
        {
            driver.Do("wait-kernel", guest);
            return driver.KernelNeverUp
                ? throw new TimeoutException($"the domain's kernel did not say it was up within {timeout.TotalSeconds:0} s")
                : Task.CompletedTask;
        }

        public Task ReleaseAsync(CancellationToken ct)
        {
            driver.Do("release-hold", guest);
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
