using System.Diagnostics;
using System.Text.Json;
using Vserver.IntegrationTests;

namespace Vserver.FaultTests;

/// <summary>
/// <c>vsctl host check</c> against a mess made by hand beside a running guest: one thing of every kind the check
/// judges, each carrying the agent's names the way a crash would leave it. The check must name every one (exit 1),
/// the repair must remove every one and plug the guest's veth back into the bridge, and the guest must run on
/// untouched, answering on its address.
/// </summary>
public sealed class HostCheckTests : IAsyncLifetime
{
    private TestHost _host = null!;
    private Process? _stray;
    private string? _stranger;

    public async ValueTask InitializeAsync() => _host = await TestHost.StartAsync();

    public async ValueTask DisposeAsync()
    {
        if (_stray is { HasExited: false }) _stray.Kill(entireProcessTree: true);
        _stray?.Dispose();
        if (_stranger is not null && Directory.Exists($"/sys/class/net/{_stranger}")) TestHost.Run("ip", "link", "del", _stranger);
        await _host.DisposeAsync();
    }

    [Fact(Timeout = 180_000)]
    public async Task Check_names_every_kind_of_orphan_and_repair_removes_them_while_the_guest_runs_on()
    {
        var port = 20000 + Random.Shared.Next(0, 20000);
        _host.Vsctl("create", "web", "--memory", "64M").ShouldSucceed();
        _host.Vsctl("port", "add", "web", $"{port}:80").ShouldSucceed();
        _host.Vsctl("start", "web").ShouldSucceed();
        var address = JsonDocument.Parse(_host.Vsctl("status", "web", "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("ipv4").GetString()!;
        _host.Vsctl("host", "check").ShouldSucceed().Stdout.ShouldContain("nothing orphaned");

        // A process naming the run directory of a guest that does not exist (a QEMU or vsinit whose guest is gone).
        var ghostRun = Path.Combine(_host.RunDir, "guests", "ghost");
        Directory.CreateDirectory(ghostRun);
        var stray = _stray = Process.Start("bash", ["-c", "while :; do sleep 0.2; done", Path.Combine(ghostRun, "qemu")]);
        // A cgroup of no guest under the agent's parent, in every hierarchy the parent is in.
        var ghostCgroups = TestHost.CgroupHierarchies.Select(h => Path.Combine(h, _host.CgroupParent))
            .Where(Directory.Exists).Select(p => Path.Combine(p, "ghost")).ToList();
        ghostCgroups.ShouldNotBeEmpty("the running guest's cgroup parent");
        foreach (var cg in ghostCgroups) Directory.CreateDirectory(cg);
        // A mount in that run directory.
        var mount = Path.Combine(ghostRun, "root");
        Directory.CreateDirectory(mount);
        TestHost.Run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount).ShouldSucceed();
        // A loop device on the image of a guest whose directory was half deleted (the leftover of a destroy).
        var leftover = Path.Combine(_host.Root, "guests", ".old.destroying-0123");
        Directory.CreateDirectory(leftover);
        var image = Path.Combine(leftover, "upper.img");
        using (var f = File.Create(image)) f.SetLength(1 << 20);
        var loop = TestHost.Run("losetup", "-f", "--show", image).ShouldSucceed().Stdout.Trim();
        // An interface on the bridge that is no guest's.
        // (A veth pair: this kernel has no dummy driver; deleting one end deletes both.)
        _stranger = $"vsq{_host.Id}";
        TestHost.Run("ip", "link", "add", _stranger, "type", "veth", "peer", "name", $"vsr{_host.Id}").ShouldSucceed();
        TestHost.Run("ip", "link", "set", _stranger, "master", _host.Bridge).ShouldSucceed();
        // The guest's own veth off the bridge: it is no orphan, but the guest has lost its network.
        var veth = _host.HostVeth("web");
        TestHost.Run("ip", "link", "set", veth, "nomaster").ShouldSucceed();
        TestHost.Run("busybox", "ping", "-c", "1", "-W", "1", address).Code.ShouldNotBe(0, "web unreachable with its veth off the bridge");
        // A port rule no guest publishes.
        TestHost.Run("nft", "add", "rule", "ip", _host.PortsTable, "prerouting", "tcp", "dport", $"{port + 1}", "dnat", "to", $"{address}:81").ShouldSucceed();

        var check = _host.Vsctl("host", "check", "-f", "json");
        check.Code.ShouldBe(1, check.ToString());
        var found = Orphans(check.Stdout);
        string Found() => string.Join("\n", found.Select(o => $"{o.Kind} | {o.What} | {o.Why}"));
        found.ShouldContain(o => o.Kind == "process" && o.What.StartsWith($"pid {stray.Id} "), Found());
        found.ShouldContain(o => o.Kind == "cgroup" && o.What == $"{_host.CgroupParent}/ghost", Found());
        found.ShouldContain(o => o.Kind == "mount" && o.What == mount, Found());
        found.ShouldContain(o => o.Kind == "directory" && o.What == ghostRun, Found());
        found.ShouldContain(o => o.Kind == "directory" && o.What == leftover, Found());
        found.ShouldContain(o => o.Kind == "loop device" && o.What.StartsWith(loop + " "), Found());
        found.ShouldContain(o => o.Kind == "interface" && o.What == _stranger, Found());
        found.ShouldContain(o => o.Kind == "interface" && o.What == veth && o.Why.Contains("not on bridge"), Found());
        found.ShouldContain(o => o.Kind == "nftables" && o.Why.Contains($"tcp {port + 1} -> {address}:81: no guest publishes it"), Found());
        // Of the running guest, only its veth: its cgroup, netns, process and port are its own.
        string.Join(", ", found.Where(o => o.Why.Contains("'web'")).Select(o => o.What)).ShouldBe(veth, Found());
        // The human form says how to fix it.
        _host.Vsctl("host", "check").Stdout.ShouldContain("remove them with: vsctl host check --repair");

        var repair = _host.Vsctl("host", "check", "--repair", "-f", "json");
        repair.Code.ShouldBe(0, repair.ToString());
        Orphans(repair.Stdout).Where(o => !o.Repaired).ShouldBeEmpty(repair.Stdout);
        _host.Vsctl("host", "check").ShouldSucceed().Stdout.ShouldContain("nothing orphaned");

        // From outside: every planted thing gone, the veth back on the bridge, the published port's rule kept.
        stray.WaitForExit(5000).ShouldBeTrue("the stray process was killed");
        foreach (var cg in ghostCgroups) Directory.Exists(cg).ShouldBeFalse(cg);
        TestHost.MountsUnder(ghostRun).ShouldBeEmpty();
        Directory.Exists(ghostRun).ShouldBeFalse();
        Directory.Exists(leftover).ShouldBeFalse();
        TestHost.LoopDevicesUnder(_host.Root).ShouldBeEmpty();
        Directory.Exists($"/sys/class/net/{_stranger}").ShouldBeFalse();
        Path.GetFileName(new FileInfo($"/sys/class/net/{veth}/master").LinkTarget).ShouldBe(_host.Bridge);
        var table = TestHost.Run("nft", "list", "table", "ip", _host.PortsTable).ShouldSucceed().Stdout;
        table.ShouldContain($"dport {port} dnat");
        table.ShouldNotContain($"dport {port + 1} ");
        // The guest ran on through all of it, and answers again.
        _host.Vsctl("exec", "web", "--", "hostname").ShouldSucceed().Stdout.Trim().ShouldBe("web");
        TestHost.Run("busybox", "ping", "-c", "1", "-W", "5", address).ShouldSucceed();
        await _host.ShouldHaveNothingOrphanedAsync();
    }

    private sealed record Orphan(string Kind, string What, string Why, bool Repaired);

    private static List<Orphan> Orphans(string json) =>
        JsonDocument.Parse(json).RootElement.GetProperty("orphans").EnumerateArray().Select(o => new Orphan(
            o.GetProperty("kind").GetString()!, o.GetProperty("what").GetString()!, o.GetProperty("why").GetString()!,
            o.TryGetProperty("repaired", out var r) && r.GetBoolean())).ToList();
}
