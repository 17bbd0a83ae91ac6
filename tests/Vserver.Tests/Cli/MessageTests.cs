using System.Diagnostics;
using Shouldly;
using Vserver.Api;
using Vserver.Cli;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>
/// Issue 19's messages, tried as a careless operator and a hostile one would: each refusal is one line that says what is
/// wrong and what to do, with the exit code, and nothing reached the agent. Every attempt that must be refused before
/// a request runs against a fake agent that records every request.
/// </summary>
public sealed class MessageTests : IDisposable
{
    private const string DnsRule = "names are DNS labels (1-63 lowercase letters, digits and '-', not starting or ending with '-')";
    private readonly string _dir = Directory.CreateTempSubdirectory("vsctl-messages-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(CliHarness Cli, int Code, FakeAgent Agent)> RunAsync(params string[] args)
    {
        var agent = FakeAgent.Start();
        agent.Handler = r => FakeResponse.Error(500, $"the test agent was asked {r.Method} {r.Path}");
        var cli = new CliHarness();
        var code = await cli.RunAsync(agent.SocketPath, args);
        return (cli, code, agent);
    }

    /// <summary>One line on stderr, nothing on stdout, the exit code, and no request at all.</summary>
    private static async Task RefusedBeforeAnyRequestAsync(string expected, int exitCode, params string[] args)
    {
        var (cli, code, agent) = await RunAsync(args);
        await using (agent)
        {
            cli.ErrLines.ShouldBe([expected]);
            code.ShouldBe(exitCode);
            cli.Out.ToString().ShouldBeEmpty();
            agent.Requests.ShouldBeEmpty();
        }
    }

    // ---- exec with no command ----

    [Fact]
    public async Task Exec_without_a_command_is_one_line_not_the_help() =>
        await RefusedBeforeAnyRequestAsync("vsctl: exec needs a command to run in web1: vsctl exec web1 -- CMD ARGS... (or a shell: vsctl enter web1)",
            ExitCodes.Usage, "exec", "web1");

    [Fact]
    public async Task Exec_with_only_options_and_no_command_is_one_line_too() =>
        await RefusedBeforeAnyRequestAsync("vsctl: exec needs a command to run in web1: vsctl exec web1 -- CMD ARGS... (or a shell: vsctl enter web1)",
            ExitCodes.Usage, "exec", "-t", "-e", "A=1", "web1", "--");

    [Theory]
    [InlineData("vsctl: Unrecognized command or argument 'extra'; see: vsctl start --help", "start", "web1", "extra")]
    [InlineData("vsctl: Required argument missing for command: 'status'; see: vsctl status --help", "status")]
    [InlineData("vsctl: Unrecognized command or argument 'extra'; see: vsctl host set --help", "host", "set", "extra")]
    public async Task A_verb_s_parse_error_is_one_line_with_where_to_read_more(string expected, params string[] args) =>
        await RefusedBeforeAnyRequestAsync(expected, ExitCodes.Usage, args);

    [Fact]
    public async Task A_bad_parallel_count_names_no_dotnet_type()
    {
        var file = Path.Combine(_dir, "h.yaml");
        await File.WriteAllTextAsync(file, "plans: {}\n", TestContext.Current.CancellationToken);
        await RefusedBeforeAnyRequestAsync("vsctl: --parallel: invalid number of servers 'abc': give a positive whole number", ExitCodes.Usage,
            "apply", file, "--parallel", "abc");
    }

    // ---- names that could never be built ----

    public static TheoryData<string> InvalidNames => new()
    {
        "../../etc", "../evil", "/etc", "Bad..Name", "a/b", "web1\n", "x\u001b[2Jy", "-lead", "trail-", "UPPER", new string('a', 64), "a.b", "a b", "\u202egnp",
    };

    [Theory]
    [MemberData(nameof(InvalidNames))]
    public async Task Image_build_of_an_invalid_name_is_refused_before_anything_is_sent(string name) =>
        await RefusedBeforeAnyRequestAsync($"vsctl: invalid name {Escaped.Name(name)}: image {DnsRule}", ExitCodes.Usage, "image", "build", name);

    [Theory]
    [MemberData(nameof(InvalidNames))]
    public async Task Kernel_build_of_an_invalid_name_says_no_building_first(string name) =>
        await RefusedBeforeAnyRequestAsync($"vsctl: invalid name {Escaped.Name(name)}: kernel {DnsRule}", ExitCodes.Usage, "kernel", "build", name);

    [Theory]
    [InlineData("image")]
    [InlineData("kernel")]
    public async Task Rm_of_an_invalid_name_is_refused_before_anything_is_sent(string noun) =>
        await RefusedBeforeAnyRequestAsync($"vsctl: invalid name ../../etc: {noun} {DnsRule}", ExitCodes.Usage, noun, "rm", "../../etc");

    [Fact]
    public async Task Image_build_line_shows_the_exact_message_for_the_issue_s_case() =>
        await RefusedBeforeAnyRequestAsync($"vsctl: invalid name ../../etc: image {DnsRule}", ExitCodes.Usage, "image", "build", "../../etc");

    [Fact]
    public async Task Kernel_rm_of_a_kernel_that_is_not_there_gives_no_build_advice()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Error(404, "unknown kernel 'old'; built kernels: default", ErrorCodes.KernelMissing,
            ("kernel", "old"), ("built", "default"));
        var cli = new CliHarness();

        var code = await cli.RunAsync(agent.SocketPath, "kernel", "rm", "old");

        code.ShouldBe(ExitCodes.Failed);
        cli.ErrLines.ShouldBe(["vsctl: unknown kernel 'old'; built kernels: default"]);
        agent.Requests.ShouldHaveSingleItem().Method.ShouldBe("DELETE");
    }

