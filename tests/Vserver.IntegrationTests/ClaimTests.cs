using System.Text.RegularExpressions;
using Shouldly;
using Xunit;

namespace Vserver.IntegrationTests;

/// <summary>
/// What a guest holds on the host (its address, id range, name) stays its own through anything done to its directory
/// while no agent runs: a config edited to another guest's address, a directory no agent could have made. Each test has
/// its own agent, roots, bridge and subnet, and kills and restarts that agent.
/// </summary>
public sealed class ClaimTests
{
    private static string AddressOf(TestHost host, string guest) =>
        Regex.Match(File.ReadAllText(Path.Combine(host.GuestDir(guest), "guest.json")), "\"ipv4\": \"([0-9.]+)\"").Groups[1].Value;

    [Fact]
    public async Task A_config_edited_to_another_guests_address_is_broken_and_neither_address_is_given_again()
    {
        await using var host = await TestHost.StartAsync();
        host.Vsctl("create", "cl1").ShouldSucceed();
        host.Vsctl("create", "cl2").ShouldSucceed();
        host.Vsctl("start", "cl2").ShouldSucceed();
        var (first, second) = (AddressOf(host, "cl1"), AddressOf(host, "cl2"));

        await host.KillAgentAsync();
        var config = Path.Combine(host.GuestDir("cl2"), "guest.json");
        File.WriteAllText(config, File.ReadAllText(config).Replace($"\"{second}\"", $"\"{first}\"", StringComparison.Ordinal));
        await host.StartAgentAsync();

        host.Vsctl("list").Stdout.ShouldMatch(@"(?m)^cl2\s+vserver\s+broken");
        host.Vsctl("status", "cl2").Stdout.ShouldContain($"its config says address {first}, but its network namespace has {second}");
        host.Vsctl("start", "cl1").ShouldSucceed();
        host.Vsctl("create", "cl3").ShouldSucceed();
        AddressOf(host, "cl3").ShouldNotBeOneOf(first, second);
        host.Vsctl("create", "cl4", "--ip", second).ShouldFailWith($"address {second} is already taken by guest 'cl2'");
        host.Vsctl("create", "cl4", "--ip", first).ShouldFailWith($"address {first} is already taken by guest 'cl1'");
        Directory.Exists(host.GuestDir("cl4")).ShouldBeFalse();

        host.Vsctl("destroy", "--force", "cl2").ShouldSucceed();
        host.ShouldHaveNoTraceOf("cl2");
        host.Vsctl("create", "cl4", "--ip", second).ShouldSucceed();
    }

    [Theory]
    [InlineData("Bad..Name")]
    [InlineData("esc\u001b[31m\nname")]
    public async Task A_directory_no_agent_could_have_made_is_listed_broken_and_destroy_removes_it(string name)
    {
        await using var host = await TestHost.StartAsync(buildImage: false);
        await host.KillAgentAsync();
        Directory.CreateDirectory(host.GuestDir(name));
        File.WriteAllText(Path.Combine(host.GuestDir(name), "guest.json"), $"{{\"name\": \"{name.Replace("\n", "\\n", StringComparison.Ordinal).Replace("\u001b", "\\u001b", StringComparison.Ordinal)}\", \"image\": \"busybox\"}}");
        await host.StartAgentAsync();

        var list = host.Vsctl("list").ShouldSucceed();
        list.Stdout.ShouldContain("broken");
        list.Stdout.ShouldNotContain("\u001b", customMessage: "a name from the state root is printed escaped");

        host.Vsctl("destroy", "--force", name).ShouldSucceed();
        Directory.Exists(host.GuestDir(name)).ShouldBeFalse();
        host.Vsctl("list").Stdout.ShouldNotContain("broken");
        host.Vsctl("destroy", "--force", "Other..Name").ShouldFailWith("guest name");
    }
}
