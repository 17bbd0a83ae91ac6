namespace HybridHypervisor;

/// <summary>
/// Named crash points for crash-consistency tests (etcd's gofail, TiKV's fail-rs): the agent dies by SIGKILL at a
/// point between two side effects, exactly as a power cut or OOM kill would end it there. VSERVER_FAILPOINTS=a,b arms
/// points a and b by name; VSERVER_FAILPOINTS=armable lets a test arm "the Nth point reached from now" through the
/// agent's API (<see cref="ArmAfter"/>), so one torture run can walk every point of an operation in turn. Unset (any
/// production agent), <see cref="Hit"/> is one read of an empty set.
/// </summary>
public static class Failpoints
{
    private static readonly HashSet<string> Armed =
        (Environment.GetEnvironmentVariable("VSERVER_FAILPOINTS") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet();

    private static long _killAt;
    private static long _reached;

    /// <summary>Whether a test may arm points through the API (VSERVER_FAILPOINTS contains "armable").</summary>
    public static bool Armable => Armed.Contains("armable");

    /// <summary>The agent dies at the <paramref name="n"/>th point it reaches from now on; 0 disarms.</summary>
    public static void ArmAfter(int n)
    {
        Interlocked.Exchange(ref _reached, 0);
        Interlocked.Exchange(ref _killAt, Math.Max(0, n));
    }

    /// <summary>How many points were reached since the last <see cref="ArmAfter"/>.</summary>
    public static long Reached => Interlocked.Read(ref _reached);

    public static void Hit(string name)
    {
        if (Armed.Count == 0) return;
        var reached = Interlocked.Increment(ref _reached);
        var at = Interlocked.Read(ref _killAt);
        if (Armed.Contains(name) || (at > 0 && reached == at)) Die(name);
    }

    private static void Die(string name)
    {
        // The test reads which point it was from the agent's log; nothing after this line runs.
        Console.Error.WriteLine($"failpoint {name}: the agent kills itself (SIGKILL)");
        Console.Error.Flush();
        System.Diagnostics.Process.GetCurrentProcess().Kill();
        Thread.Sleep(Timeout.Infinite);
    }
}
