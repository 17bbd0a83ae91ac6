using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class CreateCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName("The new guest's name");
        var image = new Option<string?>("--image") { Description = "Root file system image [default: the agent's, busybox]", HelpName = "IMAGE" };
        var memory = SharedOptions.Memory("for a domain, its RAM [default: 256M]");
        var memoryMin = SharedOptions.MemoryMin();
        var cpus = SharedOptions.Cpus();
        var pids = SharedOptions.Pids();
        var ip = new Option<string?>("--ip")
        {
            Description = "IPv4 address: one of the guest subnet, or of the host's routed range (vsctl host set --routed) to be reached without NAT [default: the subnet's next free one]",
            HelpName = "A.B.C.D",
        };
        var dns = new Option<string?>("--dns")
        {
            Description = "Name servers written into the guest's /etc/resolv.conf at each start, comma-separated, or none to keep the guest's own file [default: the host's resolver on the bridge, which also answers NAME.vserver]",
            HelpName = "ADDR[,ADDR]|none",
        };
        var restart = new Option<string?>("--restart")
        {
            Description = "Restart policy: no, on-failure or always",
            HelpName = "no|on-failure|always",
            CompletionSources = { "no", "on-failure", "always" },
        };
        var cmd = new Option<string?>("--cmd")
        {
            Description = "The guest's init command as one string, split like a shell does (quotes, backslashes) [default: /sbin/init]",
            HelpName = "COMMAND",
        };
        var autostart = new Option<bool>("--autostart")
        {
            Description = "Start the guest whenever the host boots (the agent starts all such guests at once)",
        };
        var privileged = new Option<bool>("--privileged")
        {
            Description = "Run without a user namespace: root inside is root on the host (with fewer capabilities). Only for guests that cannot work otherwise",
        };
        var allowSyscall = new Option<string[]>("--allow-syscall")
        {
            Description = "Let the guest call a syscall the default filter refuses (repeatable), e.g. keyctl",
            HelpName = "NAME",
            AllowMultipleArgumentsPerToken = false,
        };
        var kind = new Option<string?>("--kind")
        {
            Description = "vserver (shares the host's kernel) or domain (a VM under QEMU with its own kernel) [default: vserver]",
            HelpName = "vserver|domain",
            CompletionSources = { "vserver", "domain" },
        };
        var vcpus = new Option<string?>("--vcpus") { Description = "Domains: virtual processors [default: 1]", HelpName = "N" };
        var disk = new Option<string?>("--disk")
        {
            Description = "Vservers: a disk quota, e.g. 2G: the writable layer lives in an ext4 image of this size [default: none]. " +
                          "Domains: size of the root disk [default: 2G]",
            HelpName = "SIZE",
        };
        var kernel = new Option<string?>("--kernel")
        {
            Description = "Domains: the kernel to boot, built with vsctl kernel build [default: default]",
            HelpName = "KERNEL",
        };
        var command = new Command("create", "Create a guest (stopped): a vserver, or with --kind domain a VM")
        {
            name, kind, image, memory, memoryMin, cpus, pids, ip, dns, restart, autostart, cmd, privileged, allowSyscall, vcpus, disk, kernel,
        };
        command.SetAction((parse, ct) =>
        {
            var options = new Options
            {
                Name = parse.GetValue(name)!,
                Image = parse.GetValue(image),
                Memory = parse.GetValue(memory),
                MemoryMin = parse.GetValue(memoryMin),
                Cpus = parse.GetValue(cpus),
                Pids = parse.GetValue(pids),
                Ip = parse.GetValue(ip),
                Dns = parse.GetValue(dns),
                Restart = parse.GetValue(restart),
                Autostart = parse.GetValue(autostart),
                Cmd = parse.GetValue(cmd),
                Privileged = parse.GetValue(privileged),
                AllowSyscalls = parse.GetValue(allowSyscall) ?? [],
                Kind = parse.GetValue(kind),
                Vcpus = parse.GetValue(vcpus),
                Disk = parse.GetValue(disk),
                Kernel = parse.GetValue(kernel),
            };
            return cli.RunAsync(parse, client => HandleAsync(client, options, cli.Out, cli.Err, ct));
        });
        return command;
    }

    public sealed record Options
    {
        public required string Name { get; init; }
        public string? Image { get; init; }
        public string? Memory { get; init; }
        public string? MemoryMin { get; init; }
        public string? Cpus { get; init; }
        public string? Pids { get; init; }
        public string? Ip { get; init; }
        public string? Dns { get; init; }
        public string? Restart { get; init; }
        public bool Autostart { get; init; }
        public string? Cmd { get; init; }
        public bool Privileged { get; init; }
        public IReadOnlyList<string> AllowSyscalls { get; init; } = [];
        public string? Kind { get; init; }
        public string? Vcpus { get; init; }
        public string? Disk { get; init; }
        public string? Kernel { get; init; }
    }

    /// <summary>The request the options describe; <see cref="UsageException"/> for input the agent need not see.</summary>
    public static GuestSpec ToRequest(Options o) => new()
    {
        Name = o.Name,
        Image = o.Image,
        MemoryBytes = Input.Size("--memory", o.Memory),
        MemoryMinBytes = Input.Size("--memory-min", o.MemoryMin),
        Cpus = Input.Cpus("--cpus", o.Cpus),
        Pids = Input.PositiveInt("--pids", o.Pids, "process limit"),
        Ipv4 = o.Ip,
        Dns = o.Dns == "none" ? [] : Input.Addresses("--dns", o.Dns, "none"),
        Restart = Input.OneOf("--restart", o.Restart, "no", "on-failure", "always"),
        Autostart = o.Autostart,
        Command = o.Cmd is null ? null : Input.Command("--cmd", o.Cmd),
        Privileged = o.Privileged,
        AllowSyscalls = o.AllowSyscalls.Count > 0 ? o.AllowSyscalls : null,
        // Which options suit which kind is the agent's call; it names the option it refuses.
        Kind = Input.OneOf("--kind", o.Kind, "vserver", "domain"),
        Vcpus = Input.PositiveInt("--vcpus", o.Vcpus, "number of vcpus"),
        DiskBytes = Input.Size("--disk", o.Disk),
        Kernel = o.Kernel,
    };

    public static async Task<int> HandleAsync(AgentClient client, Options options, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var request = ToRequest(options);
        var guest = await client.CreateAsync(request, ct);
        var details = string.Join(", ", new[] { guest.Kind, guest.Ipv4, guest.Privileged ? "privileged" : null }.OfType<string>().Where(d => d.Length > 0));
        stdout.WriteLine($"created {Escaped.Name(guest.Name)} ({details})");
        return ExitCodes.Ok;
    }
}
