using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.RegularExpressions;
using Vserver.Api;
using Vserver.IntegrationTests;

namespace Vserver.FaultTests;

/// <summary>
/// Many clients at once: 16 API clients each create, start, exec in, stop and destroy guests of their own names in a
/// loop while another client keeps listing. The agent must answer every request correctly (or with a documented
/// refusal), keep answering list quickly, and leave nothing behind.
/// </summary>
public sealed partial class LoadTests
{
    private const int Clients = 16;
    private static readonly TimeSpan LoadTime = TimeSpan.FromSeconds(45);
    /// <summary>No single request may take longer: a hang is an error, not a slow test.</summary>
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);
    /// <summary>A responsiveness bound, not a benchmark (bench/load measures): list answers within this at p99.</summary>
    private static readonly TimeSpan ListBound = TimeSpan.FromSeconds(1);

    /// <summary>What the README documents as refusals of create and start: admission, a full subnet, no free id range.</summary>
    [GeneratedRegex("does not fit the memory pool|would bring the guests' limits to|the guest subnet .* is full|all [0-9]+ id ranges of")]
    private static partial Regex DocumentedRefusal();

    private sealed class LoadRecord
    {
        public ConcurrentQueue<string> Errors { get; } = new();
        public ConcurrentQueue<string> Refusals { get; } = new();
        public ConcurrentQueue<string> Names { get; } = new();
        public ConcurrentQueue<double> ListMs { get; } = new();
        public ConcurrentDictionary<string, ConcurrentQueue<double>> VerbMs { get; } = new();
        public int Cycles;
        public int ExecsAnswered;
    }

    [Fact]
    public async Task Sixteen_clients_cycling_guests_get_no_errors_right_exec_answers_a_quick_list_and_leave_nothing()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await TestHost.StartAsync();
        var load = new LoadRecord();
        using var loadOver = CancellationTokenSource.CreateLinkedTokenSource(ct);
        loadOver.CancelAfter(LoadTime);

        using var listing = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var lister = Task.Run(() => ListWhileLoadedAsync(host, load, listing.Token), CancellationToken.None);
        var clients = Enumerable.Range(1, Clients)
            .Select(k => Task.Run(() => ClientAsync(host, k, load, loadOver.Token, ct), CancellationToken.None))
            .ToList();
        await Task.WhenAll(clients);
        await listing.CancelAsync();
        await lister;

        var names = load.Names.ToList();
        var summary = $"{load.Cycles} full cycles over {names.Count} names, {load.ExecsAnswered} execs answered, " +
                      $"{load.Refusals.Count} refusals, {load.ListMs.Count} lists " +
                      $"(p50 {Percentile(load.ListMs.ToList(), 50):0} ms, p99 {Percentile(load.ListMs.ToList(), 99):0} ms)";
        TestContext.Current.TestOutputHelper?.WriteLine(summary);
        foreach (var (verb, ms) in load.VerbMs.OrderBy(v => v.Key, StringComparer.Ordinal))
            TestContext.Current.TestOutputHelper?.WriteLine($"{verb}: {ms.Count}, p50 {Percentile(ms.ToList(), 50):0} ms, p99 {Percentile(ms.ToList(), 99):0} ms");
        load.Errors.ShouldBeEmpty($"{summary}; errors:\n{string.Join('\n', load.Errors.Take(30))}\nagent log:\n{Tail(host.AgentLog)}");
        // Without this the test could pass having tested nothing: at least one full cycle per client.
        load.Cycles.ShouldBeGreaterThanOrEqualTo(Clients, summary);
        load.ExecsAnswered.ShouldBeGreaterThanOrEqualTo(load.Cycles, summary);
        load.ListMs.Count.ShouldBeGreaterThan(10, summary);
        Percentile(load.ListMs.ToList(), 99).ShouldBeLessThan(ListBound.TotalMilliseconds, summary);

        using var client = host.Client();
        (await client.ListAsync(ct)).Guests.Select(g => g.Name).ShouldBeEmpty("guests left after every client destroyed its own");
        var clock = Stopwatch.StartNew();
        foreach (var name in names) host.ShouldHaveNoTraceOf(name);
        ShouldHaveNothingOfTheHostLeft(host);
        TestContext.Current.TestOutputHelper?.WriteLine($"leak check of {names.Count} names: {clock.ElapsedMilliseconds} ms");
    }

    /// <summary>
    /// Clients that do not keep to their own guests: 16 of them throw create, start, exec, stop, set and destroy --force
    /// at the same two names for 20 s. Each request is either served or refused (404, 409: a guest that is not there,
    /// already there, not running, already running); nothing fails, and no guest leaves anything behind. A start that
    /// had found a guest just before a destroy took it used to start it anyway, after the destroy: "starting X failed:
    /// open console ...: ENOENT", with the guest's veth, netns mount and run directory left on the host.
    /// </summary>
    [Fact]
    public async Task Clients_racing_on_the_same_guests_are_served_or_refused_and_leave_nothing()
    {
        var ct = TestContext.Current.CancellationToken;
        await using var host = await TestHost.StartAsync();
        string[] names = ["race1", "race2"];
        string[] verbs = ["create", "start", "exec", "stop", "set", "destroy"];
        // Destroys rarer than the rest, or the guests would hardly ever run long enough to be stopped or exec'd in.
        string[] deck = ["create", "create", "start", "start", "start", "exec", "exec", "exec", "stop", "stop", "set", "set", "destroy"];
        var errors = new ConcurrentQueue<string>();
        var served = new ConcurrentDictionary<string, int>();
        var refused = 0;
        using var over = CancellationTokenSource.CreateLinkedTokenSource(ct);
        over.CancelAfter(TimeSpan.FromSeconds(20));

        var clients = Enumerable.Range(0, Clients).Select(k => Task.Run(async () =>
        {
            using var client = host.Client();
            var random = new Random(k);
            while (!over.IsCancellationRequested)
            {
                var name = names[random.Next(names.Length)];
                var verb = deck[random.Next(deck.Length)];
                await Task.Delay(random.Next(20), CancellationToken.None);
                using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
                deadline.CancelAfter(RequestTimeout);
                try
                {
                    switch (verb)
                    {
                        case "create":
                            await client.CreateAsync(new GuestSpec { Name = name, MemoryBytes = 64L << 20 }, deadline.Token);
                            break;
                        case "start":
                            await client.StartAsync(name, ct: deadline.Token);
                            break;
                        case "exec":
                            var (code, stdout, _) = await ExecAsync(client, name, ["hostname"], deadline.Token);
                            // Stopped under it, the command may end by a signal; but what answers must be this guest.
                            if (code == 0 && stdout.Trim() != name) errors.Enqueue($"{name} exec: answered '{stdout.Trim()}'");
                            if (code != 0)
                            {
                                Interlocked.Increment(ref refused);
                                continue;
                            }
                            break;
                        case "stop":
                            await client.StopAsync(name, timeoutSeconds: 1, ct: deadline.Token);
                            break;
                        case "set":
                            await client.SetLimitsAsync(name, new SetLimitsRequest { MemoryBytes = (64L + random.Next(64)) << 20 }, deadline.Token);
                            break;
                        default:
                            await client.DestroyAsync(name, force: true, deadline.Token);
                            break;
                    }
                    served.AddOrUpdate(verb, 1, (_, n) => n + 1);
                }
                catch (ApiException e) when (e.Status is System.Net.HttpStatusCode.NotFound or System.Net.HttpStatusCode.Conflict)
                {
                    Interlocked.Increment(ref refused);
                }
                catch (WebSocketException) when (verb == "exec")
                {
                    // The agent refused the exec upgrade: the guest was there but not running.
                    Interlocked.Increment(ref refused);
                }
                catch (IOException) when (verb == "exec")
                {
                    // The guest was stopped or destroyed while the command ran.
                    Interlocked.Increment(ref refused);
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    errors.Enqueue($"{name} {verb}: no answer within {RequestTimeout.TotalSeconds:0} s");
                }
                catch (Exception e) when (e is ApiException or AgentUnavailableException or HttpRequestException or IOException)
                {
                    errors.Enqueue($"{name} {verb}: {e.GetType().Name}: {e.Message}");
                }
            }
        }, CancellationToken.None)).ToList();
        await Task.WhenAll(clients);

        var summary = $"served {string.Join(", ", served.OrderBy(v => v.Key, StringComparer.Ordinal).Select(v => $"{v.Key} {v.Value}"))}; refused {refused}";
        TestContext.Current.TestOutputHelper?.WriteLine(summary);
        errors.ShouldBeEmpty($"{summary}; errors:\n{string.Join('\n', errors.Take(30))}\nagent log:\n{Tail(host.AgentLog)}");
        // The race only happens if every verb got through now and then.
        foreach (var verb in verbs) served.GetValueOrDefault(verb).ShouldBeGreaterThan(0, summary);

        using var client = host.Client();
        foreach (var name in names)
        {
            try
            {
                await client.DestroyAsync(name, force: true, ct);
            }
            catch (ApiException e) when (e.Status == System.Net.HttpStatusCode.NotFound)
            {
            }
            host.ShouldHaveNoTraceOf(name);
        }
        ShouldHaveNothingOfTheHostLeft(host);
    }

    private static async Task ClientAsync(TestHost host, int k, LoadRecord load, CancellationToken loadOver, CancellationToken ct)
    {
        using var client = host.Client();
        for (var i = 0; !loadOver.IsCancellationRequested; i++)
        {
            // Each name twice in a row: a new guest takes the name (veth, cgroup, directories) the last one just gave up.
            var name = $"ld{k}-{i / 2}";
            if (i % 2 == 0) load.Names.Enqueue(name);
            await CycleAsync(client, name, load, ct);
        }
    }

    /// <summary>create, start, exec hostname (must answer the name), stop, destroy; after a failed step, what is left is
    /// still destroyed (forced if the guest may still run), so that the leak check sees only the agent's leaks.</summary>
    private static async Task CycleAsync(AgentClient client, string name, LoadRecord load, CancellationToken ct)
    {
        var created = await StepAsync(load, name, "create",
            t => client.CreateAsync(new GuestSpec { Name = name, MemoryBytes = 64L << 20, Pids = 100 }, t), ct);
        if (!created) return;
        var clean = await StepAsync(load, name, "start", t => client.StartAsync(name, ct: t), ct)
                    && await StepAsync(load, name, "exec", async t =>
                    {
                        var (code, stdout, stderr) = await ExecAsync(client, name, ["hostname"], t);
                        if (code != 0 || stdout.Trim() != name)
                            throw new InvalidDataException($"exec hostname answered exit {code}, stdout '{stdout.Trim()}', stderr '{stderr.Trim()}'");
                        Interlocked.Increment(ref load.ExecsAnswered);
                    }, ct)
                    && await StepAsync(load, name, "stop", t => client.StopAsync(name, ct: t), ct);
        var destroyed = await StepAsync(load, name, "destroy", t => client.DestroyAsync(name, force: !clean, t), ct);
        if (clean && destroyed) Interlocked.Increment(ref load.Cycles);
    }

    /// <summary>One request with its own deadline; a failure is recorded as a refusal (documented ones) or an error.</summary>
    private static async Task<bool> StepAsync(LoadRecord load, string name, string verb, Func<CancellationToken, Task> step, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(RequestTimeout);
        var clock = Stopwatch.StartNew();
        try
        {
            await step(deadline.Token);
            load.VerbMs.GetOrAdd(verb, _ => new ConcurrentQueue<double>()).Enqueue(clock.Elapsed.TotalMilliseconds);
            return true;
        }
        catch (ApiException e) when (DocumentedRefusal().IsMatch(e.Message))
        {
            load.Refusals.Enqueue($"{name} {verb}: {e.Message}");
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            load.Errors.Enqueue($"{name} {verb}: no answer within {RequestTimeout.TotalSeconds:0} s");
        }
        catch (Exception e) when (e is ApiException or AgentUnavailableException or HttpRequestException or WebSocketException
                                       or IOException or InvalidDataException)
        {
            load.Errors.Enqueue($"{name} {verb} (after {clock.ElapsedMilliseconds} ms): {e.GetType().Name}: {e.Message}");
        }
        return false;
    }

    /// <summary>Runs a command through the exec WebSocket, as vsctl exec does, and collects its output and exit code.</summary>
    private static async Task<(int Code, string Stdout, string Stderr)> ExecAsync(AgentClient client, string name, string[] command, CancellationToken ct)
    {
        using var ws = await client.OpenExecAsync(name, new ExecRequest { Command = command }, ct);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var buffer = new byte[64 * 1024];
        using var message = new MemoryStream();
        while (true)
        {
            var received = await ws.ReceiveAsync(buffer, ct);
            if (received.MessageType == WebSocketMessageType.Close)
                throw new IOException($"the agent closed the exec session without an exit code ({ws.CloseStatus} {ws.CloseStatusDescription})");
            message.Write(buffer, 0, received.Count);
            if (!received.EndOfMessage) continue;
            var frame = message.ToArray();
            message.SetLength(0);
            if (frame.Length == 0) continue;
            var payload = Encoding.UTF8.GetString(frame, 1, frame.Length - 1);
            switch (frame[0])
            {
                case ExecStream.Stdout:
                    stdout.Append(payload);
                    break;
                case ExecStream.Stderr:
                case ExecStream.Error:
                    stderr.Append(payload);
                    break;
                case ExecStream.Exit:
                    var code = BinaryPrimitives.ReadInt32LittleEndian(frame.AsSpan(1));
                    try
                    {
                        await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct);
                    }
                    catch (Exception e) when (e is WebSocketException or IOException)
                    {
                        // The agent may close first after the exit frame; the answer is already complete.
                    }
                    return (code, stdout.ToString(), stderr.ToString());
            }
        }
    }

    /// <summary>A list every 100 ms for as long as the clients run, each timed.</summary>
    private static async Task ListWhileLoadedAsync(TestHost host, LoadRecord load, CancellationToken stop)
    {
        using var client = host.Client();
        while (!stop.IsCancellationRequested)
        {
            var clock = Stopwatch.StartNew();
            try
            {
                using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stop);
                deadline.CancelAfter(RequestTimeout);
                await client.ListAsync(deadline.Token);
                load.ListMs.Enqueue(clock.Elapsed.TotalMilliseconds);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is ApiException or AgentUnavailableException or HttpRequestException or OperationCanceledException)
            {
                load.Errors.Enqueue($"list (after {clock.ElapsedMilliseconds} ms): {e.GetType().Name}: {e.Message}");
            }
            try
            {
                await Task.Delay(100, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Host-wide, beyond each name: nothing in the agent's cgroup parent, on its bridge, mounted under its
    /// directory, running from it (vsinit monitors and exec helpers name their spec there), or backing a loop device.</summary>
    private static void ShouldHaveNothingOfTheHostLeft(TestHost host)
    {
        foreach (var hierarchy in TestHost.CgroupHierarchies)
        {
            var parent = Path.Combine(hierarchy, host.CgroupParent);
            if (Directory.Exists(parent)) Directory.EnumerateDirectories(parent).ShouldBeEmpty($"cgroups left under {parent}");
        }
        var ports = $"/sys/class/net/{host.Bridge}/brif";
        Directory.Exists(ports).ShouldBeTrue($"the agent's bridge {host.Bridge} is gone");
        Directory.EnumerateFileSystemEntries(ports).Select(Path.GetFileName).ShouldBeEmpty($"interfaces left on {host.Bridge}");
        TestHost.MountsUnder(host.Dir).Where(m => m != host.Dir).ShouldBeEmpty("mounts left under the host's directory");
        // The agent's own resolver serves on (it is the host's, not a guest's).
        TestHost.Processes().Where(p => p.CommandLine.Contains(host.Dir + "/", StringComparison.Ordinal)
                                        && !p.CommandLine.Contains(Path.Combine(host.RunDir, "dns") + "/", StringComparison.Ordinal))
            .Select(p => $"{p.Pid}: {p.CommandLine}")
            .ShouldBeEmpty("processes of the host's guests left running");
        TestHost.LoopDevicesUnder(host.Dir).Select(l => l.Backing).ShouldBeEmpty("loop devices left on the host's files");
        foreach (var dir in new[] { Path.Combine(host.Root, "guests"), Path.Combine(host.RunDir, "guests") })
            if (Directory.Exists(dir)) Directory.EnumerateFileSystemEntries(dir).ShouldBeEmpty($"entries left in {dir}");
    }

    private static double Percentile(List<double> values, int p)
    {
        if (values.Count == 0) return double.NaN;
        values.Sort();
        return values[Math.Clamp((int)Math.Ceiling(values.Count * p / 100.0) - 1, 0, values.Count - 1)];
    }

    private static string Tail(string log) => string.Join('\n', log.Split('\n').TakeLast(30));
}
