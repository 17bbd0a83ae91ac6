using Shouldly;
using Vserver.Isolation.Processes;
using Xunit;

namespace Vserver.Tests.Processes;

/// <summary>Host tools run to completion; one that is missing is a failed command with a reason, not a crash.</summary>
public sealed class HostCommandTests
{
    [Fact]
    public void A_command_runs_with_its_arguments_and_stdin_and_its_exit_code_comes_back()
    {
        var (code, stdout, _) = HostProgram.TryRun("sh", ["-c", "cat; echo \"$0\"; exit 3", "arg with spaces"], stdin: "in\n");
        code.ShouldBe(3);
        stdout.ShouldBe("in\narg with spaces\n");
    }

    [Fact]
    public void A_missing_program_is_exit_127_with_a_line_that_says_so()
    {
        var (code, stdout, stderr) = HostProgram.TryRun("vserver-no-such-tool", ["list"]);
        code.ShouldBe(127);
        stdout.ShouldBeEmpty();
        stderr.ShouldBe("vserver-no-such-tool: not found on PATH (ENOENT); install it (make deps installs every tool vserver needs)");
        var e = Should.Throw<HostProgramException>(() => HostProgram.Run("vserver-no-such-tool", ["list", "table"]));
        e.Message.ShouldBe("vserver-no-such-tool list table: vserver-no-such-tool: not found on PATH (ENOENT); install it (make deps installs every tool vserver needs)");
        e.ExitCode.ShouldBe(127);
    }

    [Fact]
    public void A_failing_command_throws_with_the_command_and_the_last_line_it_printed_to_stderr()
    {
        var e = Should.Throw<HostProgramException>(() => HostProgram.Run("sh", ["-c", "echo first >&2; echo 'the reason' >&2; exit 2"]));
        e.Message.ShouldEndWith(": the reason");
        e.ExitCode.ShouldBe(2);
    }
}
