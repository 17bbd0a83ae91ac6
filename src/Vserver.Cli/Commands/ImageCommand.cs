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

        return new Command("image", "Manage root file system images")
        {
            build,
            StoreCommands.List(cli, "List the images", (client, ct) => client.ImagesAsync(ct), ApiJson.Default.IReadOnlyListImageInfo, WriteTable),
            StoreCommands.Remove(cli, "image", "Remove an image", "The image to remove", (client, name, ct) => client.RemoveImageAsync(name, ct)),
        };
    }

    public static async Task<int> BuildAsync(AgentClient client, string name, TextWriter stdout, TextWriter stderr, CancellationToken ct)
    {
        var image = await client.BuildImageAsync(Input.StoreName("image", name), ct);
        stdout.WriteLine($"built image {Escaped.Name(image.Name)} ({ByteSize.Format(image.SizeBytes)}, {image.Digest})");
        return ExitCodes.Ok;
    }

    public static void WriteTable(IReadOnlyList<ImageInfo> images, TimeProvider clock, TextWriter stdout) =>
        TextTable.Write(stdout, ["NAME", "SIZE", "CREATED"],
            images.Select(i => new[] { i.Name, ByteSize.Format(i.SizeBytes), Display.Time(i.Created, clock) }));
}
