using System.Diagnostics;
using Shouldly;
using Vserver.Isolation.Storage;
using Xunit;

namespace Vserver.Tests.Storage;

/// <summary>Whiteouts made for a demotion: the overlay of the new upper layer over the image shows the upper tree, and
/// nothing the image has besides.</summary>
public sealed class OverlayWhiteoutsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vswhiteout-").FullName;

    public void Dispose()
    {
        HostMounts.Unmount(Path.Combine(_dir, "merged"));
        Directory.Delete(_dir, recursive: true);
    }

    private string P(string relative) => Path.Combine(_dir, relative);

    [Fact]
    public void The_merged_tree_shows_exactly_the_upper_layer()
    {
        foreach (var d in new[] { "lower/etc/deep", "lower/gone-dir", "upper/etc", "work", "merged" }) Directory.CreateDirectory(P(d));
        File.WriteAllText(P("lower/etc/kept"), "image");
        File.WriteAllText(P("lower/etc/deleted"), "image");
        File.WriteAllText(P("lower/etc/deep/deleted-too"), "image");
        File.WriteAllText(P("lower/gone-file"), "image");
        File.CreateSymbolicLink(P("lower/gone-link"), "/nowhere");
        File.WriteAllText(P("upper/etc/kept"), "upper");
        File.WriteAllText(P("upper/etc/new"), "upper");

        OverlayWhiteouts.Hide(P("lower"), P("upper"), 0);

        var mount = Process.Start("mount", ["-t", "overlay", "overlay", "-o", $"lowerdir={P("lower")},upperdir={P("upper")},workdir={P("work")}", P("merged")]);
        mount.WaitForExit();
        mount.ExitCode.ShouldBe(0);
        Directory.EnumerateFileSystemEntries(P("merged"), "*", SearchOption.AllDirectories)
            .Select(e => Path.GetRelativePath(P("merged"), e)).Order(StringComparer.Ordinal)
            .ShouldBe(["etc", "etc/kept", "etc/new"]);
        File.ReadAllText(P("merged/etc/kept")).ShouldBe("upper");
    }
}
