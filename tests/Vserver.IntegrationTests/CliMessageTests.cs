using System.Diagnostics;
using Vserver.Api;

namespace Vserver.IntegrationTests;

/// <summary>An agent with no image built, for refusals that must come before any work.</summary>
public sealed class BareHost : IAsyncLifetime
{
    public TestHost Host { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Host = await TestHost.StartAsync(buildImage: false);

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}

/// <summary>
/// Issue 19's messages against the real vsctl and vserverd: what is not a hosting file and names that could never be
/// built are refused in one line, at once, and leave nothing behind; the agent refuses the same names when vsctl is
/// bypassed. Each attempt is timed and followed by a check that the host is as it was.
/// </summary>
public sealed class CliMessageTests(BareHost bare) : IClassFixture<BareHost>
{
    private TestHost Host => bare.Host;

    /// <summary>A vsctl run that must be refused with exactly one line, quickly, with nothing on stdout.</summary>
    private CommandResult Refused(int exitCode, string line, params string[] args)
    {
        var clock = Stopwatch.StartNew();
        var result = Host.Vsctl(args);
        clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10), $"vsctl {string.Join(' ', args)} took {clock.Elapsed}");
        result.Code.ShouldBe(exitCode, result.ToString());
        result.Stderr.ShouldBe(line + "\n", result.ToString());
        result.Stdout.ShouldBeEmpty(result.ToString());
        return result;
    }

    /// <summary>No guest, no image, no kernel, no staging directory, and host check finds nothing.</summary>
    private void NothingWasMade()
    {
        Host.Vsctl("list", "--format", "json").ShouldSucceed().Stdout.Trim().ShouldBe("[]");
        foreach (var store in new[] { "images", "kernels", "guests" })
        {
            var dir = Path.Combine(Host.Root, store);
            if (Directory.Exists(dir)) Directory.EnumerateFileSystemEntries(dir).ShouldBeEmpty($"{dir} is not empty");
        }
        Host.Vsctl("host", "check").ShouldSucceed();
    }

    [Fact]
    public void Apply_on_a_directory_a_missing_file_dev_zero_or_a_fifo_is_one_line_at_once()
    {
        var dir = Directory.CreateTempSubdirectory("vsctl-apply-").FullName;
        try
        {
            var fifo = Path.Combine(dir, "fifo.yaml");
            TestHost.Run("mkfifo", fifo).ShouldSucceed();
            var big = Path.Combine(dir, "big.yaml");
            using (var f = File.Create(big)) f.SetLength(100L << 20);

            Refused(2, $"vsctl: {dir}: is a directory, not a regular file; nothing was changed", "apply", dir);
            Refused(2, $"vsctl: {dir}/missing.yaml: no such file; nothing was changed", "apply", $"{dir}/missing.yaml");
            Refused(2, "vsctl: /dev/zero: is a character device, not a regular file; nothing was changed", "apply", "/dev/zero");
            Refused(2, "vsctl: /dev/zero: is a character device, not a regular file; nothing was changed", "apply", "--dry-run", "/dev/zero");
            Refused(2, $"vsctl: {fifo}: is a FIFO, not a regular file; nothing was changed", "apply", fifo);
            Refused(2, $"vsctl: {big}: larger than 1024 KiB, more than any hosting file needs; nothing was changed", "apply", big);
            NothingWasMade();
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("image", "../../etc")]
    [InlineData("image", "/etc")]
    [InlineData("image", "Bad..Name")]
    [InlineData("kernel", "../evil")]
    [InlineData("kernel", "../../../../tmp/x")]
    public void Building_a_name_that_is_a_path_is_refused_before_anything_says_building(string noun, string name)
    {
        var shown = name; // plain paths need no quoting
        Refused(2, $"vsctl: invalid name {shown}: {noun} names are DNS labels (1-63 lowercase letters, digits and '-', not starting or ending with '-')",
            noun, "build", name);
        Refused(2, $"vsctl: invalid name {shown}: {noun} names are DNS labels (1-63 lowercase letters, digits and '-', not starting or ending with '-')",
            noun, "rm", name);
        NothingWasMade();
    }

    [Fact]
    public async Task The_agent_refuses_the_same_names_when_vsctl_is_bypassed()
    {
        using var client = Host.Client();
        foreach (var name in new[] { "../../etc", "../evil", "/tmp/x", "a/../../b", "web1\n", "" })
        {
            var image = await Should.ThrowAsync<ApiException>(() => client.BuildImageAsync(name));
            image.Status.ShouldBe(System.Net.HttpStatusCode.BadRequest, image.Message);
            image.Message.ShouldStartWith("invalid name");
            var kernel = await Should.ThrowAsync<ApiException>(() => client.BuildKernelAsync(name));
            kernel.Status.ShouldBe(System.Net.HttpStatusCode.BadRequest, kernel.Message);
            kernel.Message.ShouldStartWith("invalid name");
            if (name.Length == 0) continue;
            var rm = await Should.ThrowAsync<ApiException>(() => client.RemoveKernelAsync(name));
            rm.Status.ShouldBe(System.Net.HttpStatusCode.BadRequest, rm.Message);
            rm.Message.ShouldStartWith("invalid name");
        }
        Host.AgentLog.ShouldNotContain("building", Case.Insensitive);
        NothingWasMade();
    }

    [Fact]
    public void Exec_without_a_command_is_one_line()
    {
        Refused(2, "vsctl: exec needs a command to run in web1: vsctl exec web1 -- CMD ARGS... (or a shell: vsctl enter web1)", "exec", "web1");
        NothingWasMade();
    }

    /// <summary>No byte of vsctl's output may drive a terminal: printable text and the newlines that end its lines.</summary>
    private static void ShouldBeInert(CommandResult result)
    {
        foreach (var c in result.Stdout + result.Stderr)
        {
            if (c == '\n') continue;
            (char.IsControl(c) || char.GetUnicodeCategory(c) == System.Globalization.UnicodeCategory.Format)
                .ShouldBeFalse($"U+{(int)c:X4} reached the terminal in: {result}");
        }
    }

    [Fact]
    public async Task A_guest_directory_named_with_an_escape_sequence_and_a_newline_is_printed_escaped()
    {
        await using var host = TestHost.CreateWithoutAgent();
        const string evil = "evil\u001b[2J\u001b[31m\nvsctl: all fine";
        var planted = Path.Combine(host.Root, "guests", evil);
        Directory.CreateDirectory(planted);
        await File.WriteAllTextAsync(Path.Combine(planted, "guest.json"), "{\"name\": \"evil\u001b[2J\"}", TestContext.Current.CancellationToken);
        await host.StartAgentAsync();

        var list = host.Vsctl("list");
        ShouldBeInert(list);
        (list.Stdout + list.Stderr).ShouldContain("evil\\x1b[2J\\x1b[31m\\nvsctl: all fine");
        list.Stdout.Split('\n').ShouldNotContain(l => l.StartsWith("vsctl: all fine", StringComparison.Ordinal));
        ShouldBeInert(host.Vsctl("list", "--format", "json"));
        ShouldBeInert(host.Vsctl("host", "check"));
        ShouldBeInert(host.Vsctl("status", evil));
        ShouldBeInert(host.Vsctl("destroy", "--force", evil));
    }

    [Fact]
    public void Kernel_rm_of_a_kernel_that_is_not_there_gives_no_build_advice()
    {
        var result = Host.Vsctl("kernel", "rm", "old");
        result.ShouldFailWith("unknown kernel 'old'");
        result.Stderr.ShouldNotContain("build", Case.Insensitive);
    }
}
