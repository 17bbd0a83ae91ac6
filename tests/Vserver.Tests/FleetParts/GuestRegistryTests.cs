using HybridHypervisor;
using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using Shouldly;
using Xunit;

namespace Vserver.Tests.FleetParts;

/// <summary>The registry: who is on the host and what each guest holds, broken guests and guests being created included.</summary>
public sealed class GuestRegistryTests
{
    private static GuestConfig Config(string name, string address, long idBase = 1_000_000, string? mac = null) => new()
    {
        Name = name,
        Image = "busybox",
        Network = new GuestNetworkConfig { Ipv4 = address, Mac = mac },
        Security = new GuestSecurity { IdMap = new IdMap(idBase, 65536) },
    };

    [Fact]
    public void A_broken_guest_keeps_its_name_address_and_ids_from_a_new_guest()
    {
        var registry = new GuestRegistry();
        registry.AddBroken(new BrokenGuest("old", "guest.json: invalid JSON") { Claims = new GuestClaims("old", "10.0.0.2", new IdMap(1_000_000, 65536)) });

        registry.NameTaken("old").ShouldBeTrue();
        registry.AddressOwner("10.0.0.2").ShouldBe("old");
        Should.Throw<FleetException>(() => registry.BeginCreate(Config("new", "10.0.0.2", idBase: 1_065_536)))
            .Message.ShouldBe("cannot create 'new': address 10.0.0.2 is held by guest 'old'");
        Should.Throw<FleetException>(() => registry.BeginCreate(Config("new", "10.0.0.3", idBase: 1_000_000 + 100)))
            .Message.ShouldBe("cannot create 'new': host ids 1000100..1065635 overlap those of guest 'old' (1000000..1065535)");
        Should.Throw<FleetException>(() => registry.BeginCreate(Config("old", "10.0.0.9", idBase: 2_000_000)))
            .Code.ShouldBe(Vserver.Api.ErrorCodes.NameTaken);

        registry.Remove("old");
        registry.BeginCreate(Config("new", "10.0.0.2"));
        registry.AddressOwner("10.0.0.2").ShouldBe("new");
    }

    [Fact]
    public void A_guest_being_created_holds_its_claims_until_it_is_added_or_abandoned()
    {
        var registry = new GuestRegistry();
        registry.BeginCreate(Config("web", "10.0.0.2", mac: "02:00:00:00:00:01"));

        registry.Configs().Select(c => c.Name).ShouldBe(["web"]);
        registry.Clash(new GuestClaims("other", "10.0.0.5", Mac: "02:00:00:00:00:01")).ShouldBe("MAC 02:00:00:00:00:01 is held by guest 'web'");
        registry.Clash(GuestClaims.Of(Config("web", "10.0.0.2"))).ShouldBeNull("a guest does not clash with itself");

        registry.AbandonCreate("web");
        registry.NameTaken("web").ShouldBeFalse();
        registry.AddressOwner("10.0.0.2").ShouldBeNull();

        registry.BeginCreate(Config("web", "10.0.0.2"));
        registry.Add(new GuestRuntime(Config("web", "10.0.0.2")));
        registry.Guests().Select(g => g.Config.Name).ShouldBe(["web"]);
        registry.Configs().Count.ShouldBe(1, "no longer being created once added");
    }

    [Fact]
    public void A_guest_marked_broken_leaves_the_running_guests_and_keeps_its_claims()
    {
        var registry = new GuestRegistry();
        var config = Config("web", "10.0.0.2");
        registry.Add(new GuestRuntime(config));

        registry.AddBroken(new BrokenGuest("web", "its address is another's") { Claims = GuestClaims.Of(config) });

        registry.Find("web").ShouldBeNull();
        registry.FindBroken("web")!.Problem.ShouldBe("its address is another's");
        registry.AddressOwner("10.0.0.2").ShouldBe("web");
    }
}
