using System.Diagnostics;
using FsCheck;
using FsCheck.Fluent;
using Shouldly;
using Vserver.Api;
using Vserver.Cli;
using Vserver.Tests.Properties;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>
/// A guest directory named with an escape sequence and a newline (made by hand under the state root, or by an agent
/// that let one through): every vsctl verb that prints it must print it escaped, on its own line, and quoted where it
/// is a name the operator may type back.
/// </summary>
public sealed class EscapingTests
{
    /// <summary>Clears the screen, turns the text red, forges a line, and hides what follows behind a right-to-left override.</summary>
    private const string Evil = "evil\u001b[2J\u001b[31m\nvsctl: all fine\r\u009b1m\u202e";
    private const string EvilShown = "$'evil\\x1b[2J\\x1b[31m\\nvsctl: all fine\\r\\u009b1m\\u202e'";

    private static readonly GuestInfo EvilGuest = new()
    {
        Name = Evil,
        Kind = "vserver",
        State = "broken",
        Image = "../../etc\u001b]0;title\u0007",
        Problem = $"guests/{Evil}/guest.json: not valid JSON at 1:1",
        History = [$"started\u001b[1A\u001b[2K by {Evil}"],
    };

    /// <summary>No byte of the output may drive a terminal: only printable text, newlines that end lines, and tabs of
    /// nobody's making.</summary>
    private static void ShouldBeInert(string output)
    {
        foreach (var c in output)
        {
            if (c == '\n') continue;
            (char.IsControl(c) || char.GetUnicodeCategory(c) == System.Globalization.UnicodeCategory.Format)
                .ShouldBeFalse($"U+{(int)c:X4} reached the terminal in: {output}");
        }
    }