    [Fact]
    public void No_advice_builds_an_image_or_kernel_whose_name_cannot_be_built()
    {
        // A broken guest's config can name any image; the agent reports it as it is.
        var image = new ApiException(System.Net.HttpStatusCode.Conflict, "image '../../etc' is missing", ErrorCodes.ImageMissing,
            new Dictionary<string, string> { ["image"] = "../../etc", ["guest"] = "web1" });
        var kernel = new ApiException(System.Net.HttpStatusCode.Conflict, "unknown kernel '../evil'", ErrorCodes.KernelMissing,
            new Dictionary<string, string> { ["kernel"] = "../evil" });
        var notBuilt = new ApiException(System.Net.HttpStatusCode.BadRequest, "image 'Bad..Name' is not built", ErrorCodes.InvalidValue,
            new Dictionary<string, string> { ["field"] = GuestSpec.Fields.Image, ["value"] = "Bad..Name", ["reason"] = ErrorCodes.Reasons.NotBuilt });

        AgentErrorText.Line(image).ShouldBe("image '../../etc' is missing");
        AgentErrorText.Line(kernel).ShouldBe("unknown kernel '../evil'");
        AgentErrorText.Line(notBuilt).ShouldBe("image 'Bad..Name' is not built");
    }

    // ---- apply on what is not a hosting file ----

    [Fact]
    public async Task Apply_on_a_directory_says_so()
    {
        var (cli, code, agent) = await RunAsync("apply", _dir);
        await using (agent)
        {
            cli.ErrLines.ShouldBe([$"vsctl: {_dir}: is a directory, not a regular file; nothing was changed"]);
            code.ShouldBe(ExitCodes.Usage);
            agent.Requests.ShouldBeEmpty();
        }
    }

    [Fact]
    public async Task Apply_on_a_missing_file_says_so() =>
        await RefusedBeforeAnyRequestAsync($"vsctl: {_dir}/nope.yaml: no such file; nothing was changed", ExitCodes.Usage, "apply", $"{_dir}/nope.yaml");

    [Fact]
    public async Task Apply_on_a_path_through_a_file_says_so()
    {
        var file = Path.Combine(_dir, "plain");
        await File.WriteAllTextAsync(file, "", TestContext.Current.CancellationToken);
        await RefusedBeforeAnyRequestAsync($"vsctl: {file}/h.yaml: no such file (a part of the path is not a directory); nothing was changed",
            ExitCodes.Usage, "apply", $"{file}/h.yaml");
    }

