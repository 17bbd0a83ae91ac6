using System.Text.Json;
using Shouldly;
using Vserver.Api;
using Vserver.Cli;
using Vserver.Cli.Commands;
using Vserver.Cli.Hosting;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>vsctl port add|list|remove against a fake agent: the request each sends and what it prints.</summary>
public class PortCommandTests
{
    private static readonly PortList Web1Ports = new()
    {
        Guests =
        [
            new GuestPorts
            {
                Name = "web1", Ipv4 = "10.88.0.2",
                Ports = [new PortInfo { HostPort = 8080, GuestPort = 80, Protocol = "tcp" }, new PortInfo { HostPort = 5353, GuestPort = 53, Protocol = "udp" }],
            },
        ],
    };

    private static FakeResponse Ports(PortList list, int status = 200) => FakeResponse.Json(list, ApiJson.Default.PortList, status);

    [Theory]
    [InlineData("8080:80", 8080, 80, "tcp")]
    [InlineData("8080:80/tcp", 8080, 80, "tcp")]
    [InlineData("5353:53/udp", 5353, 53, "udp")]
    [InlineData("5353:53/UDP", 5353, 53, "udp")]
    [InlineData("1:65535", 1, 65535, "tcp")]
    public void Specs_parse(string text, int host, int guest, string protocol)
    {
        PortCommand.ParseSpec(text).ShouldBe(new PortInfo(host, guest, protocol));
        PortCommand.ParseSpec(text).ToString().ShouldBe($"{host}:{guest}/{protocol}");
    }

    [Theory]
    [InlineData("0:80")]
    [InlineData("65536:80")]
    [InlineData("8080:0")]
    [InlineData("8080:99999999999")]
    [InlineData("-1:80")]
    [InlineData("+80:80")]
    [InlineData("8080")]
    [InlineData("1:2:3")]
    [InlineData("http:80")]
    [InlineData(":80")]
    public void Bad_specs_are_refused_naming_the_form(string text) =>
        Should.Throw<UsageException>(() => PortCommand.ParseSpec(text)).Message
            .ShouldBe($"invalid port '{text}': expected HOSTPORT:GUESTPORT[/tcp|udp] with ports 1..65535, e.g. 8080:80");

    [Theory]
    [InlineData("8080:80/sctp")]
    [InlineData("8080:80/")]
    public void Bad_protocols_are_refused(string text) =>
        Should.Throw<UsageException>(() => PortCommand.ParseSpec(text)).Message.ShouldBe($"invalid port '{text}': the protocol is tcp or udp");

    [Theory]
    [InlineData("8080", 8080, "tcp")]
    [InlineData("5353/udp", 5353, "udp")]
    [InlineData("5353/UDP", 5353, "udp")]
    public void A_published_host_port_is_named_by_port_and_protocol(string text, int port, string protocol) =>
        PortCommand.ParseHostPort(text).ShouldBe((port, protocol));

    [Theory]
    [InlineData("0", "invalid host port '0': expected HOSTPORT[/tcp|udp] with a port 1..65535, e.g. 8080 or 5353/udp")]
    [InlineData("8080:80", "invalid host port '8080:80': expected HOSTPORT[/tcp|udp] with a port 1..65535, e.g. 8080 or 5353/udp")]
    [InlineData("8080/icmp", "invalid port '8080/icmp': the protocol is tcp or udp")]
    public void A_bad_host_port_is_refused(string text, string message) =>
        Should.Throw<UsageException>(() => PortCommand.ParseHostPort(text)).Message.ShouldBe(message);

