using HybridHypervisor;
using HybridHypervisor.Model;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing.Patterns;
using Shouldly;
using Vserver.Agent;
using Vserver.Api;
using Vserver.Isolation.Images;
using Vserver.Isolation.Naming;
using Xunit;

namespace Vserver.Tests.Agent;

/// <summary>The pure decisions behind the agent's door: who may use the socket, which names pass, what errors say.</summary>
public sealed class AgentDoorLogicTests
{
    [Fact]
    public void Without_a_vserver_group_the_socket_is_root_only()
    {
        var access = AgentSocket.Decide(null);
        access.Mode.ShouldBe(UnixFileMode.UserRead | UnixFileMode.UserWrite);
        ((int)access.Mode).ShouldBe(0b110_000_000); // 0600
        access.Gid.ShouldBeNull();
        access.Description.ShouldContain("0600");
        access.Description.ShouldContain("root only");
    }

    [Fact]
    public void With_a_vserver_group_the_socket_is_root_and_that_group_read_write()
    {
        var access = AgentSocket.Decide(4242);
        ((int)access.Mode).ShouldBe(0b110_110_000); // 0660
        access.Mode.HasFlag(UnixFileMode.OtherRead).ShouldBeFalse();
        access.Mode.HasFlag(UnixFileMode.OtherWrite).ShouldBeFalse();
        access.Gid.ShouldBe(4242u);
        access.Description.ShouldContain("group vserver");
    }

    [Fact]
    public void A_gid_of_zero_is_still_a_group_and_not_no_group()
    {
        var access = AgentSocket.Decide(0);
        access.Gid.ShouldBe(0u);
        ((int)access.Mode).ShouldBe(0b110_110_000);
    }

    [Theory]
    [InlineData(0b111_111_111, 0b111_101_101)] // 0777 -> 0755
    [InlineData(0b111_111_101, 0b111_101_101)] // 0775 -> 0755
    [InlineData(0b111_101_101, 0b111_101_101)] // 0755 stays
    [InlineData(0b111_001_000, 0b111_001_000)] // 0710 stays
    [InlineData(0b1_111_111_111, 0b1_111_101_101)] // 1777 -> 1755: the sticky bit is not write access
    public void The_run_directory_loses_write_access_for_group_and_others(int mode, int expected) =>
        ((int)AgentSocket.WithoutForeignWrite((UnixFileMode)mode)).ShouldBe(expected);

    [Fact]
    public void A_group_that_does_not_exist_looks_up_as_none()
    {
        Vserver.Isolation.Interop.UserDatabase.LookupGroup("vstest-no-such-group-" + Environment.ProcessId).ShouldBeNull();
        Vserver.Isolation.Interop.UserDatabase.LookupGroup("root").ShouldBe(0u);
    }

    [Theory]
    [InlineData("web1")]
    [InlineData("a")]
    [InlineData("a-b-9")]
    [InlineData("abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0")] // 63
    public void Dns_labels_are_valid_names(string name) => DnsLabel.IsValid(name).ShouldBeTrue();

