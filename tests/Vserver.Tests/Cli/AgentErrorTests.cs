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
            400, "memory 1024M is above domain 'd''s maximum of 512M, fixed while it runs", ErrorCodes.InvalidValue,
            "field=memoryBytes|value=1073741824|reason=above_boot_maximum|maximum=536870912|guest=d",
            "vsctl: memory 1024M is above domain 'd''s maximum of 512M, fixed while it runs; stop it and set --memory 1024M to raise the maximum: vsctl stop d"
        },
        {
            400, "the disk quota of 'v' is 128M; shrinking it to 64M is refused (an ext4 layer only grows)", ErrorCodes.InvalidValue,
            "field=diskBytes|value=67108864|reason=below_minimum|minimum=134217728",
            "vsctl: the disk quota of 'v' is 128M; shrinking it to 64M is refused (an ext4 layer only grows); give at least --disk 128M"
        },
        {
            400, "disk 32M is smaller than image busybox needs (41M)", ErrorCodes.InvalidValue,
            "field=diskBytes|value=33554432|reason=too_small_for_image|minimum=42991616",
            "vsctl: disk 32M is smaller than image busybox needs (41M); give --disk 41M or more"
        },
        {
            400, "disk quota 100000000 bytes is not a whole number of MiB", ErrorCodes.InvalidValue,
            "field=diskBytes|value=100000000|reason=not_whole_mib",
            "vsctl: disk quota 100000000 bytes is not a whole number of MiB; give e.g. --disk 96M"
        },
        {
            400, "address 192.0.2.1 is outside this host's guest subnet 10.88.0.0/16", ErrorCodes.InvalidValue,
            "field=ipv4|value=192.0.2.1|reason=outside_subnet",
            "vsctl: address 192.0.2.1 is outside this host's guest subnet 10.88.0.0/16; pick one inside it or leave --ip out (public addresses: vsctl host set --routed CIDR --uplink IF)"
        },
        {
            400, "unknown image 'debian'; built images: busybox", ErrorCodes.InvalidValue, "field=image|value=debian|reason=not_built|built=busybox",
            "vsctl: unknown image 'debian'; built images: busybox; build one with: vsctl image build debian"
        },
        { 409, "guest 'a' is already running", ErrorCodes.AlreadyRunning, "guest=a|state=running|operation=start", "vsctl: guest 'a' is already running; stop it first, or use: vsctl restart a" },
        {
            409, "guest 'a' is paused; stop it first", ErrorCodes.AlreadyRunning, "guest=a|state=paused|operation=destroy",
            "vsctl: guest 'a' is paused; stop it first or use: vsctl destroy --force a"
        },
        { 409, "guest 'a' is paused", ErrorCodes.Paused, "guest=a", "vsctl: guest 'a' is paused; resume it with: vsctl resume a" },
        {
            409, "guest 'a' is broken: /s/a/config.json is missing", ErrorCodes.Broken, "guest=a|problem=/s/a/config.json is missing",
            "vsctl: guest 'a' is broken: /s/a/config.json is missing; fix its files, or remove it with: vsctl destroy --force a"
        },
        {
            409, "image 'busybox' of guest 'a' is gone", ErrorCodes.ImageMissing, "image=busybox|guest=a",
            "vsctl: image 'busybox' of guest 'a' is gone; build it again with: vsctl image build busybox"
        },
        {
            409, "the saved domain's image 'debian' is not built here", ErrorCodes.ImageMissing, "image=debian",
            "vsctl: the saved domain's image 'debian' is not built here; build it with: vsctl image build debian"
        },
        {
            409, "image 'busybox' already exists; images are read-only once built", ErrorCodes.ImageExists, "image=busybox",
            "vsctl: image 'busybox' already exists; images are read-only once built (remove it first with: vsctl image rm busybox)"
        },
        { 404, "no image named 'x'", ErrorCodes.NotFound, "image=x", "vsctl: no image named 'x' (see: vsctl image list)" },
        {
            409, "unknown kernel 'k'; built kernels: none", ErrorCodes.KernelMissing, "kernel=k|built=",
            "vsctl: unknown kernel 'k'; built kernels: none; build it with: vsctl kernel build k"
        },
        {
            409, "kernel 'k' was built before held boots existed", ErrorCodes.KernelOutdated, "kernel=k|feature=hold",
            "vsctl: kernel 'k' was built before held boots existed; rebuild it: vsctl kernel rm k && vsctl kernel build k"
        },
        { 409, "kernel 'k' already exists", ErrorCodes.KernelExists, "kernel=k", "vsctl: kernel 'k' already exists; remove it first with: vsctl kernel rm k" },
        { 409, "'a' is already a domain", ErrorCodes.AlreadyDomain, "guest=a", "vsctl: 'a' is already a domain; to make it a vserver again: vsctl demote a" },
        { 409, "'a' is a vserver already", ErrorCodes.AlreadyVserver, "guest=a", "vsctl: 'a' is a vserver already; to give it its own kernel: vsctl promote a" },
        {
            409, "'a' is a vserver: it has no serial console", ErrorCodes.NotADomain, "guest=a|operation=console",
            "vsctl: 'a' is a vserver: it has no serial console; enter it with: vsctl enter a"
        },
        {
            409, "the console of 'a' is attached elsewhere (one client at a time)", ErrorCodes.ConsoleBusy, "guest=a",
            "vsctl: the console of 'a' is attached elsewhere (one client at a time); detach that one with Ctrl-]"
        },
        {
            409, "the guest agent of domain 'a' does not answer (timeout)", ErrorCodes.GuestAgentSilent, "guest=a",
            "vsctl: the guest agent of domain 'a' does not answer (timeout); see its console with: vsctl console a"
        },
        { 404, "guest 'a' publishes no host port 80/tcp", ErrorCodes.NotFound, "guest=a|port=80|protocol=tcp", "vsctl: guest 'a' publishes no host port 80/tcp (see: vsctl port list a)" },
        {
            409, "host port 80/tcp is already published for 'a' (to its port 8080)", ErrorCodes.PortTaken, "port=80/tcp|owner=a|guestPort=8080",
            "vsctl: host port 80/tcp is already published for 'a' (to its port 8080); remove it first: vsctl port remove a 80/tcp"
        },
        {
            409, "host port 80/tcp is already published for guest 'b'; pick another host port", ErrorCodes.PortTaken, "port=80/tcp|owner=b",
            "vsctl: host port 80/tcp is already published for guest 'b'; pick another host port"
        },
        {
            409, "cannot create 'a': its guarantee of 2.0G does not fit the memory pool", ErrorCodes.PoolFull, "guest=a|bound=guarantees",
            "vsctl: cannot create 'a': its guarantee of 2.0G does not fit the memory pool; give a smaller --memory-min, lower or destroy another guest, or shrink the host reserve (vsctl host set --reserve)"
        },
        {
            409, "cannot start 'a': its limit of 2.0G would bring the guests' limits to 9.0G", ErrorCodes.PoolFull, "guest=a|bound=limits",
            "vsctl: cannot start 'a': its limit of 2.0G would bring the guests' limits to 9.0G; give a smaller --memory, or allow more overcommit (vsctl host set --overcommit)"
        },
        {
            409, "the pool's capacity would be 1.0G, less than the 2.0G already guaranteed to guests", ErrorCodes.PoolTooSmall, "bound=guarantees",
            "vsctl: the pool's capacity would be 1.0G, less than the 2.0G already guaranteed to guests; lower their --memory-min first or keep a smaller reserve"
        },
        {
            409, "'a' has no disk quota: its writable layer is a directory on the host's disk; a quota is given at create", ErrorCodes.NoDiskQuota, "guest=a",
            "vsctl: 'a' has no disk quota: its writable layer is a directory on the host's disk; a quota is given at create (vsctl create NAME --disk SIZE)"
        },
        {
            409, "the disk quota image of 'a' is missing (/s/a/layer.img): its writable layer is gone", ErrorCodes.LayerMissing, "guest=a|path=/s/a/layer.img",
            "vsctl: the disk quota image of 'a' is missing (/s/a/layer.img): its writable layer is gone; destroy the guest with: vsctl destroy a"
        },
        { 400, "/tmp/x is not a vserver save file", ErrorCodes.NotASaveFile, "file=/tmp/x", "vsctl: /tmp/x is not a vserver save file; give a file written by vsctl save" },
        {
            500, "saving a failed writing /tmp/x: no space; the domain is stopped with its disk intact", ErrorCodes.SaveFailed, "guest=a|file=/tmp/x",
            "vsctl: saving a failed writing /tmp/x: no space; the domain is stopped with its disk intact: start it with: vsctl start a"
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
