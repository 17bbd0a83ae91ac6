namespace HybridHypervisor;

/// <summary>
/// Named crash points for crash-consistency tests (etcd's gofail, TiKV's fail-rs): with VSERVER_FAILPOINTS=a,b the
/// agent dies by SIGKILL when it reaches point a or b, exactly as a power cut or OOM kill would end it.
/// </summary>
public static class Failpoints
{
    private static readonly HashSet<string> Armed =
        (Environment.GetEnvironmentVariable("VSERVER_FAILPOINTS") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet();

    public static void Hit(string name)
    {
        if (Armed.Count > 0 && Armed.Contains(name))
            System.Diagnostics.Process.GetCurrentProcess().Kill();
    }
}
