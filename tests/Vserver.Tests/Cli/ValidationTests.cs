using Shouldly;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>Input vsctl refuses itself: exit 2, one line on stderr, and not a single request to the agent.</summary>
public class ValidationTests
{
    [Theory]
    [InlineData("vsctl: --memory: invalid size '12Q': give a number with an optional K, M, G or T suffix, e.g. 256M", "create", "web1", "--memory", "12Q")]
    [InlineData("vsctl: --memory: invalid size '-5M': a size cannot be negative", "create", "web1", "--memory=-5M")]
    [InlineData("vsctl: --cpus: invalid number of CPUs 'lots': give a positive number, e.g. 0.5 or 2", "create", "web1", "--cpus", "lots")]
    [InlineData("vsctl: --cpus: invalid number of CPUs '0': give a positive number, e.g. 0.5 or 2", "create", "web1", "--cpus", "0")]
    [InlineData("vsctl: --cpus: invalid number of CPUs '-1': give a positive number, e.g. 0.5 or 2", "set", "web1", "--cpus", "-1")]
    [InlineData("vsctl: --pids: invalid process limit '0': give a positive whole number", "create", "web1", "--pids", "0")]
    [InlineData("vsctl: --pids: invalid process limit '2.5': give a positive whole number", "set", "web1", "--pids", "2.5")]
    [InlineData("vsctl: --restart: invalid value 'sometimes': use no, on-failure or always", "create", "web1", "--restart", "sometimes")]
    [InlineData("vsctl: --cmd: unterminated single quote", "create", "web1", "--cmd", "sh -c 'sleep")]
    [InlineData("vsctl: --cmd: the command is empty", "create", "web1", "--cmd", "  ")]
    [InlineData("vsctl: set needs at least one of --memory, --memory-min, --cpus, --pids, --disk, --restart, --autostart", "set", "web1")]
    [InlineData("vsctl: --memory-min: invalid size '64Q': give a number with an optional K, M, G or T suffix, e.g. 256M", "create", "web1", "--memory-min", "64Q")]
    [InlineData("vsctl: --memory-min: invalid size '-1M': a size cannot be negative", "set", "web1", "--memory-min=-1M")]
    [InlineData("vsctl: host set needs at least one of --reserve, --overcommit, --min-free, --ksm, --nat, --routed, --uplink, --dns-domain, --dns-upstream", "host", "set")]
    [InlineData("vsctl: host set needs at least one of --reserve, --overcommit, --min-free, --ksm, --nat, --routed, --uplink, --dns-domain, --dns-upstream", "info", "set", "-f", "json")]
    [InlineData("vsctl: --overcommit: invalid ratio 'lots': give a positive number, e.g. 1 or 1.5", "host", "set", "--overcommit", "lots")]
    [InlineData("vsctl: --overcommit: invalid ratio '0': give a positive number, e.g. 1 or 1.5", "host", "set", "--overcommit", "0")]
    [InlineData("vsctl: --overcommit: invalid ratio '1,5': give a positive number, e.g. 1 or 1.5", "host", "set", "--overcommit", "1,5")]
    [InlineData("vsctl: --overcommit: invalid ratio '-2': give a positive number, e.g. 1 or 1.5", "host", "set", "--overcommit=-2")]
    [InlineData("vsctl: --ksm: invalid value 'yes': use on or off", "host", "set", "--ksm", "yes")]
    [InlineData("vsctl: --nat: invalid value 'maybe': use on or off", "host", "set", "--nat", "maybe")]
    [InlineData("vsctl: --dns-upstream: '8.8.8' is not an IPv4 address; give A.B.C.D[,A.B.C.D] or host", "host", "set", "--dns-upstream", "8.8.8")]
    [InlineData("vsctl: --uplink needs an interface name", "host", "set", "--uplink", " ")]
    [InlineData("vsctl: --dns: 'ns1.example' is not an IPv4 address; give A.B.C.D[,A.B.C.D] or none", "create", "web1", "--dns", "ns1.example")]
    [InlineData("vsctl: --dns: '' is not an IPv4 address; give A.B.C.D[,A.B.C.D] or none", "create", "web1", "--dns", "10.0.0.1,")]
    [InlineData("vsctl: --reserve: invalid size '1X': give a number with an optional K, M, G or T suffix, e.g. 256M", "host", "set", "--reserve", "1X")]
    [InlineData("vsctl: --min-free: invalid size '-5M': a size cannot be negative", "host", "set", "--ksm", "on", "--min-free=-5M")]
    [InlineData("vsctl: --format: invalid value 'table': use text or json", "host", "set", "--ksm", "off", "-f", "table")]
    [InlineData("vsctl: --format: invalid value 'yaml': use table or json", "stat", "-f", "yaml")]
    [InlineData("vsctl: --interval: invalid time '0': give seconds, e.g. 1 or 0.5", "top", "--interval", "0")]
    [InlineData("vsctl: --interval: invalid time 'soon': give seconds, e.g. 1 or 0.5", "top", "-d", "soon")]
    [InlineData("vsctl: --iterations: invalid number of iterations '0': give a positive whole number", "top", "-n", "0")]
    [InlineData("vsctl: --memory: invalid size '1X': give a number with an optional K, M, G or T suffix, e.g. 256M", "set", "web1", "--memory", "1X")]
    [InlineData("vsctl: --timeout: invalid timeout 'soon': give a whole number (0 or more)", "stop", "web1", "--timeout", "soon")]
    [InlineData("vsctl: --format: invalid value 'yaml': use table or json", "list", "-f", "yaml")]
    [InlineData("vsctl: --format: invalid value 'table': use text or json", "status", "web1", "-f", "table")]
    [InlineData("vsctl: --env: 'NOEQUALS' is not KEY=VALUE", "exec", "-e", "NOEQUALS", "web1", "--", "true")]
    [InlineData("vsctl: --kind: invalid value 'vm': use vserver or domain", "create", "vm1", "--kind", "vm")]
    [InlineData("vsctl: --disk: invalid size '2X': give a number with an optional K, M, G or T suffix, e.g. 256M", "create", "vm1", "--kind", "domain", "--disk", "2X")]
    [InlineData("vsctl: --vcpus: invalid number of vcpus '0': give a positive whole number", "create", "vm1", "--kind", "domain", "--vcpus", "0")]
    [InlineData("vsctl: --linger: invalid time 'soon': give seconds, e.g. 1 or 0.5 (0 detaches at once)", "console", "vm1", "--linger", "soon")]
    [InlineData("vsctl: --format: invalid value 'yaml': use table or json", "kernel", "list", "-f", "yaml")]
    [InlineData("vsctl: FILE: give the save file's path", "save", "vm1", " ")]
    public async Task Bad_input_is_one_line_and_exit_code_2(string message, params string[] args)
    {
        await using var agent = FakeAgent.Start();
        var cli = new CliHarness();

        var code = await cli.RunAsync(agent.SocketPath, args);

        code.ShouldBe(2);
        cli.ErrLines.ShouldBe([message]);
        cli.Out.ToString().ShouldBeEmpty();
        agent.Requests.ShouldBeEmpty();
    }

    [Theory]
    [InlineData("create")]
    [InlineData("start", "web1", "extra")]
    [InlineData("list", "--bogus")]
    [InlineData("exec", "web1")]
    [InlineData("frobnicate")]
    [InlineData("save", "vm1")]
    [InlineData("restore")]
    [InlineData("kernel", "rm")]
    [InlineData("console")]
    [InlineData("host", "set", "--ksm")]
    [InlineData("host", "set", "extra")]
    [InlineData("top", "web1")]
    [InlineData]
    public async Task System_CommandLine_parse_errors_exit_2(params string[] args)
    {
        var cli = new CliHarness();

        var code = await cli.RunAsync(FakeAgent.NewSocketPath(), args);

        code.ShouldBe(2);
        cli.Err.ToString().ShouldNotBeEmpty();
    }

    [Fact]
    public async Task Help_exits_0()
    {
        var cli = new CliHarness();
        (await cli.RunAsync(FakeAgent.NewSocketPath(), "create", "--help")).ShouldBe(0);
        cli.Out.ToString().ShouldContain("--memory");
    }
}
