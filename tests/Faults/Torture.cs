using System.Diagnostics;
using Vserver.Api;
using Vserver.IntegrationTests;

namespace Vserver.FaultTests;

/// <summary>
/// Kills a test host's agent inside operations and checks, after each restart, that every guest is whole or gone and
/// nothing is orphaned. Two ways to kill: at the agent's crash points (<see cref="EveryPointAsync"/> walks the 1st,
/// 2nd, ... point an operation reaches until it runs through), and by SIGKILL from outside after a random delay
/// (<see cref="AtRandomAsync"/>), which also hits the windows no crash point marks.
/// </summary>
internal sealed class Torture(TestHost host)
{
    public static readonly IReadOnlyDictionary<string, string> Armable = new Dictionary<string, string> { ["VSERVER_FAILPOINTS"] = "armable" };

    public int Kills { get; private set; }
    public List<string> Log { get; } = [];

    /// <summary>Where the current agent's lines begin in the host's agent log.</summary>
    private int _logStart;

    public Task StartAgentAsync()
    {
        _logStart = host.AgentLog.Length;
        return host.StartAgentAsync(Armable);
    }

    /// <summary>
    /// For n = 1, 2, ...: <paramref name="setup"/> brings the guest to the operation's starting state, the agent is armed
    /// to die at the nth crash point, <paramref name="operation"/> runs; if the agent died, it is started again and the
    /// invariants and <paramref name="check"/> (whole or gone, in the operation's terms) must hold. Ends when the operation
    /// runs through without reaching point n; it must then have succeeded.
    /// </summary>
    public async Task EveryPointAsync(string what, Func<Task> setup, Func<CommandResult> operation, Func<Task>? check = null)
    {
        for (var n = 1; n <= 60; n++)
        {
            await setup();
            using (var client = host.Client()) await client.ArmFailpointAsync(n);
            var result = operation();
            if (await SurvivedAsync())
            {
                result.ShouldSucceed();
                Log.Add($"{what}: {n - 1} crash points");
                return;
            }
            Kills++;
            await RecoverAsync(check);
        }
        throw new ShouldAssertException($"{what}: still dying after 60 crash points; a loop?");
    }

    /// <summary>A guest's create and then its start, each killed at every crash point (<paramref name="kind"/>, if given,
    /// names the steps in the log); after every kill the guest must be whole or gone.</summary>
    public async Task CreateAndStartAsync(string name, string[] create, string? kind = null)
    {
        var suffix = kind is null ? "" : " " + kind;
        await EveryPointAsync("create" + suffix, () => Task.Run(() => Gone(name)), () => host.Vsctl(["create", name, .. create]), () => WholeOrGoneAsync(name));
        await EveryPointAsync("start" + suffix, async () =>
        {
            Exists(name, create);
            await StoppedAsync(name);
        }, () => host.Vsctl("start", name), () => WholeOrGoneAsync(name));
    }

    /// <summary>Starts <paramref name="operation"/> (an API call: it reaches the agent at once) and SIGKILLs the agent
    /// from outside after a random delay of up to <paramref name="maxDelayMs"/>; counts a kill only if the call was still
    /// under way then.</summary>
    public async Task AtRandomAsync(Random random, Func<AgentClient, Task> operation, int maxDelayMs, Func<Task>? check = null)
    {
        using var client = host.Client();
        var call = Task.Run(async () =>
        {
            try
            {
                await operation(client);
            }
            catch (Exception e) when (e is ApiException or AgentUnavailableException or HttpRequestException or IOException)
            {
            }
        });
        await Task.Delay(random.Next(0, maxDelayMs));
        var killedMidway = !call.IsCompleted;
        await host.KillAgentAsync();
        await call;
        if (killedMidway) Kills++;
        await RecoverAsync(check);
    }

    private async Task RecoverAsync(Func<Task>? check)
    {
        await host.KillAgentAsync();
        await StartAgentAsync();
        await host.ShouldHaveNothingOrphanedAsync();
        if (check is not null) await check();
        host.AgentLog.ShouldNotContain("recovering failed");
        var report = host.Vsctl("host", "check");
        report.Code.ShouldBe(0, $"the agent's own check after its start-up repair:\n{report}\n{host.AgentLog}");
    }

    /// <summary>Whether the agent lives on after the operation (then it is disarmed). A killed agent's socket closes a
    /// moment before its process is reaped.</summary>
    private async Task<bool> SurvivedAsync()
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(3))
        {
            if (!host.AgentAlive) return false;
            try
            {
                using var client = host.Client();
                await client.ArmFailpointAsync(0);
                return true;
            }
            catch (Exception e) when (e is AgentUnavailableException or HttpRequestException or IOException)
            {
                await Task.Delay(50);
            }
        }
        return host.AgentAlive;
    }

    // ---- bringing a guest to a state, whatever state the last kill left it in ----

    public GuestInfo? Find(string name)
    {
        using var client = host.Client();
        return client.ListAsync().GetAwaiter().GetResult().Guests.FirstOrDefault(g => g.Name == name);
    }

    public async Task<GuestInfo> WaitForAsync(string name, Func<GuestInfo?, bool> condition, string what, int seconds = 90)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var g = Find(name);
            if (condition(g)) return g!;
            if (clock.Elapsed > TimeSpan.FromSeconds(seconds))
                throw new ShouldAssertException($"{name} is not {what} after {seconds} s: {g?.Kind} {g?.State}\n{host.AgentLog}");
            await Task.Delay(100);
        }
    }

    public void Gone(string name)
    {
        if (Find(name) is not null) host.Vsctl("destroy", "--force", name).ShouldSucceed();
    }

    public void Exists(string name, params string[] createArgs)
    {
        if (Find(name) is null) host.Vsctl(["create", name, .. createArgs]).ShouldSucceed();
    }

    /// <summary>A stop an agent died in is finished by the next one, in the background: wait for it to end.</summary>
    private async Task<GuestInfo> SettledAsync(string name)
    {
        if (host.AgentLog[_logStart..].Contains($"finishing the stop of {name} ", StringComparison.Ordinal))
            await WaitForAsync(name, g => g is null || g.State is "stopped" or "crashed", "stopped, as the stop an earlier agent began");
        return await WaitForAsync(name, g => g is not null, "there");
    }

    public async Task RunningAsync(string name)
    {
        var g = await SettledAsync(name);
        if (g.State != "running") host.Vsctl("start", name).ShouldSucceed();
        await WaitForAsync(name, g => g?.State == "running", "running");
    }

    public async Task StoppedAsync(string name)
    {
        var g = await SettledAsync(name);
        if (g.State is "running" or "paused") host.Vsctl("stop", name).ShouldSucceed();
        await WaitForAsync(name, g => g?.State is "stopped" or "crashed", "stopped");
    }

    /// <summary>The guest is there (whole: not broken, its state one an operator knows) or has left no trace.</summary>
    public Task WholeOrGoneAsync(string name)
    {
        var g = Find(name);
        if (g is null) host.ShouldHaveNoTraceOf(name);
        else g.State.ShouldBeOneOf(["running", "stopped", "crashed", "paused"], $"{name} after a kill\n{host.AgentLog}");
        return Task.CompletedTask;
    }
}
