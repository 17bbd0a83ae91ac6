using Shouldly;
using Vserver.Api;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>The agent answers a refusal in plain words with a code and fields; vsctl alone turns them into its one line
/// with what to do in its own flags (and leaves an uncoded answer as it is).</summary>
public class AgentErrorTests
{
    private static async Task<CliHarness> CreateAgainst(FakeResponse answer, params string[] args)
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => answer;
        var cli = new CliHarness();
        (await cli.RunAsync(agent.SocketPath, ["create", .. args])).ShouldBe(1);
        cli.Out.ToString().ShouldBeEmpty();
        return cli;
    }

    [Fact]
    public async Task Vcpus_on_a_vserver_says_to_add_kind_domain()
    {
        var cli = await CreateAgainst(FakeResponse.Error(400, "vcpus is for domains, and this guest is a vserver",
            ErrorCodes.OptionNotForKind, ("option", "vcpus"), ("kind", "vserver")), "a", "--vcpus", "2");
        cli.ErrLines.ShouldBe(["vsctl: --vcpus is for domains; add --kind domain, or leave it out for a vserver"]);
    }

    [Theory]
    [InlineData("cpus", "vsctl: --cpus is a vserver's CPU share; give a domain processors with --vcpus N")]
    [InlineData("command", "vsctl: --cmd is for vservers; a domain boots its image's /sbin/init (see vsctl console)")]
    [InlineData("privileged", "vsctl: --privileged is for vservers; a domain is isolated by its own kernel")]
    [InlineData("allowSyscalls", "vsctl: --allow-syscall is for vservers; a domain is isolated by its own kernel")]
    [InlineData("pids", "vsctl: --pids is for vservers; a domain is isolated by its own kernel")]
    public async Task A_vserver_option_on_a_domain_names_the_flag(string option, string line)
    {
        var cli = await CreateAgainst(FakeResponse.Error(400, $"{option} is for vservers, and this guest is a domain",
            ErrorCodes.OptionNotForKind, ("option", option), ("kind", "domain")), "vm1", "--kind", "domain");
        cli.ErrLines.ShouldBe([line]);
    }

    /// <summary>Status, message, code ("" for none), fields as key=value|key=value, and the line vsctl prints.</summary>
    public static TheoryData<int, string, string, string, string> Coded => new()
    {
        { 409, "a guest named 'a' already exists", ErrorCodes.NameTaken, "name=a", "vsctl: a guest named 'a' already exists; pick another name or destroy it first" },
        {
            409, "address 10.88.0.5 is already taken by guest 'b'", ErrorCodes.AddressTaken, "address=10.88.0.5|owner=b",
            "vsctl: address 10.88.0.5 is already taken by guest 'b'; pick another or leave --ip out"
        },
        { 404, "no guest named 'a'", ErrorCodes.NotFound, "guest=a", "vsctl: no guest named 'a' (see: vsctl list)" },
        {
            400, "memory limit 3145728 bytes is below the minimum of 4M", ErrorCodes.InvalidValue,
            "field=memoryBytes|value=3145728|reason=below_minimum|minimum=4194304",
            "vsctl: memory limit 3145728 bytes is below the minimum of 4M; give at least --memory 4M"
        },
        {
            400, "disk quota 100000000 bytes is not a whole number of MiB", ErrorCodes.InvalidValue,
            "field=diskBytes|value=100000000|reason=not_whole_mib",
            "vsctl: disk quota 100000000 bytes is not a whole number of MiB; give e.g. --disk 96M"
        },
        {
            400, "address 192.0.2.1 is outside this host's guest subnet 10.88.0.0/16", ErrorCodes.InvalidValue,
            "field=ipv4|value=192.0.2.1|reason=outside_subnet",
            "vsctl: address 192.0.2.1 is outside this host's guest subnet 10.88.0.0/16; pick one inside it or leave --ip out"
        },
        {
            400, "unknown image 'debian'; built images: busybox", ErrorCodes.InvalidValue, "field=image|value=debian|reason=not_built|built=busybox",
            "vsctl: unknown image 'debian'; built images: busybox; build one with: vsctl image build debian"
        },
        // A code vsctl has no advice for, and an agent older than the codes: the words as they are.
        { 409, "the pool is full", ErrorCodes.Conflict, "", "vsctl: the pool is full" },
        { 400, "something new", "", "", "vsctl: something new" },
    };

    [Theory]
    [MemberData(nameof(Coded))]
    public async Task A_coded_refusal_becomes_one_line_with_what_to_do(int status, string message, string code, string fields, string line)
    {
        var pairs = fields.Split('|', StringSplitOptions.RemoveEmptyEntries).Select(f => f.Split('=', 2)).Select(f => (f[0], f[1])).ToArray();
        var answer = code.Length == 0 ? FakeResponse.Error(status, message) : FakeResponse.Error(status, message, code, pairs);
        var cli = await CreateAgainst(answer, "a");
        cli.ErrLines.ShouldBe([line]);
    }
}
