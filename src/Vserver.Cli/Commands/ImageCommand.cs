using System.CommandLine;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class ImageCommand
{
    public static Command Create(CliContext cli)
    {
        var buildName = new Argument<string>("NAME") { Description = "The image to build (a directory under images/)" };
        var build = new Command("build", "Build a root file system image") { buildName };
        build.SetAction((parse, ct) => cli.RunAsync(parse, client => BuildAsync(client, parse.GetValue(buildName)!, cli.Out, cli.Err, ct)));

        var format = SharedOptions.Format("table");
        var list = new Command("list", "List the images") { format };
        list.Aliases.Add("ls");
        list.SetAction((parse, ct) => cli.RunAsync(parse, client => ListAsync(client, parse.GetValue(format), cli.Clock, cli.Out, cli.Err, ct)));

        var rmName = new Argument<string>("NAME") { Description = "The image to remove" };
        var rm = new Command("rm", "Remove an image") { rmName };
        rm.Aliases.Add("remove");
        rm.SetAction((parse, ct) => cli.RunAsync(parse, client => RemoveAsync(client, parse.GetValue(rmName)!, cli.Out, cli.Err, ct)));

        return new Command("image", "Manage root file system images") { build, list, rm };
    }

    public static async Task<int> BuildAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var image = await client.BuildImageAsync(name, ct);
        stdout.WriteLine($"built image {image.Name} ({ByteSize.Format(image.SizeBytes)}, {image.Digest})");
        return ExitCodes.Ok;
    }

    public static async Task<int> ListAsync(AgentClient client, string? format, TimeProvider clock, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var json = Input.IsJson(format, "table");
        var images = await client.ImagesAsync(ct);
        if (json) Display.Json(stdout, images, ApiJson.Default.IReadOnlyListImageInfo);
        else WriteTable(images, clock, stdout);
        return ExitCodes.Ok;
    }

    public static void WriteTable(IReadOnlyList<ImageInfo> images, TimeProvider clock, TextWriter stdout) =>
        TextTable.Write(stdout, ["NAME", "SIZE", "CREATED"],
            images.Select(i => new[] { i.Name, ByteSize.Format(i.SizeBytes), Display.Time(i.Created, clock) }));

    public static async Task<int> RemoveAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        await client.RemoveImageAsync(name, ct);
        stdout.WriteLine($"removed image {name}");
        return ExitCodes.Ok;
    }
}
