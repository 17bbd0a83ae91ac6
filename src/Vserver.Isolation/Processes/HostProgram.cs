using System.Diagnostics;

namespace Vserver.Isolation.Processes;

/// <summary>Runs a host tool (ip, nsenter, a build script) to completion; a failure carries the command and its stderr.</summary>
public static class HostProgram
{
    public static string Run(string program, IEnumerable<string> args, string? stdin = null, TimeSpan? timeout = null,
        IReadOnlyDictionary<string, string>? env = null)
    {
        var (code, stdout, stderr) = TryRun(program, args, stdin, timeout, env);
        if (code != 0)
        {
            var detail = stderr.Trim().Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim() ?? $"exit code {code}";
            throw new HostProgramException($"{program} {string.Join(' ', args)}: {detail}", code, stderr);
        }
        return stdout;
    }

    public static (int Code, string Stdout, string Stderr) TryRun(string program, IEnumerable<string> args, string? stdin = null,
        TimeSpan? timeout = null, IReadOnlyDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        if (env is not null)
            foreach (var (k, v) in env) psi.Environment[k] = v;
        Process process;
        try
        {
            process = Process.Start(psi) ?? throw new HostProgramException($"{program}: could not start", -1, "");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            // As a shell would: 127 for a program that is not there, 126 for one that cannot run. The caller decides
            // what a failed command means; an agent must not die of a host tool that is missing.
            var missing = e.NativeErrorCode == 2;
            return (missing ? 127 : 126, "", missing
                ? $"{program}: not found on PATH (ENOENT); install it (make deps installs every tool vserver needs)"
                : $"{program}: cannot run it: {e.Message} (errno {e.NativeErrorCode})");
        }
        using var _ = process;
        var stdoutTask = process.StandardOutput.ReadToEndAsync();
        var stderrTask = process.StandardError.ReadToEndAsync();
        if (stdin is not null) process.StandardInput.Write(stdin);
        process.StandardInput.Close();
        if (!process.WaitForExit(timeout ?? TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            throw new HostProgramException($"{program} {string.Join(' ', args)}: timed out", -1, "");
        }
        return (process.ExitCode, stdoutTask.GetAwaiter().GetResult(), stderrTask.GetAwaiter().GetResult());
    }
}
