using System.Text.Json;
using HybridHypervisor;
using HybridHypervisor.Model;
using Shouldly;
using Vserver.Api;
using Vserver.Cli.Commands;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>Disk quotas in vsctl and the config: --disk on create and set, what status says, old configs.</summary>
public sealed class DiskQuotaTests
{
    private const long M = 1L << 20;
    private const long G = 1L << 30;

    [Fact]
    public async Task Create_and_set_send_the_quota_in_bytes()
    {
        await using var agent = FakeAgent.Start();
        var guest = new GuestInfo { Name = "web1", Kind = "vserver", State = "running", DiskBytes = 2 * G, DiskCurrentBytes = 64 * M };
        agent.Handler = _ => FakeResponse.Json(guest, ApiJson.Default.GuestInfo);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "create", "web1", "--disk", "64M")).ShouldBe(0);
        (await cli.RunAsync(agent.SocketPath, "set", "web1", "--disk", "2G")).ShouldBe(0);

        var requests = agent.Requests.ToArray();
        JsonSerializer.Deserialize(requests[0].Body, ApiJson.Default.GuestSpec)
            .ShouldBe(new GuestSpec { Name = "web1", DiskBytes = 64 * M });
        requests[1].Body.ShouldBe($$"""{"diskBytes":{{2 * G}}}""");
        cli.OutLines[1].ShouldBe("updated web1: memory -, cpus -, pids -, restart no, autostart off, disk 2G (the layer is 64M until its next start, which grows it to 2G)");
    }

    [Fact]
    public async Task A_quota_that_is_no_size_is_refused_before_the_agent_is_asked()
    {
        await using var agent = FakeAgent.Start();
        var cli = new CliHarness();
        (await cli.RunAsync(agent.SocketPath, "set", "web1", "--disk", "lots")).ShouldBe(2);
        cli.ErrLines.Single().ShouldContain("--disk");
        agent.Requests.ShouldBeEmpty();
    }

    [Fact]
    public void Status_shows_the_quota_its_use_and_a_grow_that_waits()
    {
        var running = new GuestInfo { Name = "web1", Kind = "vserver", State = "running", DiskBytes = 64 * M, DiskUsedBytes = 1258291, DiskFreeBytes = 55 * M };
        StatusCommand.Disk(running).ShouldBe("1.2M of 64M used, 55M free");
        StatusCommand.Disk(running with { DiskBytes = 128 * M, DiskCurrentBytes = 64 * M })
            .ShouldBe("1.2M of 128M used, 55M free (the layer is 64M until its next start, which grows it to 128M)");
        StatusCommand.Disk(running with { State = "stopped", DiskUsedBytes = null, DiskFreeBytes = null }).ShouldBe("64M quota (use shown while it runs)");
        StatusCommand.Disk(running with { DiskBytes = null, DiskUsedBytes = null, DiskFreeBytes = null }).ShouldBe("no quota");
    }

    [Fact]
    public void A_config_without_a_quota_loads_as_before_and_one_with_a_quota_keeps_it()
    {
        var root = Directory.CreateTempSubdirectory("vsquota-").FullName;
        try
        {
            var options = new FleetOptions
            {
                StateRoot = root, RunRoot = Path.Combine(root, "run"), BridgeName = "vsx", Subnet = Ipv4Subnet.Parse("10.9.0.0/24"),
                CgroupParent = "x", VsinitPath = "/nonexistent", RecipesRoot = root,
            };
            var store = new GuestStore(options);
            var old = Path.Combine(root, "guests", "old");
            Directory.CreateDirectory(old);
            File.WriteAllText(Path.Combine(old, "guest.json"), """
                { "name": "old", "image": "busybox", "limits": { "memoryBytes": 268435456 }, "network": { "ipv4": "10.9.0.5" },
                  "security": { "idMap": { "hostBase": 1000000, "count": 65536 } } }
                """);
            var quota = new GuestConfig
            {
                Name = "quota", Image = "busybox", Limits = new GuestLimits { DiskBytes = 64 * M }, Network = new GuestNetworkConfig { Ipv4 = "10.9.0.6" },
                Security = new GuestSecurity { IdMap = new IdMap(1065536, 65536) },
            };
            store.Save(quota);
            File.ReadAllText(Path.Combine(root, "guests", "quota", "guest.json")).ShouldContain("\"diskBytes\": 67108864");
            var bad = quota with { Name = "bad", Limits = new GuestLimits { DiskBytes = 8 * M }, Network = new GuestNetworkConfig { Ipv4 = "10.9.0.7" } };
            store.Save(bad);

            var (guests, broken) = store.LoadAll(2);
            guests.Single(g => g.Name == "old").Limits.DiskBytes.ShouldBeNull();
            guests.Single(g => g.Name == "quota").Limits.DiskBytes.ShouldBe(64 * M);
            broken.Single().Problem.ShouldContain("disk quota 8M is below the minimum of 16M");
            var paths = store.PathsFor("quota");
            HybridHypervisor.Vservers.WritableLayer.Upper(quota, paths).ShouldBe(Path.Combine(root, "guests", "quota", "layer", "upper"));
            HybridHypervisor.Vservers.WritableLayer.Upper(guests.Single(g => g.Name == "old"), store.PathsFor("old")).ShouldBe(Path.Combine(old, "upper"));
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