    [Fact]
    public async Task Add_sends_the_parsed_spec_and_says_where_the_port_leads_and_what_keeps_others_away()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = r => r.Method == "POST"
            ? FakeResponse.Json(new GuestInfo { Name = "web1", Kind = "vserver", State = "running", Ipv4 = "10.88.0.2", Ports = Web1Ports.Guests[0].Ports },
                ApiJson.Default.GuestInfo, 201)
            : Ports(Web1Ports with { Notes = ["IPv4 forwarding is off"] });
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "port", "add", "web1", "5353:53/udp")).ShouldBe(0);

        cli.OutLines.ShouldBe(["published web1: host port 5353/udp -> 10.88.0.2:53", "note: IPv4 forwarding is off"]);
        var requests = agent.Requests.ToArray();
        requests.Select(r => $"{r.Method} {r.Path}").ShouldBe(["POST /v1/guests/web1/ports", "GET /v1/guests/web1/ports"]);
        JsonSerializer.Deserialize(requests[0].Body, ApiJson.Default.PortInfo)
            .ShouldBe(new PortInfo { HostPort = 5353, GuestPort = 53, Protocol = "udp" });
    }

    [Theory]
    [InlineData("vsctl: invalid port '0:80': expected HOSTPORT:GUESTPORT[/tcp|udp] with ports 1..65535, e.g. 8080:80", "port", "add", "web1", "0:80")]
    [InlineData("vsctl: invalid port '80:80/sctp': the protocol is tcp or udp", "port", "add", "web1", "80:80/sctp")]
    [InlineData("vsctl: invalid host port '8080:80': expected HOSTPORT[/tcp|udp] with a port 1..65535, e.g. 8080 or 5353/udp", "port", "remove", "web1", "8080:80")]
    [InlineData("vsctl: --format: invalid value 'yaml': use table or json", "port", "list", "-f", "yaml")]
    public async Task Bad_input_is_one_line_exit_code_2_and_no_request(string message, params string[] args)
    {
        await using var agent = FakeAgent.Start();
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, args)).ShouldBe(2);

        cli.ErrLines.ShouldBe([message]);
        agent.Requests.ShouldBeEmpty();
    }

    [Fact]
    public async Task The_agents_refusal_of_a_taken_port_is_printed_as_is()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Error(409, "host port 8080/tcp is already published for guest 'web2'; pick another host port");
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "port", "add", "web1", "8080:80")).ShouldBe(1);

        cli.ErrLines.ShouldBe(["vsctl: host port 8080/tcp is already published for guest 'web2'; pick another host port"]);
    }

    [Fact]
    public async Task List_shows_every_guests_ports_with_the_address_they_lead_to_and_the_notes()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Ports(Web1Ports with
        {
            Guests = [.. Web1Ports.Guests, new GuestPorts { Name = "vm1", Ipv4 = "10.88.0.3", Ports = [new PortInfo { HostPort = 2222, GuestPort = 22, Protocol = "tcp" }] }],
            Notes = ["IPv4 forwarding is off"],
        });
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "port", "list")).ShouldBe(0);

        cli.OutLines.ShouldBe(
        [
            "NAME   PROTO   HOST PORT   GUEST",
            "web1   tcp     8080        10.88.0.2:80",
            "web1   udp     5353        10.88.0.2:53",
            "vm1    tcp     2222        10.88.0.3:22",
            "note: IPv4 forwarding is off",
        ]);
        agent.Requests.ShouldHaveSingleItem().Path.ShouldBe("/v1/ports");
    }

    [Fact]
    public async Task List_of_one_guest_as_json_is_the_agents_answer()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Ports(Web1Ports);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "port", "ls", "web1", "-f", "json")).ShouldBe(0);

        agent.Requests.ShouldHaveSingleItem().Path.ShouldBe("/v1/guests/web1/ports");
        var printed = JsonSerializer.Deserialize(cli.Out.ToString(), ApiJson.Default.PortList)!;
        printed.Guests.ShouldHaveSingleItem().Ports.Select(p => $"{p.HostPort}:{p.GuestPort}/{p.Protocol}").ShouldBe(["8080:80/tcp", "5353:53/udp"]);
    }

    [Theory]
    [InlineData("8080", "DELETE /v1/guests/web1/ports/8080/tcp", "withdrew web1: host port 8080/tcp")]
    [InlineData("5353/udp", "DELETE /v1/guests/web1/ports/5353/udp", "withdrew web1: host port 5353/udp")]
    public async Task Remove_names_the_host_port_and_protocol(string port, string route, string line)
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Ports(Web1Ports);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "port", "rm", "web1", port)).ShouldBe(0);

        cli.OutLines.ShouldBe([line]);
        var request = agent.Requests.ShouldHaveSingleItem();
        $"{request.Method} {request.Path}".ShouldBe(route);
    }

    [Fact]
    public void Status_shows_the_ports_a_guest_publishes()
    {
        var output = new StringWriter { NewLine = "\n" };
        StatusCommand.Write(new GuestInfo
        {
            Name = "web1", Kind = "vserver", State = "stopped", Ipv4 = "10.88.0.2", Ports = Web1Ports.Guests[0].Ports,
        }, new FixedClock(CliHarness.Now), output);

        output.ToString().Split('\n').ShouldContain("ports:        8080->80/tcp, 5353->53/udp");
    }
}
