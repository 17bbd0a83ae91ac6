namespace HybridHypervisor.Model;

/// <summary>The host's RAM as the kernel reports it (MemTotal in /proc/meminfo).</summary>
public static class HostMemory
{
    private static readonly Lazy<long> Total = new(() => new SharedMemoryAccounting.ProcFs().ReadMemInfo().TotalBytes);

    public static long TotalBytes => Total.Value;
}