    [Theory]
    [InlineData("/dev/zero", "a character device")]
    [InlineData("/dev/null", "a character device")]
    [InlineData("/dev/urandom", "a character device")]
    public async Task Apply_on_a_device_is_refused_at_once(string device, string what)
    {
        var clock = Stopwatch.StartNew();
        await RefusedBeforeAnyRequestAsync($"vsctl: {device}: is {what}, not a regular file; nothing was changed", ExitCodes.Usage, "apply", device);
        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Apply_on_a_symlink_to_dev_zero_is_refused_at_once()
    {
        var link = Path.Combine(_dir, "hosting.yaml");
        File.CreateSymbolicLink(link, "/dev/zero");
        await RefusedBeforeAnyRequestAsync($"vsctl: {link}: is a character device, not a regular file; nothing was changed", ExitCodes.Usage, "apply", link);
    }

    [Fact]
    public async Task Apply_on_a_fifo_with_no_writer_does_not_wait_for_one()
    {
        var fifo = Path.Combine(_dir, "fifo.yaml");
        MakeFifo(fifo);
        var run = RefusedBeforeAnyRequestAsync($"vsctl: {fifo}: is a FIFO, not a regular file; nothing was changed", ExitCodes.Usage, "apply", fifo);
        (await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(10), TestContext.Current.CancellationToken))).ShouldBe(run, "vsctl apply waited on a FIFO");
        await run;
    }

    [Fact]
    public async Task Apply_on_a_unix_socket_is_refused()
    {
        await using var other = FakeAgent.Start(Path.Combine(_dir, "a.sock"));
        await RefusedBeforeAnyRequestAsync($"vsctl: {other.SocketPath}: is a socket, not a regular file; nothing was changed", ExitCodes.Usage,
            "apply", other.SocketPath);
    }

    [Fact]
    public async Task Apply_on_a_file_larger_than_a_hosting_file_reads_no_more_than_the_cap()
    {
        var big = Path.Combine(_dir, "big.yaml");
        await using (var f = File.Create(big)) f.SetLength(64L << 20); // sparse: 64 MiB of zeros
        await RefusedBeforeAnyRequestAsync($"vsctl: {big}: larger than 1024 KiB, more than any hosting file needs; nothing was changed",
            ExitCodes.Usage, "apply", big);
    }

    [Fact]
    public async Task Apply_on_a_binary_file_says_it_is_not_text()
    {
        var bin = Path.Combine(_dir, "bin.yaml");
        await File.WriteAllBytesAsync(bin, [(byte)'p', (byte)'l', 0xff, 0xfe, 0x00], TestContext.Current.CancellationToken);
        await RefusedBeforeAnyRequestAsync($"vsctl: {bin}: not UTF-8 text (byte 2 and on); nothing was changed", ExitCodes.Usage, "apply", bin);
    }

    [Fact]
    public async Task A_duplicate_key_names_where_it_is_and_where_it_was_first()
    {
        var file = Path.Combine(_dir, "dup.yaml");
        await File.WriteAllTextAsync(file, "plans:\n  small:\n    memory: 128M\n    cpus: 1\n    memory: 256M\nservers: []\n", TestContext.Current.CancellationToken);
        await RefusedBeforeAnyRequestAsync($"vsctl: {file}:5:5: 'memory' is given twice in one mapping (first at 3:5); keep one; nothing was changed",
            ExitCodes.Usage, "apply", file);
    }

    [Fact]
    public async Task A_duplicate_plan_or_top_level_key_is_found_too()
    {
        var file = Path.Combine(_dir, "dup2.yaml");
        await File.WriteAllTextAsync(file, "plans:\n  small: {memory: 128M}\n  big: {memory: 1G}\n  small: {memory: 64M}\nservers: []\nplans: {}\n", TestContext.Current.CancellationToken);
        await RefusedBeforeAnyRequestAsync($"vsctl: {file}:4:3: 'small' is given twice in one mapping (first at 2:3); keep one; nothing was changed",
            ExitCodes.Usage, "apply", file);
    }

    [Fact]
    public async Task The_same_key_in_two_servers_is_no_duplicate()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = r => r.Path.StartsWith("/v1/guests", StringComparison.Ordinal) && r.Method == "GET"
            ? FakeResponse.Json(new GuestList { Guests = [] }, ApiJson.Default.GuestList)
            : FakeResponse.Error(500, "no");
        var file = Path.Combine(_dir, "ok.yaml");
        await File.WriteAllTextAsync(file, "plans:\n  p: {memory: 64M}\nservers:\n  - {name: a, plan: p}\n  - {name: b, plan: p}\n", TestContext.Current.CancellationToken);
        var cli = new CliHarness();

        await cli.RunAsync(agent.SocketPath, "apply", "--dry-run", file);

        cli.Err.ToString().ShouldNotContain("twice");
    }

    [Fact]
    public async Task A_control_character_in_a_hosting_file_value_is_refused_with_its_position()
    {
        var file = Path.Combine(_dir, "esc.yaml");
        await File.WriteAllTextAsync(file, "plans:\n  p: {memory: 64M}\nservers:\n  - {name: \"web\\e[2J\\nx\", plan: p}\n", TestContext.Current.CancellationToken);
        await RefusedBeforeAnyRequestAsync($"vsctl: {file}:4:12: 'name' $'web\\x1b[2J\\nx' has a control character; remove it; nothing was changed",
            ExitCodes.Usage, "apply", file);
    }

    // ---- no internal type names ----

    [Fact]
    public async Task An_answer_vsctl_cannot_read_names_no_dotnet_type()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => new FakeResponse(200, "{\"name\": 5}");
        var cli = new CliHarness();

        var code = await cli.RunAsync(agent.SocketPath, "status", "web1");

        code.ShouldBe(ExitCodes.Failed);
        cli.ErrLines.ShouldBe(["vsctl: the agent sent an answer vsctl does not understand (at $.name); are vsctl and vserverd the same version?"]);
    }

    private static void MakeFifo(string path)
    {
        using var mkfifo = Process.Start(new ProcessStartInfo("mkfifo", [path]) { RedirectStandardError = true })!;
        mkfifo.WaitForExit();
        mkfifo.ExitCode.ShouldBe(0);
    }
}
