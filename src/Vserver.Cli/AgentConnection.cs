using System.Diagnostics;
using Vserver.Api;

namespace Vserver.Cli;

/// <summary>
/// The <see cref="AgentClient"/> for one vsctl run, and the agent auto-start: when the first request finds nobody on
/// the socket, start vserverd detached, wait until it answers, and send the request again, once.
/// </summary>
/// <remarks>
/// Every verb's handler sends its first request before it prints or reads anything, and only requests can raise
/// <see cref="AgentUnavailableException"/> (a broken exec session surfaces as a WebSocket error), so retrying the
/// handler is retrying its first request.
/// </remarks>
internal sealed class AgentConnection(string socketPath, AutoStart? autoStart, TextWriter stderr) : IDisposable
{
    public AgentClient Client { get; } = new(socketPath);

    public string SocketPath => socketPath;

    public async Task<int> InvokeAsync(Func<AgentClient, Task<int>> handler, CancellationToken ct = default)
    {
        try
        {
            return await handler(Client);
        }
        catch (AgentUnavailableException) when (autoStart is not null)
        {
            await StartAgentAsync(autoStart, ct);
            return await handler(Client);
        }
    }

    private async Task StartAgentAsync(AutoStart start, CancellationToken ct)
    {
        var agent = start.FindAgent() ?? throw new CliFailureException(
            $"no agent answers on {socketPath} and vserverd was not found next to vsctl; start it with bin/vserverd");
        try
        {
            start.Launch(agent, start.LogPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception)
        {
            throw new CliFailureException($"no agent answers on {socketPath} and starting {agent} failed: {e.Message}");
        }
        stderr.WriteLine($"vsctl: no agent was running; started vserverd (log: {start.LogPath})");

        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await Client.HostAsync(ct);
                return;
            }
            catch (ApiException)
            {
                return; // it answers; the retried request will say what it thinks
            }
            catch (Exception e) when (e is AgentUnavailableException or HttpRequestException)
            {
                if (deadline.Elapsed >= start.Timeout)
                {
                    throw new CliFailureException(
                        $"started vserverd but it did not answer within {start.Timeout.TotalSeconds:0.#} s; see {start.LogPath}");
                }
            }
            await Task.Delay(start.PollInterval, ct);
        }
    }

    public void Dispose() => Client.Dispose();
}

/// <summary>How vsctl starts vserverd when nobody answers on the default socket.</summary>
internal sealed record AutoStart
{
    public required string LogPath { get; init; }

    /// <summary>The vserverd executable, or null when there is none.</summary>
    public required Func<string?> FindAgent { get; init; }

    /// <summary>Starts the agent detached (it must outlive vsctl) with its output appended to the log.</summary>
    public required Action<string, string> Launch { get; init; }

    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(15);
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Auto-start applies to the socket from VSERVER_RUN (or the default), never to an explicit other --socket, and
    /// VSCTL_NO_AUTOSTART=1 turns it off.
    /// </summary>
    public static AutoStart? FromEnvironment(string socketPath)
    {
        if (Environment.GetEnvironmentVariable("VSCTL_NO_AUTOSTART") is "1" or "true" or "yes") return null;
        if (!string.Equals(Path.GetFullPath(socketPath), Path.GetFullPath(AgentClient.DefaultSocketPath), StringComparison.Ordinal)) return null;
        return new AutoStart
        {
            LogPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(socketPath)) ?? "/run/vserver", "vserverd.log"),
            FindAgent = FindVserverd,
            Launch = LaunchDetached,
        };
    }

    /// <summary>vserverd next to vsctl (the bin/ layout), else on PATH.</summary>
    public static string? FindVserverd()
    {
        var beside = Path.Combine(AppContext.BaseDirectory, "vserverd");
        if (File.Exists(beside)) return beside;
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(dir, "vserverd");
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    /// <summary>
    /// <c>setsid -f vserverd &lt;/dev/null &gt;&gt;LOG 2&gt;&amp;1</c> through /bin/sh: its own session (no terminal, no
    /// SIGHUP or Ctrl-C from vsctl's terminal), the environment inherited (VSERVER_ROOT, VSERVER_RUN, ...).
    /// </summary>
    public static void LaunchDetached(string agent, string logPath)
    {
        // Fail here, with the reason, rather than 15 s later: the run directory may be missing or not ours.
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(logPath)!);
            using (File.Open(logPath, FileMode.Append, FileAccess.Write, FileShare.ReadWrite))
            {
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"cannot write its log {logPath} ({e.Message})", e);
        }
        const string Script = """
            if command -v setsid >/dev/null 2>&1; then
              exec setsid -f "$0" </dev/null >>"$1" 2>&1
            else
              nohup "$0" </dev/null >>"$1" 2>&1 &
            fi
            """;
        var info = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(Script);
        info.ArgumentList.Add(agent);
        info.ArgumentList.Add(logPath);
        using var shell = Process.Start(info) ?? throw new IOException("/bin/sh did not start");
        if (!shell.WaitForExit(TimeSpan.FromSeconds(10)))
            throw new IOException("/bin/sh did not return while detaching vserverd");
        if (shell.ExitCode != 0) throw new IOException($"/bin/sh exited with code {shell.ExitCode} while detaching vserverd");
    }
}
