using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary><c>vsctl kernel build|list|rm</c>: the kernels domains boot (one must be built before the first domain).</summary>
internal static class KernelCommand
{
    public const string DefaultName = "default";

    public static Command Create(CliContext cli)
    {
        var buildName = new Argument<string>("NAME")
        {
            Description = "The kernel's name; domains boot the one named default unless created with --kernel",
            Arity = ArgumentArity.ZeroOrOne,
            DefaultValueFactory = _ => DefaultName,
        };
        var build = new Command("build", "Build a domain kernel (Debian's cloud kernel, unpacked for QEMU; takes a few seconds)") { buildName };
        build.SetAction((parse, ct) =>
        {
            // The handler runs twice when the first request starts the agent (see AgentConnection): say it once.
            var announced = false;
            return cli.RunAsync(parse, client =>
            {
                var name = Input.StoreName("kernel", parse.GetValue(buildName) ?? DefaultName);
                if (!announced) cli.Err.WriteLine($"building kernel {Escaped.Name(name)}...");
                announced = true;
                return BuildAsync(client, name, cli.Out, cli.Err, ct);
            });
        });

        return new Command("kernel", "Manage the kernels domains boot")
        {
            build,
            StoreCommands.List(cli, "List the domain kernels", (client, ct) => client.ListKernelsAsync(ct), ApiJson.Default.IReadOnlyListKernelInfo,
                WriteTable),
            StoreCommands.Remove(cli, "kernel", "Remove a domain kernel", "The kernel to remove (no domain may boot it)",
                (client, name, ct) => client.RemoveKernelAsync(name, ct)),
        };
    }

    public static async Task<int> BuildAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var kernel = await client.BuildKernelAsync(name, ct);
        stdout.WriteLine($"built kernel {Escaped.Name(kernel.Name)} ({kernel.Version}, {ByteSize.Format(kernel.SizeBytes)})");
        return ExitCodes.Ok;
    }

    public static void WriteTable(IReadOnlyList<KernelInfo> kernels, TimeProvider clock, TextWriter stdout) =>
        TextTable.Write(stdout, ["NAME", "VERSION", "PACKAGE", "SIZE", "BUILT"],
            kernels.Select(k => new[] { k.Name, k.Version, k.Package, ByteSize.Format(k.SizeBytes), Display.Time(k.Built, clock) }));
}
