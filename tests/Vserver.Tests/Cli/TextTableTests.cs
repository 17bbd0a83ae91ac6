using Shouldly;
using Vserver.Api;
using Vserver.Cli;
using Vserver.Cli.Commands;
using Xunit;

namespace Vserver.Tests.Cli;

public class TextTableTests
{
    [Fact]
    public void Columns_are_aligned_to_the_widest_cell_with_dashes_for_empty_cells()
    {
        var output = new StringWriter { NewLine = "\n" };
        TextTable.Write(output, ["NAME", "STATE", "IPV4"],
        [
            ["web1", "running", "10.88.0.2"],
            ["a-much-longer-name", null, ""],
        ]);
        output.ToString().ShouldBe(
            "NAME                 STATE     IPV4\n" +
            "web1                 running   10.88.0.2\n" +
            "a-much-longer-name   -         -\n");
    }

    [Fact]
    public void Lines_have_no_trailing_blanks_and_headers_alone_still_print()
    {
        var output = new StringWriter { NewLine = "\n" };
        TextTable.Write(output, ["NAME", "SIZE", "CREATED"], []);
        output.ToString().ShouldBe("NAME   SIZE   CREATED\n");
    }

    [Fact]
    public void Guest_list_formats_memory_cpus_and_unset_values()
    {
        var output = new StringWriter { NewLine = "\n" };
        var error = new StringWriter { NewLine = "\n" };
        ListCommand.Write(new GuestList
        {
            Guests =
            [
                new GuestInfo { Name = "web1", Kind = "vserver", State = "running", Ipv4 = "10.88.0.2", MemoryBytes = 256L << 20, Cpus = 0.5, Image = "busybox" },
                new GuestInfo { Name = "db", Kind = "vserver", State = "stopped", MemoryBytes = 1536L << 20, Cpus = 2, Image = "debian", Privileged = true },
                new GuestInfo { Name = "broken-one", Kind = "vserver", State = "broken", Problem = "config.json: line 3" },
            ],
            Warnings = ["/var/lib/vserver/guests/x/config.json: line 3: unexpected '}'; fix or remove it"],
        }, json: false, output, error);

        output.ToString().ShouldBe(
            "NAME         TYPE      STATE     ACCEL   IPV4        MEMORY   CPUS   IMAGE     PRIVILEGED\n" +
            "web1         vserver   running   -       10.88.0.2   256M     0.5    busybox   no\n" +
            "db           vserver   stopped   -       -           1.5G     2      debian    yes\n" +
            "broken-one   vserver   broken    -       -           -        -      -         -\n");
        error.ToString().ShouldBe("vsctl: warning: /var/lib/vserver/guests/x/config.json: line 3: unexpected '}'; fix or remove it\n");
    }

    [Fact]
    public void Guest_list_as_json_is_the_indented_camel_case_array()
    {
        var output = new StringWriter { NewLine = "\n" };
        ListCommand.Write(new GuestList
        {
            Guests = [new GuestInfo { Name = "web1", Kind = "vserver", State = "running", MemoryBytes = 1024, MemoryMinBytes = 512, Command = ["sh", "-c", "a+b"] }],
        }, json: true, output, TextWriter.Null);

        output.ToString().ShouldBe("""
            [
              {
                "name": "web1",
                "kind": "vserver",
                "state": "running",
                "memoryBytes": 1024,
                "memoryMinBytes": 512,
                "command": [
                  "sh",
                  "-c",
                  "a+b"
                ],
                "restartCount": 0
              }
            ]

            """.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void Image_list_shows_size_creation_time_init_and_source()
    {
        var output = new StringWriter { NewLine = "\n" };
        ImageCommand.WriteTable(
            [
                new ImageInfo
                {
                    Name = "busybox", SizeBytes = 2_202_009, Created = CliHarness.Now.AddHours(-3), Digest = "sha256:ab", Init = "busybox",
                    Source = new ImageSourceInfo { Kind = "recipe", Recipe = "busybox" },
                },
                new ImageInfo
                {
                    Name = "web", SizeBytes = 1 << 20, Created = CliHarness.Now, Digest = "sha256:cd", Init = "none (/sbin/init is missing or a dangling link)",
                    Source = new ImageSourceInfo { Kind = "import", File = "/srv/web", Format = "oci", ManifestDigest = "sha256:0123456789abcdef0123", Tag = "v1" },
                },
            ],
            new FixedClock(CliHarness.Now), output);
        output.ToString().ShouldBe(
            "NAME      SIZE   CREATED                                 INIT      SOURCE\n" +
            "busybox   2.1M   2025-03-01 09:00:00 +00:00 (3h ago)     busybox   recipe busybox\n" +
            "web       1M     2025-03-01 12:00:00 +00:00 (just now)   none      oci /srv/web sha256:0123456789ab tag v1\n");
    }
}