    [Theory]
    [InlineData("")]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("../etc")]
    [InlineData("a/b")]
    [InlineData("a%2Fb")]
    [InlineData("%2e%2e")]
    [InlineData("/etc/passwd")]
    [InlineData("a\0b")]
    [InlineData("a\nb")]
    [InlineData("Web1")]
    [InlineData("é")]
    [InlineData("web\u0661")] // an Arabic-Indic digit: \d would take it, the rule must not
    [InlineData("-a")]
    [InlineData("a-")]
    [InlineData("a_b")]
    [InlineData("a.b")]
    [InlineData("web1\n")] // $ in .NET also matches before a final newline
    [InlineData("abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01")] // 64
    public void Anything_else_is_refused(string name)
    {
        DnsLabel.IsValid(name).ShouldBeFalse();
        DnsLabel.Error(name, "guest").ShouldNotBeNull().ShouldStartWith("invalid name '");
    }

    [Fact]
    public void A_null_name_is_refused() => DnsLabel.Error(null, "image").ShouldNotBeNull().ShouldContain("image names are DNS labels");

    [Fact]
    public void Guests_and_images_follow_the_one_rule()
    {
        foreach (var name in new[] { "web1", "..", "../x", "a/b", "A", new string('a', 64), "a\0" })
        {
            (GuestConfigValidator.NameError(name) is null).ShouldBe(DnsLabel.IsValid(name), name);
            GuestConfigValidator.NameError(name)?.Message.ShouldBe(DnsLabel.Error(name, "guest"), name);
        }
    }

    [Fact]
    public void An_echoed_name_is_one_short_line()
    {
        var error = DnsLabel.Error("a\nb\r\0c\u202ed\u001b[31m", "guest")!;
        error.ShouldNotContain('\n');
        error.ShouldNotContain('\r');
        error.ShouldNotContain('\0');
        error.ShouldNotContain('\u202e');
        error.ShouldNotContain('\u001b');
        error.ShouldContain(@"a\u000ab\u000d\u0000c\u202ed\u001b[31m");

        var longName = new string('x', 100_000);
        var shown = DnsLabel.Shown(longName);
        shown.Length.ShouldBeLessThan(100);
        shown.ShouldContain("100000 characters");
    }

    [Fact]
    public void Cutting_a_long_name_never_splits_a_surrogate_pair()
    {
        var name = new string('a', DnsLabel.MaxLength) + "\U0001F600" + new string('b', 10);
        var shown = DnsLabel.Shown(name);
        shown.ShouldNotContain("\uD83D...");
        foreach (var (ch, i) in shown.Select((c, i) => (c, i)))
            if (char.IsHighSurrogate(ch)) char.IsLowSurrogate(shown[i + 1]).ShouldBeTrue();
    }

    [Fact]
    public void The_image_store_refuses_bad_names_before_touching_anything()
    {
        var dir = Directory.CreateTempSubdirectory("vsdoor-").FullName;
        try
        {
            var images = Path.Combine(dir, "state", "images");
            var recipes = Path.Combine(dir, "recipes");
            // A recipe and an "image" just outside the stores: what an escaping name would reach.
            Directory.CreateDirectory(Path.Combine(dir, "evil"));
            File.WriteAllText(Path.Combine(dir, "evil", "build.sh"), "touch /tmp/should-never-run\n");
            File.WriteAllText(Path.Combine(dir, "evil", "image.json"), "{}");
            var store = new ImageStore(images, recipes);
            foreach (var name in new[] { "../evil", "../../evil", "..", "/etc", "a/b", "Evil", "a\0b", new string('a', 64) })
            {
                Should.Throw<ImageException>(() => store.Build(name)).Message.ShouldStartWith("invalid name");
                Should.Throw<ImageException>(() => store.Remove(name)).Message.ShouldStartWith("invalid name");
                store.Find(name).ShouldBeNull();
            }
            Directory.Exists(images).ShouldBeFalse();
            File.Exists(Path.Combine(dir, "evil", "image.json")).ShouldBeTrue();
            Directory.EnumerateFileSystemEntries(dir).Select(Path.GetFileName).Order().ShouldBe(["evil"]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("/v1/guests/{name}", "guest")]
    [InlineData("/v1/guests/{name}/exec", "guest")]
    [InlineData("/v1/guests/{name}/limits", "guest")]
    [InlineData("/v1/images/{name}", "image")]
    public void A_routes_name_is_named_by_the_segment_before_it(string route, string kind) =>
        RequestGate.KindOf(RoutePatternFactory.Parse(route)).ShouldBe(kind);

    [Fact]
    public void Errors_are_one_line_and_bounded()
    {
        var message = ApiErrors.OneLine("first\nsecond\r\tthird" + new string('x', 10_000));
        message.ShouldNotContain('\n');
        message.ShouldNotContain('\r');
        message.ShouldStartWith("first second  third");
        ApiErrors.OneLine("a\u001b[31m\u202eb").ShouldBe(@"a\u001b[31m\u202eb", "other control and formatting characters are escaped, not dropped");
        message.Length.ShouldBeLessThan(2100);
    }

    [Fact]
    public void The_size_limit_is_named_in_its_error()
    {
        ApiLimits.MaxRequestBodyBytes.ShouldBe(64 * 1024);
        ApiErrors.BodyTooLarge.ShouldContain("65536 bytes");
        ApiErrors.BadRequestMessage(new BadHttpRequestException("Request body too large.", StatusCodes.Status413PayloadTooLarge), false)
            .ShouldBe(ApiErrors.BodyTooLarge);
        ApiErrors.EmptyErrorMessage(StatusCodes.Status413PayloadTooLarge, "POST", "/v1/guests").ShouldBe(ApiErrors.BodyTooLarge);
    }

    [Fact]
    public void Framework_refusals_get_messages_that_say_what_to_fix()
    {
        var json = new BadHttpRequestException("Failed to read parameter", StatusCodes.Status400BadRequest,
            new System.Text.Json.JsonException("'}' is invalid"));
        // RequestGate says more before the framework reads a body; the framework's own words never reach a client.
        ApiErrors.BadRequestMessage(json, false).ShouldBe("invalid JSON body");
        ApiErrors.BadRequestMessage(new BadHttpRequestException("Failed to bind parameter \"Nullable<int> timeout\" from \"abc\".", 400), false)
            .ShouldBe("invalid value for 'timeout'");
        ApiErrors.BadRequestMessage(new BadHttpRequestException("Implicit body inferred", 400), true).ShouldBe("this request needs a JSON body");
        ApiErrors.BadRequestMessage(new BadHttpRequestException("x", StatusCodes.Status415UnsupportedMediaType), false).ShouldContain("application/json");
        ApiErrors.EmptyErrorMessage(404, "GET", "/v1/nothing").ShouldContain("no such API endpoint: GET /v1/nothing");
        ApiErrors.EmptyErrorMessage(405, "PUT", "/v1/guests").ShouldContain("does not take PUT");
    }

    [Fact]
    public void The_fleet_refuses_an_invalid_image_name_as_invalid_not_as_unknown()
    {
        // RemoveImage checks the name first: an invalid name is the caller's mistake (400), not a missing image (404).
        var options = new FleetOptions
        {
            StateRoot = "/nonexistent/state", RunRoot = "/nonexistent/run", BridgeName = "vsx0",
            Subnet = Vserver.Isolation.Network.Ipv4Subnet.Parse("10.99.0.0/24"), CgroupParent = "vstest-none",
            VsinitPath = "/nonexistent/vsinit", RecipesRoot = "/nonexistent/images",
        };
        using var fleet = new Fleet(options, _ => { });
        Should.Throw<FleetException>(() => fleet.RemoveImage("../x")).Kind.ShouldBe(FleetError.Invalid);
        Should.Throw<FleetException>(() => fleet.BuildImage("../x")).Kind.ShouldBe(FleetError.Invalid);
    }
}