    private static async Task<CliHarness> RunAsync(Func<FakeRequest, FakeResponse> handler, params string[] args)
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = handler;
        var cli = new CliHarness();
        await cli.RunAsync(agent.SocketPath, args);
        return cli;
    }

    [Fact]
    public async Task List_prints_the_name_quoted_and_escaped_in_one_row()
    {
        var cli = await RunAsync(_ => FakeResponse.Json(new GuestList { Guests = [EvilGuest], Warnings = [$"guests/{Evil}: unreadable"] },
            ApiJson.Default.GuestList), "list");

        ShouldBeInert(cli.Out.ToString());
        ShouldBeInert(cli.Err.ToString());
        cli.OutLines.Length.ShouldBe(2); // the header and the one guest
        cli.OutLines[1].ShouldStartWith(EvilShown + "   vserver   broken");
        cli.ErrLines.ShouldBe(["vsctl: warning: guests/evil\\x1b[2J\\x1b[31m\\nvsctl: all fine\\r\\u009b1m\\u202e: unreadable"]);
    }

    [Fact]
    public async Task List_as_json_is_inert_too()
    {
        var cli = await RunAsync(_ => FakeResponse.Json(new GuestList { Guests = [EvilGuest] }, ApiJson.Default.GuestList), "list", "--format", "json");

        ShouldBeInert(cli.Out.ToString());
        System.Text.Json.JsonDocument.Parse(cli.Out.ToString()).RootElement[0].GetProperty("name").GetString().ShouldBe(Evil);
    }

    [Fact]
    public async Task Status_escapes_every_value_and_its_advice_can_be_pasted()
    {
        var cli = await RunAsync(_ => FakeResponse.Json(EvilGuest, ApiJson.Default.GuestInfo), "status", "x");

        ShouldBeInert(cli.Out.ToString());
        var lines = cli.OutLines.Select(l => System.Text.RegularExpressions.Regex.Replace(l, "^([a-z ]+): +", "$1: ")).ToList();
        lines.ShouldContain($"name: {EvilShown}");
        lines.ShouldContain($"repair: fix its files, or remove it with: vsctl destroy --force {EvilShown}");
        lines.ShouldContain("image: ../../etc\\x1b]0;title\\x07");
        lines.ShouldContain("history: started\\x1b[1A\\x1b[2K by evil\\x1b[2J\\x1b[31m\\nvsctl: all fine\\r\\u009b1m\\u202e");
        lines.Count.ShouldBe(26); // one line a key: nothing in the values broke a line
    }

    [Fact]
    public async Task Host_check_escapes_what_it_found_and_quotes_broken_names()
    {
        var report = new HostCheckReport
        {
            Guests = 1,
            Orphans = [new OrphanInfo { Kind = "directory", What = $"/var/lib/vserver/guests/{Evil}", Why = "no guest\u001b[8m hidden" }],
            Busy = [Evil],
            Problems = [$"guest {Evil}: broken"],
            Broken = [Evil],
        };
        var cli = await RunAsync(_ => FakeResponse.Json(report, ApiJson.Default.HostCheckReport), "host", "check");

        ShouldBeInert(cli.Out.ToString());
        cli.OutLines[0].ShouldStartWith("KIND        WHAT");
        cli.OutLines.Skip(1).ShouldBe(
        [
            "directory   /var/lib/vserver/guests/evil\\x1b[2J\\x1b[31m\\nvsctl: all fine\\r\\u009b1m\\u202e   no guest\\x1b[8m hidden",
            "1 orphaned; remove them with: vsctl host check --repair",
            $"not judged, in the middle of an operation: {EvilShown}",
            "problem: guest evil\\x1b[2J\\x1b[31m\\nvsctl: all fine\\r\\u009b1m\\u202e: broken",
            $"broken guest {EvilShown}: fix its files, or remove it with: vsctl destroy --force {EvilShown}",
        ]);
    }

    [Fact]
    public async Task An_agent_error_line_is_one_escaped_line_and_its_advice_quotes_the_name()
    {
        var cli = await RunAsync(_ => FakeResponse.Error(409, $"guest '{Evil}' is not running", ErrorCodes.NotRunning, ("guest", Evil)), "stop", "x");

        ShouldBeInert(cli.Err.ToString());
        cli.ErrLines.ShouldBe(["vsctl: guest 'evil\\x1b[2J\\x1b[31m; vsctl: all fine\\r\\u009b1m\\u202e' is not running; " +
            $"start it with: vsctl start {EvilShown}"]);
    }

    [Fact]
    public async Task Lines_that_echo_a_name_from_the_agent_escape_it()
    {
        var cli = await RunAsync(_ => FakeResponse.Json(EvilGuest with { State = "running", Problem = null, InitPid = 7 }, ApiJson.Default.GuestInfo),
            "start", "x");

        ShouldBeInert(cli.Out.ToString());
        cli.OutLines.ShouldBe([$"started {EvilShown} (pid 7)"]);
    }

    [Fact]
    public void Export_quotes_a_value_that_is_not_plain_so_no_line_or_key_is_added()
    {
        var guest = new GuestInfo { Name = "web1\n  - name: injected", Kind = "vserver", State = "stopped", Image = "busy: box\u001b[2J", Restart = "no" };

        var yaml = Vserver.Cli.Hosting.HostingExport.Write([Vserver.Cli.Hosting.CurrentServer.From(guest)]);

        ShouldBeInert(yaml);
        var stream = new YamlDotNet.RepresentationModel.YamlStream();
        stream.Load(new StringReader(yaml));
        var root = (YamlDotNet.RepresentationModel.YamlMappingNode)stream.Documents[0].RootNode;
        var servers = (YamlDotNet.RepresentationModel.YamlSequenceNode)root.Children["servers"];
        servers.Children.Count.ShouldBe(1);
        ((YamlDotNet.RepresentationModel.YamlScalarNode)((YamlDotNet.RepresentationModel.YamlMappingNode)servers.Children[0]).Children["name"]).Value
            .ShouldBe(guest.Name);
        yaml.ShouldContain("image: \"busy: box\\u001B[2J\"");
    }

    // ---- the helper itself ----

    [Theory]
    [InlineData("web1", "web1")]
    [InlineData("a b", "'a b'")]
    [InlineData("it's", "'it'\\''s'")]
    [InlineData("", "''")]
    [InlineData("a\nb", "$'a\\nb'")]
    [InlineData("a'\\\u001b", "$'a\\'\\\\\\x1b'")]
    [InlineData("tab\there", "$'tab\\there'")]
    [InlineData("\u007f\u0085\u2028\u200b", "$'\\x7f\\u0085\\u2028\\u200b'")]
    [InlineData("ünïcödé 😀", "'ünïcödé 😀'")]
    public void Names_are_shown_as_words_bash_reads_back(string name, string shown) => Escaped.Name(name).ShouldBe(shown);

    [Fact]
    public void A_lone_surrogate_is_escaped() => Escaped.Name("\ud800x").ShouldBe("$'\\ud800x'");

    [Fact]
    public void Every_escaped_name_is_inert_and_bash_reads_it_back_as_the_same_string()
    {
        // Lone surrogates cannot travel through UTF-8 to bash, nor NUL through argv; everything else must round-trip.
        foreach (var name in new[] { Evil, "a\nb", "$(reboot)", "`id`", "'\"\\", "\u001b]0;x\u0007" })
            RoundTrips(name).ShouldBeTrue(Escaped.Name(name));
        var names = Generators.HostileString.Where(s => !s.Any(char.IsSurrogate) && !s.Contains('\0'));
        PropertyRun.Check(Prop.ForAll(names.Arb(), name => RoundTrips(name).Label($"{PropertyRun.Show(name)} shown as {Escaped.Name(name)}")), cases: 150);
    }

    private static bool RoundTrips(string name)
    {
        var shown = Escaped.Name(name);
        return !shown.Any(c => char.IsControl(c) || char.GetUnicodeCategory(c) == System.Globalization.UnicodeCategory.Format)
            && BashEcho(shown) == name;
    }

    [Fact]
    public void Text_escapes_only_what_is_unsafe()
    {
        Escaped.Text("plain text, with 'quotes' and a \\ backslash").ShouldBe("plain text, with 'quotes' and a \\ backslash");
        Escaped.Text("a\u001b[31mb\r\n").ShouldBe("a\\x1b[31mb\\r\\n");
    }

    /// <summary>What bash makes of a word: printf %s of it, read back as UTF-8.</summary>
    private static string BashEcho(string word)
    {
        var start = new ProcessStartInfo("bash", ["-c", $"printf %s {word}"]) { RedirectStandardOutput = true, StandardOutputEncoding = new System.Text.UTF8Encoding(false) };
        start.Environment["LC_ALL"] = "C.UTF-8"; // $'\u0085' is a character only in a UTF-8 locale
        using var bash = Process.Start(start)!;
        var output = bash.StandardOutput.ReadToEnd();
        bash.WaitForExit();
        return output;
    }
}
