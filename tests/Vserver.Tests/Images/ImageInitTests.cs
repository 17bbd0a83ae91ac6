using Shouldly;
using Vserver.Isolation.Images;
using Xunit;

namespace Vserver.Tests.Images;

/// <summary>An image's init, found by resolving /sbin/init inside the image as the guest would: absolute links and '..'
/// stay in the image, so nothing of the host is taken for the image's init.</summary>
public sealed class ImageInitTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("vsinit-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private void Executable(string path, string content)
    {
        var full = Path.Combine(_root, path.TrimStart('/'));
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, content);
        File.SetUnixFileMode(full, (UnixFileMode)0x1ED);
    }

    private void Link(string path, string target)
    {
        var full = Path.Combine(_root, path.TrimStart('/'));
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.CreateSymbolicLink(full, target);
    }

    [Fact]
    public void Systemd_is_found_through_an_absolute_link_and_merged_usr()
    {
        Executable("usr/lib/systemd/systemd", "\u007fELF...");
        Link("lib", "usr/lib");
        Link("sbin/init", "/lib/systemd/systemd");

        var init = ImageInit.Detect(_root);

        init.Kind.ShouldBe(InitKind.Systemd);
        init.Display.ShouldBe("systemd");
        init.Path.ShouldBe("/usr/lib/systemd/systemd");
    }

    [Fact]
    public void Busybox_is_its_applet_link()
    {
        Executable("bin/busybox", "\u007fELF");
        Link("sbin/init", "../bin/busybox");

        ImageInit.Detect(_root).ShouldBe(new ImageInit(InitKind.Busybox, "/bin/busybox", "busybox"));
    }

    [Theory]
    [InlineData("#!/bin/sh\nexec sleep infinity\n", InitKind.ShellScript, "shell script")]
    [InlineData("#! /usr/bin/env bash\n", InitKind.ShellScript, "shell script")]
    [InlineData("#!/usr/bin/python3\n", InitKind.Script, "script (/usr/bin/python3)")]
    [InlineData("\u007fELF\u0002\u0001", InitKind.Executable, "sysvinit or another executable")]
    public void A_file_at_sbin_init_is_told_by_its_first_bytes(string content, InitKind kind, string display)
    {
        Executable("sbin/init", content);

        var init = ImageInit.Detect(_root);

        (init.Kind, init.Display, init.Path).ShouldBe((kind, display, "/sbin/init"));
    }

    [Fact]
    public void A_link_out_of_the_image_resolves_inside_it_and_finds_nothing()
    {
        // /bin/sh exists on the host, not in the image; ../../../../bin/sh climbs no higher than the image root.
        Link("sbin/init", "../../../../../../bin/sh");
        ImageInit.Detect(_root).Kind.ShouldBe(InitKind.None);

        File.Delete(Path.Combine(_root, "sbin/init"));
        Link("sbin/init", "/bin/sh");
        var init = ImageInit.Detect(_root);
        init.Kind.ShouldBe(InitKind.None);
        init.Display.ShouldContain("missing or a dangling link");
    }

    [Fact]
    public void A_missing_init_a_loop_a_directory_and_a_file_without_exec_bits_are_none()
    {
        ImageInit.Detect(_root).Display.ShouldBe("none (/sbin/init is missing or a dangling link)");

        Link("sbin/init", "/sbin/init2");
        Link("sbin/init2", "/sbin/init");
        ImageInit.Detect(_root).Display.ShouldBe("none (/sbin/init is a loop of links)");

        File.Delete(Path.Combine(_root, "sbin/init"));
        Directory.CreateDirectory(Path.Combine(_root, "sbin/init"));
        ImageInit.Detect(_root).Display.ShouldBe("none (/sbin/init is not a regular file)");

        Directory.Delete(Path.Combine(_root, "sbin/init"));
        File.WriteAllText(Path.Combine(_root, "sbin/init"), "#!/bin/sh\n");
        File.SetUnixFileMode(Path.Combine(_root, "sbin/init"), (UnixFileMode)0x1A4);
        ImageInit.Detect(_root).Display.ShouldBe("none (/sbin/init is not executable)");
    }

    [Fact]
    public void Classify_is_by_name_and_first_bytes_alone()
    {
        ImageInit.Classify("/lib/systemd/systemd", []).Kind.ShouldBe(InitKind.Systemd);
        ImageInit.Classify("/usr/sbin/systemd", []).Kind.ShouldBe(InitKind.Executable, "systemd lives in a systemd directory");
        ImageInit.Classify("/sbin/openrc-init", "\u007fELF"u8).Display.ShouldBe("openrc");
        ImageInit.Classify("/usr/bin/tini", "\u007fELF"u8).Display.ShouldBe("tini");
    }
}
