using System.Globalization;

namespace Vserver.Isolation.Cgroups;

/// <summary>
/// Resource limits of one guest cgroup.
/// </summary>
/// <remarks>
/// <see cref="ICgroup.Apply"/> always writes every limit: a <c>null</c> member means
/// "unlimited" (it is written as <c>max</c> / <c>-1</c>), not "leave unchanged".
/// To change one limit, build the new record from the current one with <c>with</c>.
/// </remarks>
/// <param name="MemoryBytes">Memory limit in bytes (RAM; swap is not granted on top of it). null = unlimited.</param>
/// <param name="Cpus">CPU bandwidth in cores (0.5 = half a core, 2 = two cores), enforced as
/// quota = Cpus * <see cref="CpuPeriodMicroseconds"/> per period. null = unlimited.</param>
/// <param name="Pids">Maximum number of tasks (processes and threads). null = unlimited.</param>
/// <param name="MemoryLowBytes">Memory the guest keeps under host pressure: reclaim takes from groups above it first
/// (v1 memory.soft_limit_in_bytes, v2 memory.low). null = no protection.</param>
public sealed record CgroupLimits(long? MemoryBytes = null, double? Cpus = null, int? Pids = null, long? MemoryLowBytes = null)
{
    /// <summary>The CFS period used for the CPU quota, in microseconds (100 ms).</summary>
    public const long CpuPeriodMicroseconds = 100_000;

    /// <summary>The smallest quota the kernel accepts, in microseconds (1 ms).</summary>
    public const long MinCpuQuotaMicroseconds = 1_000;

    /// <summary>No limits at all.</summary>
    public static CgroupLimits Unlimited { get; } = new();

    /// <summary>The CFS quota in microseconds for <see cref="Cpus"/>, or null when unlimited.</summary>
    public long? CpuQuotaMicroseconds =>
        Cpus is { } cpus ? Math.Max(MinCpuQuotaMicroseconds, (long)Math.Round(cpus * CpuPeriodMicroseconds)) : null;

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> when a value cannot be applied.</summary>
    public void Validate()
    {
        if (MemoryBytes is { } mem && mem <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MemoryBytes), mem, "memory limit must be positive (use null for unlimited)");
        }

        if (MemoryLowBytes is { } low && (low < 0 || (MemoryBytes is { } limit && low > limit)))
        {
            throw new ArgumentOutOfRangeException(nameof(MemoryLowBytes), low, "memory protection must be between 0 and the memory limit");
        }

        if (Cpus is { } cpus && (double.IsNaN(cpus) || double.IsInfinity(cpus) || cpus <= 0 || cpus > 1_000_000))
        {
            throw new ArgumentOutOfRangeException(nameof(Cpus), cpus, "cpus must be a positive finite number of cores (use null for unlimited)");
        }

        if (Pids is { } pids && pids <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Pids), pids, "pids limit must be positive (use null for unlimited)");
        }
    }

    internal string CpuQuotaText => CpuQuotaMicroseconds?.ToString(CultureInfo.InvariantCulture) ?? "max";
}
