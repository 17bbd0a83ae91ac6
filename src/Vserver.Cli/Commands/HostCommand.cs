using System.CommandLine;
using System.Globalization;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary><c>vsctl host</c> (also <c>vsctl info</c>): the agent's settings and what domains run on here.</summary>
internal static class HostCommand
{
    public static Command Create(CliContext cli)
    {
        var format = Common.Format("text");
        var command = new Command("host", "Show the host: the agent's settings, processors, memory and what domains run on (kvm or tcg)") { format };
        command.Aliases.Add("info");
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(format), cli.Out, cli.Err, ct)));
        return command;
    }

    public static async Task<int> HandleAsync(VserverClient client, string? format, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var json = Input.IsJson(format, "text");
        var host = await client.HostAsync(ct);
        if (json) Display.Json(stdout, host, ApiJson.Default.HostInfo);
        else Write(host, client.SocketPath, stdout);
        return ExitCodes.Ok;
    }

    public static void Write(HostInfo host, string socketPath, TextWriter stdout) => Display.KeyValues(stdout,
    [
        ("version", host.Version),
        ("agent pid", host.AgentPid.ToString(CultureInfo.InvariantCulture)),
        ("socket", socketPath),
        ("cpus", host.Cpus > 0 ? host.Cpus.ToString(CultureInfo.InvariantCulture) : Display.None),
        ("memory", host.MemoryBytes > 0 ? ByteSize.Format(host.MemoryBytes) : Display.None),
        ("accelerator", Display.Text(host.Accelerator)),
        ("cgroup version", host.CgroupVersion),
        ("bridge", host.Bridge),
        ("subnet", host.Subnet),
        ("state root", host.StateRoot),
        ("run root", host.RunRoot),
    ]);
}
