using Shouldly;
using Xunit;
using Vserver.Isolation.Images;

namespace Vserver.Tests.Images;

public sealed class ImageStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vsimages-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private ImageStore StoreWithRecipe(string name, string script)
    {
        var recipe = Path.Combine(_dir, "recipes", name);
        Directory.CreateDirectory(recipe);
        File.WriteAllText(Path.Combine(recipe, "build.sh"), "#!/bin/sh\nset -e\ncd \"$1\"\n" + script + "\n");
        File.SetUnixFileMode(Path.Combine(recipe, "build.sh"), (UnixFileMode)0b111_101_101);
        return new ImageStore(Path.Combine(_dir, "images"), Path.Combine(_dir, "recipes"));
    }

    [Fact]
    public void A_symlink_to_a_host_directory_is_measured_as_a_link_and_never_followed()
    {
        // debootstrap leaves dev/fd -> /proc/self/fd: following it walks the agent's own, changing fds.
        var store = StoreWithRecipe("links", "mkdir -p dev etc && ln -s /proc/self/fd dev/fd && ln -s /etc etc/host-etc && echo hi > etc/motd");

        var first = store.Build("links");
        first.SizeBytes.ShouldBe(3);
        store.Remove("links");
        store.Build("links").Digest.ShouldBe(first.Digest, "the same recipe must give the same digest");
    }
}
