using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary>
/// <c>vsctl promote NAME</c>: the vserver becomes a domain with its own kernel, keeping its name, address, MAC, restart
/// policy and memory; <c>vsctl demote NAME</c> is the way back. <c>--dry-run</c> shows what the guest would get.
/// </summary>
internal static class PromoteCommand
{
    public static Command Create(CliContext cli)
    {
        var name = SharedOptions.GuestName("The vserver to promote");
        var kernel = new Option<string?>("--kernel") { Description = "The domain's kernel [default: default]", HelpName = "K" };
        var vcpus = new Option<string?>("--vcpus") { Description = "Virtual processors [default: the vserver's CPU limit, rounded up; 1 without one]", HelpName = "N" };
        var memory = SharedOptions.Memory("the domain's RAM [default: the vserver's memory limit; 256M without one]");
        var copy = new Option<bool>("--copy") { Description = "Copy the files into an ext4 image of the domain's own instead of sharing them in place (virtiofs)" };
        var disk = new Option<string?>("--disk") { Description = "With --copy: the image's size, e.g. 4G [default: 2G, or what the files need]", HelpName = "SIZE" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Say what the domain would get; change nothing" };
        var timeout = new Option<string?>("--timeout") { Description = "Seconds the domain may take to come up before the promotion is rolled back [default: 90]", HelpName = "S" };
        var command = new Command("promote", "Make a vserver a domain with its own kernel, keeping its name, address, memory and files")
        {
            name, kernel, vcpus, memory, copy, disk, dryRun, timeout,
        };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client =>
        {
            var request = new PromoteRequest
            {
                Kernel = parse.GetValue(kernel),
                Vcpus = Input.PositiveInt("--vcpus", parse.GetValue(vcpus), "number of vcpus"),
                MemoryBytes = Input.Size("--memory", parse.GetValue(memory)),
                Copy = parse.GetValue(copy),
                DiskBytes = Input.Size("--disk", parse.GetValue(disk)),
                DryRun = parse.GetValue(dryRun),
                TimeoutSeconds = Input.PositiveInt("--timeout", parse.GetValue(timeout), "seconds"),
            };
            return HandleAsync(client.PromoteAsync(parse.GetValue(name)!, request, ct), cli.Out);
        }));
        return command;
    }

    public static Command CreateDemote(CliContext cli)
    {
        var name = SharedOptions.GuestName("The domain to demote");
        var dryRun = new Option<bool>("--dry-run") { Description = "Say what the vserver would get; change nothing" };
        var command = new Command("demote", "Make a domain a vserver again (power it off, start a vserver with its name, address and files)")
        {
            name, dryRun,
        };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client =>
            HandleAsync(client.DemoteAsync(parse.GetValue(name)!, new DemoteRequest { DryRun = parse.GetValue(dryRun) }, ct), cli.Out)));
        return command;
    }

    public static async Task<int> HandleAsync(Task<ConversionResult> call, TextWriter stdout)
    {
        var result = await call;
        stdout.WriteLine(result.DryRun
            ? $"{Display.Name(result.Name)} would become a {result.To} (dry run, nothing changed):"
            : $"{Display.Name(result.Name)} is now a {result.To}{(result.Guest?.State is { } state ? $" ({state})" : "")}:");
        var width = result.Settings.Count == 0 ? 0 : result.Settings.Max(s => s.What.Length);
        foreach (var s in result.Settings) stdout.WriteLine($"  {s.What.PadRight(width)}  {Escaped.Text(s.Value)}");
        foreach (var note in result.Notes) stdout.WriteLine($"  note: {Escaped.Text(note)}");
        return ExitCodes.Ok;
    }
}
