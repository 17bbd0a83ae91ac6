using Shouldly;
using Vserver.Isolation.Guests;
using Xunit;

namespace Vserver.Tests.Guests;

/// <summary>Which program a guest's init path names, looked up through its layers as the overlay shows them, links
/// followed inside the guest's root only.</summary>
public sealed class GuestInitTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("guestinit-").FullName;
    private string Upper => Path.Combine(_dir, "upper");
    private string Lower => Path.Combine(_dir, "lower");

    public GuestInitTests()
    {
        Directory.CreateDirectory(Path.Combine(Lower, "usr/lib/systemd"));
        Directory.CreateDirectory(Path.Combine(Lower, "sbin"));
        Directory.CreateDirectory(Path.Combine(Lower, "bin"));
        Directory.CreateDirectory(Upper);
        File.WriteAllText(Path.Combine(Lower, "usr/lib/systemd/systemd"), "");
        File.WriteAllText(Path.Combine(Lower, "bin/busybox"), "");
        File.CreateSymbolicLink(Path.Combine(Lower, "sbin/init"), "/lib/systemd/systemd");
        // Debian's merged /usr: /lib is a link to usr/lib.
        File.CreateSymbolicLink(Path.Combine(Lower, "lib"), "usr/lib");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Links_are_followed_inside_the_layers_through_a_merged_usr()
    {
        GuestInit.Resolve([Upper, Lower], "/sbin/init").ShouldBe("/usr/lib/systemd/systemd");
        GuestInit.IsSystemd([Upper, Lower], "/sbin/init").ShouldBeTrue();
    }

    [Fact]
    public void The_writable_layer_hides_the_image_s_init()
    {
        Directory.CreateDirectory(Path.Combine(Upper, "sbin"));
        File.CreateSymbolicLink(Path.Combine(Upper, "sbin/init"), "../bin/busybox");
        GuestInit.Resolve([Upper, Lower], "/sbin/init").ShouldBe("/bin/busybox");
        GuestInit.IsSystemd([Upper, Lower], "/sbin/init").ShouldBeFalse();
    }

    [Fact]
    public void A_link_out_of_the_root_stays_inside_it()
    {
        // "../../.." from /sbin climbs no higher than the guest's root, as chroot does.
        Directory.CreateDirectory(Path.Combine(Upper, "sbin"));
        File.CreateSymbolicLink(Path.Combine(Upper, "sbin/init"), "../../../../usr/lib/systemd/systemd");
        GuestInit.Resolve([Upper, Lower], "/sbin/init").ShouldBe("/usr/lib/systemd/systemd");
    }

    [Fact]
    public void A_missing_init_or_a_loop_of_links_resolves_to_nothing()
    {
        GuestInit.Resolve([Upper, Lower], "/sbin/nosuch").ShouldBeNull();
        File.CreateSymbolicLink(Path.Combine(Lower, "sbin/a"), "b");
        File.CreateSymbolicLink(Path.Combine(Lower, "sbin/b"), "a");
        GuestInit.Resolve([Upper, Lower], "/sbin/a").ShouldBeNull();
        GuestInit.IsSystemd([Upper, Lower], "/sbin/a").ShouldBeFalse();
    }

    [Fact]
    public void A_program_merely_named_systemd_outside_a_systemd_directory_is_not_taken_for_it()
    {
        File.WriteAllText(Path.Combine(Lower, "bin/systemd"), "");
        GuestInit.IsSystemd([Upper, Lower], "/bin/systemd").ShouldBeFalse();
    }
}
