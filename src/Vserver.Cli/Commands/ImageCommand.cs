using System.CommandLine;
using System.Formats.Tar;
using System.IO.Pipes;
using Vserver.Api;

namespace Vserver.Cli.Commands;

internal static class ImageCommand
{
    /// <summary>The compression a file name's suffix asks for, as the export's parameter names it.</summary>
    private static readonly (string Suffix, string Compression)[] Suffixes =
    [
        (".tar.gz", "gzip"), (".tgz", "gzip"), (".tar.xz", "xz"), (".txz", "xz"), (".tar.zst", "zstd"), (".tzst", "zstd"),
        (".tar.bz2", "bzip2"), (".tbz2", "bzip2"), (".tar", "none"),
    ];

    public static Command Create(CliContext cli)
    {
        var buildName = new Argument<string>("NAME") { Description = "The image to build (a directory under images/)" };
        var build = new Command("build", "Build a root file system image") { buildName };
        build.SetAction((parse, ct) => cli.RunAsync(parse, client => BuildAsync(client, parse.GetValue(buildName)!, cli.Out, cli.Err, ct)));

        var file = new Argument<string>("FILE")
        {
            Description = "A root file system tarball (.tar, .tar.gz, .tar.xz, .tar.zst: docker export, LXC/Incus rootfs), an OCI layout " +
                "directory or a tar of one; - reads standard input",
        };
        var asName = new Option<string?>("--as") { Description = "The name of the new image", HelpName = "NAME" };
        var tag = new Option<string?>("--tag") { Description = "The tag of the image to take from an OCI layout that holds several", HelpName = "TAG" };
        var import = new Command("import", "Make an image from a root file system tarball or an OCI image") { file, asName, tag };
        import.SetAction((parse, ct) => cli.RunAsync(parse, client =>
            ImportAsync(client, parse.GetValue(file)!, parse.GetValue(asName), parse.GetValue(tag), cli, ct)));

        var exportName = new Argument<string>("NAME") { Description = "The image to write out" };
        var output = new Option<string?>("--output", "-o")
        {
            Description = "The tarball to write; its suffix picks the compression (.tar, .tar.gz, .tar.xz, .tar.zst, .tar.bz2); - for an uncompressed tar on standard output",
            HelpName = "FILE",
        };
        var export = new Command("export", "Write an image's files as a tarball (which image import takes back)") { exportName, output };
        export.SetAction((parse, ct) => cli.RunAsync(parse, client => ExportAsync(client, parse.GetValue(exportName)!, parse.GetValue(output), cli, ct)));

        return new Command("image", "Manage root file system images")
        {
            build,
            import,
            export,
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

    /// <summary>
    /// Streams the file to the agent, which unpacks it as root beneath its own state root: the agent never opens a path
    /// the client names, so what it reads is what this user could read. A directory (an OCI layout) is sent as a tar of
    /// its files, made on the fly.
    /// </summary>
    public static async Task<int> ImportAsync(AgentClient client, string file, string? name, string? tag, CliContext cli, CancellationToken ct)
    {
        if (name is null) throw new UsageException("image import: give the new image's name with --as NAME");
        Input.StoreName("image", name);
        if (tag is { Length: 0 }) throw new UsageException("--tag: give the tag of an image in the OCI layout");
        ImageInfo image;
        if (file == "-")
        {
            await using var stdin = cli.OpenStdin();
            image = await client.ImportImageAsync(name, stdin, "-", tag, ct);
        }
        else if (Directory.Exists(file))
        {
            var dir = Path.GetFullPath(file);
            if (!File.Exists(Path.Combine(dir, "oci-layout")))
                throw new UsageException($"{Escaped.Text(file)} is a directory without an oci-layout file: give an OCI layout, or a tarball of a root file system (tar -C DIR -c . | vsctl image import - --as {Escaped.Name(name)})");
            image = await ImportDirectoryAsync(client, name, dir, tag, ct);
        }
        else
        {
            FileStream stream;
            try
            {
                stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new CliFailureException($"cannot read {Escaped.Text(file)}: {e.Message}");
            }
            await using (stream)
                image = await client.ImportImageAsync(name, stream, Path.GetFullPath(file), tag, ct);
        }
        var what = image.Source?.Format == "oci"
            ? $"OCI image {image.Source.ManifestDigest}{(image.Source.Tag is { } t ? $", tag {Escaped.Text(t)}" : "")}"
            : $"{image.Source?.Format} {image.Source?.ArchiveDigest}";
        cli.Out.WriteLine($"imported image {Escaped.Name(image.Name)} from {Escaped.Text(image.Source?.File)} ({what}): " +
            $"{ByteSize.Format(image.SizeBytes)}, init {Escaped.Text(image.Init)}");
        foreach (var note in image.Notes ?? []) cli.Out.WriteLine($"note: {Escaped.Text(note)}");
        return ExitCodes.Ok;
    }

    /// <summary>An OCI layout directory as a tar stream: written into one end of a pipe while the upload reads the other.</summary>
    private static async Task<ImageInfo> ImportDirectoryAsync(AgentClient client, string name, string dir, string? tag, CancellationToken ct)
    {
        using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
        using var reader = new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle);
        var writer = Task.Run(async () =>
        {
            try
            {
                await TarFile.CreateFromDirectoryAsync(dir, pipe, includeBaseDirectory: false, ct);
            }
            finally
            {
                pipe.Dispose();
            }
        }, ct);
        try
        {
            return await client.ImportImageAsync(name, reader, dir, tag, ct);
        }
        finally
        {
            try
            {
                await writer;
            }
            catch (IOException)
            {
                // The agent stopped reading (it answered): the pipe is gone, its answer says why.
            }
        }
    }

    /// <summary>Writes to FILE.partial first and renames it when the agent's stream ended whole: a cut stream never
    /// leaves a tarball that looks complete.</summary>
    public static async Task<int> ExportAsync(AgentClient client, string name, string? output, CliContext cli, CancellationToken ct)
    {
        Input.StoreName("image", name);
        if (output is null) throw new UsageException("image export: give the tarball to write with -o FILE (- for standard output)");
        if (output == "-")
        {
            await using var stdout = cli.OpenStdout();
            await client.ExportImageAsync(name, "none", stdout, ct);
            return ExitCodes.Ok;
        }
        var compression = CompressionFor(output)
            ?? throw new UsageException($"-o {Escaped.Text(output)}: give the file a suffix that says its format: {string.Join(", ", Suffixes.Select(s => s.Suffix))}");
        var partial = $"{output}.partial-{Environment.ProcessId}";
        try
        {
            long written;
            await using (var stream = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                await client.ExportImageAsync(name, compression, stream, ct);
                written = stream.Length;
            }
            File.Move(partial, output, overwrite: true);
            cli.Out.WriteLine($"exported image {Escaped.Name(name)} to {Escaped.Text(output)} ({compression}, {ByteSize.Format(written)})");
            return ExitCodes.Ok;
        }
        catch (HttpIOException e)
        {
            throw new CliFailureException($"exporting image {Escaped.Name(name)} failed: the agent's stream ended early ({e.Message}); see the agent's log; {Escaped.Text(output)} was not written");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliFailureException($"cannot write {Escaped.Text(output)}: {e.Message}");
        }
        finally
        {
            File.Delete(partial);
        }
    }

    /// <summary>The compression (as the export's parameter names it) a file name's suffix asks for; null for none known.</summary>
    internal static string? CompressionFor(string file) =>
        Suffixes.FirstOrDefault(s => file.EndsWith(s.Suffix, StringComparison.OrdinalIgnoreCase)).Compression;

    public static void WriteTable(IReadOnlyList<ImageInfo> images, TimeProvider clock, TextWriter stdout) =>
        TextTable.Write(stdout, ["NAME", "SIZE", "CREATED", "INIT", "SOURCE"],
            images.Select(i => new[] { i.Name, ByteSize.Format(i.SizeBytes), Display.Time(i.Created, clock), Init(i.Init), Source(i.Source) }));

    /// <summary>The init as the table shows it: "none" without its reason (the JSON has it).</summary>
    private static string Init(string? init) => init is not null && init.StartsWith("none (", StringComparison.Ordinal) ? "none" : Display.Text(init);

    /// <summary>"recipe busybox", "tar.zst /srv/debian.tar.zst sha256:0123456789ab", "oci /srv/layout manifest sha256:...".</summary>
    internal static string Source(ImageSourceInfo? source) => source switch
    {
        null => "-",
        { Kind: "recipe" } => $"recipe {Escaped.Text(source.Recipe)}",
        { Format: "oci" } => $"oci {Escaped.Text(source.File)} {Short(source.ManifestDigest)}{(source.Tag is { } t ? $" tag {Escaped.Text(t)}" : "")}",
        _ => $"{source.Format} {Escaped.Text(source.File)} {Short(source.ArchiveDigest)}",
    };

    private static string Short(string? digest) => digest is { Length: > 19 } ? digest[..19] : digest ?? "";
}
