namespace Vserver.IntegrationTests;

/// <summary>Each refusal: one clear line, a non-zero exit, and nothing left behind.</summary>
public sealed class BadInputTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private TestHost Host => shared.Host;

    [Theory]
    [InlineData("Web1", "invalid name")]
    [InlineData("-web", "invalid name")]
    [InlineData("web_1", "invalid name")]
    [InlineData("a-name-that-is-far-too-long-to-be-a-dns-label-because-it-has-more-than-63", "invalid name")]
    public void An_invalid_name_is_refused(string name, string message)
    {
        Host.Vsctl("create", name).ShouldFailWith(message);
        Directory.Exists(Host.GuestDir(name)).ShouldBeFalse();
    }

    [Theory]
    [InlineData("--memory", "12Q", "invalid size")]
    [InlineData("--memory", "-5M", "negative")]
    [InlineData("--memory", "3M", "4M")]
    [InlineData("--cpus", "-1", "cpus")]
    [InlineData("--cpus", "64", "cpus")]
    [InlineData("--pids", "0", "pids")]
    [InlineData("--ip", "192.168.77.5", "outside")]
    [InlineData("--ip", "not-an-ip", "invalid")]
    [InlineData("--image", "nosuchimage", "unknown image")]
    [InlineData("--restart", "sometimes", "restart")]
    public void A_bad_option_is_refused_and_nothing_is_created(string option, string value, string message)
    {
        var name = $"bad{Math.Abs((option + value).GetHashCode(StringComparison.Ordinal)) % 100000}";
        Host.Vsctl("create", name, option, value).ShouldFailWith(message);
        Host.ShouldHaveNoTraceOf(name);
    }

    [Fact]
    public void A_duplicate_name_or_a_taken_address_is_refused_and_the_original_is_untouched()
    {
        Host.Vsctl("create", "dup", "--ip", $"{Host.SubnetPrefix}.50").ShouldSucceed();
        var before = File.ReadAllText(Path.Combine(Host.GuestDir("dup"), "guest.json"));

        Host.Vsctl("create", "dup").ShouldFailWith("already exists");
        Host.Vsctl("create", "dup2", "--ip", $"{Host.SubnetPrefix}.50").ShouldFailWith("already taken");
        Host.Vsctl("create", "dup3", "--ip", $"{Host.SubnetPrefix}.1").ShouldFailWith("gateway");

        File.ReadAllText(Path.Combine(Host.GuestDir("dup"), "guest.json")).ShouldBe(before);
        Host.ShouldHaveNoTraceOf("dup2");
        Host.ShouldHaveNoTraceOf("dup3");
    }

    [Fact]
    public void Operations_on_the_wrong_state_are_refused()
    {
        Host.Vsctl("create", "state1").ShouldSucceed();
        Host.Vsctl("exec", "state1", "--", "true").ShouldFailWith("not running");
        Host.Vsctl("stop", "state1").ShouldFailWith("not running");
        Host.Vsctl("start", "state1").ShouldSucceed();
        Host.Vsctl("start", "state1").ShouldFailWith("already running");
        Host.Vsctl("destroy", "state1").ShouldFailWith("stop it first");
        Host.Vsctl("exec", "state1", "--", "true").ShouldSucceed();
    }

    [Fact]
    public void Unknown_guests_are_reported_as_such()
    {
        Host.Vsctl("destroy", "ghost").ShouldFailWith("no guest named 'ghost'");
        Host.Vsctl("start", "ghost").ShouldFailWith("no guest named 'ghost'");
        Host.Vsctl("exec", "ghost", "--", "true").ShouldFailWith("no guest named 'ghost'");
        Host.Vsctl("set", "ghost", "--memory", "64M").ShouldFailWith("no guest named 'ghost'");
    }

    [Fact]
    public void Lowering_memory_below_what_a_guest_uses_is_refused_and_the_old_limit_stays()
    {
        Host.Vsctl("create", "shrink", "--memory", "256M").ShouldSucceed();
        Host.Vsctl("start", "shrink").ShouldSucceed();
        Host.Vsctl("set", "shrink", "--memory", "2M").ShouldFailWith("4M");
        Host.Vsctl("status", "shrink", "-f", "json").Stdout.ShouldContain((256L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Without_an_agent_vsctl_says_so_in_one_line()
    {
        var env = new Dictionary<string, string>(Host.Env) { ["VSERVER_RUN"] = Path.Combine(Host.Dir, "nowhere"), ["VSCTL_NO_AUTOSTART"] = "1" };
        TestHost.RunWith(env, null, Binaries.Vsctl, "list").ShouldFailWith("no agent");
    }
}
