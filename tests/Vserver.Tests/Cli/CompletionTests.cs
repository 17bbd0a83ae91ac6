using Shouldly;
using Vserver.Api;
using Vserver.Cli;
using Vserver.Cli.Commands;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>What `vsctl completion bash` offers at the cursor: verbs and options by prefix, an option's fixed values,
/// guest names from the agent, nothing from an agent that is not there.</summary>
public sealed class CompletionTests
{
    private static IReadOnlyList<string> Complete(string line) => CompletionCommand.Candidates(Vsctl.BuildRoot(new CliHarness().Context), line);

    [Fact]
    public void Verbs_complete_by_their_beginning_only()
    {
        Complete("vsctl sta").ShouldBe(["start", "stat", "status"]);
        Complete("vsctl ").ShouldContain("promote");
        Complete("vsctl ").ShouldNotContain("__complete");
        Complete("vsctl ").ShouldNotContain("/?");
    }

    [Fact]
    public void Options_and_their_fixed_values_complete()
    {
        Complete("vsctl host set --n").ShouldBe(["--nat"]);
        Complete("vsctl list -f ").ShouldBe(["json", "table"], ignoreOrder: true);
        Complete("vsctl completion ").ShouldContain("bash");
    }

    [Fact]
    public async Task Guest_names_come_from_the_agent_on_the_socket_the_line_names()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = r => r switch
        {
            { Method: "GET", Path: "/v1/guests" } => FakeResponse.Json(new GuestList
            {
                Guests = [Guest("web2"), Guest("db1"), Guest("web1")],
            }, ApiJson.Default.GuestList),
            _ => FakeResponse.Error(404, "no"),
        };
        Complete($"vsctl --socket {agent.SocketPath} start we").ShouldBe(["web1", "web2"]);
        Complete($"vsctl --socket {agent.SocketPath} stop ").ShouldContain("db1");
    }

    [Fact]
    public void No_agent_means_no_names_and_no_error()
    {
        var socket = FakeAgent.NewSocketPath();
        Complete($"vsctl --socket {socket} start we").ShouldBeEmpty();
    }

    [Fact]
    public async Task The_bash_script_is_printed_and_names_the_hidden_verb()
    {
        var cli = new CliHarness();
        (await Vsctl.RunAsync(["completion", "bash"], cli.Context)).ShouldBe(0);
        cli.Out.ToString().ShouldContain("complete -o default -F _vsctl_complete vsctl");
        cli.Out.ToString().ShouldContain("__complete");
        (await Vsctl.RunAsync(["completion", "fish"], cli.Context)).ShouldBe(2);
    }

    private static GuestInfo Guest(string name) => new() { Name = name, Kind = "vserver", State = "running" };
}
