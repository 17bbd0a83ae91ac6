using Vserver.Api;

namespace SharedMemoryAccounting;

/// <summary>
/// The pool's settings as the operator set them; null members take the defaults for the host's size.
/// </summary>
public sealed record PoolSettings
{
    public const double DefaultOvercommit = 2.0;

    /// <summary>Memory kept for the host itself (agent, monitors, kernel, page cache of its own files).</summary>
    public long? ReserveBytes { get; init; }
    /// <summary>How far the guests' limits may add up beyond the capacity (guarantees never may).</summary>
    public double Overcommit { get; init; } = DefaultOvercommit;
    /// <summary>Below this much free memory in the pool the agent takes balloon memory back from domains.</summary>
    public long? MinFreeBytes { get; init; }
    /// <summary>KSM merges identical pages of domains' RAM (QEMU marks guest RAM mergeable).</summary>
    public bool Ksm { get; init; }

    /// <summary>5% of the host, at least 512M and at most 4G.</summary>
    public static long DefaultReserve(long total) => Math.Clamp(total / 20, 512L << 20, 4L << 30);

    /// <summary>2% of the capacity, at least 128M.</summary>
    public static long DefaultMinFree(long capacity) => Math.Max(128L << 20, capacity / 50);

    public Pool For(long hostTotal)
    {
        var reserve = ReserveBytes ?? DefaultReserve(hostTotal);
        var capacity = Math.Max(0, hostTotal - reserve);
        return new Pool(hostTotal, reserve, capacity, Overcommit, MinFreeBytes ?? DefaultMinFree(capacity));
    }

    public const double MaxOvercommit = 100;

    /// <summary>Why these settings cannot be used on a host of <paramref name="hostTotal"/> bytes, or null. Each
    /// setting has a range: a reserve below the host's memory, an overcommit from 1 to 100, and a min-free no larger
    /// than the pool's capacity (the pool never has more free, so a larger one would hold it under pressure for
    /// ever).</summary>
    public PoolSettingError? Error(long hostTotal)
    {
        if (ReserveBytes is { } r && (r < 0 || r >= hostTotal))
            return new PoolSettingError(PoolSettingError.Reserve, Text(r), 0, hostTotal - 1,
                $"reserve {ByteSize.FormatRounded(r)} is out of range: give 0 to below the host's {ByteSize.FormatRounded(hostTotal)}");
        if (!double.IsFinite(Overcommit) || Overcommit < 1 || Overcommit > MaxOvercommit)
            return new PoolSettingError(PoolSettingError.Overcommit, Overcommit.ToString(System.Globalization.CultureInfo.InvariantCulture), 1, (long)MaxOvercommit,
                $"overcommit {Overcommit.ToString(System.Globalization.CultureInfo.InvariantCulture)} is out of range: give a ratio from 1 (limits never exceed the capacity) to {MaxOvercommit}, e.g. 1.5");
        var capacity = For(hostTotal).Capacity;
        if (MinFreeBytes is { } m && (m < 0 || m > capacity))
            return new PoolSettingError(PoolSettingError.MinFree, Text(m), 0, capacity,
                $"min-free {ByteSize.FormatRounded(m)} is out of range: give 0 to the pool's capacity of {ByteSize.FormatRounded(capacity)} (the pool never has more free)");
        return null;
    }

    private static string Text(long value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>A pool setting out of its range: the field (as the contract's HostSettingsRequest names it), the value as
/// given, the range, and one plain line that says so.</summary>
public sealed record PoolSettingError(string Field, string Value, long Minimum, long Maximum, string Message)
{
    public const string Reserve = "reserveBytes";
    public const string Overcommit = "overcommit";
    public const string MinFree = "minFreeBytes";

    public override string ToString() => Message;
}

/// <summary>The pool on this host: capacity = total - reserve.</summary>
public sealed record Pool(long HostTotal, long Reserve, long Capacity, double Overcommit, long MinFree)
{
    /// <summary>What the guests' limits may add up to.</summary>
    public long LimitsCap => (long)Math.Min(long.MaxValue / 2, Capacity * Overcommit);

    /// <summary>Free memory in the pool: what the kernel could give out now minus the host's reserve.</summary>
    public long Free(MemInfo now) => now.AvailableBytes - Reserve;
}

/// <summary>What one guest holds of the pool: its guarantee always, its limit when it has one.</summary>
public sealed record Commitment(string Name, long Guarantee, long? Limit);

/// <summary>What guests hold together: the sum of their guarantees, and of their limits (a guest without one is not counted).</summary>
public sealed record Commitments(long Guarantees, long Limits)
{
    public static Commitments Of(IEnumerable<Commitment> all)
    {
        long guarantees = 0, limits = 0;
        // Saturating: sums of sizes near long.MaxValue must not wrap around and look small.
        foreach (var c in all)
        {
            guarantees = Add(guarantees, c.Guarantee);
            limits = Add(limits, c.Limit ?? 0);
        }
        return new Commitments(guarantees, limits);
    }

    private static long Add(long a, long b) => b > 0 && a > long.MaxValue - b ? long.MaxValue : a + b;
}

/// <summary>Which of the pool's bounds a refusal is about: the guarantees (they must fit the capacity) or the limits
/// (they may add up to capacity x overcommit).</summary>
public enum PoolBound { Guarantees, Limits }

/// <summary>
/// Why the pool refuses: one plain line with the numbers, and the numbers themselves for whoever answers a client
/// (what to change is the client's to say). <see cref="Committed"/> is what the others hold of the bound,
/// <see cref="Available"/> the bound itself; <see cref="Guest"/> and <see cref="Asked"/> are null for new settings.
/// </summary>
public sealed record PoolRefusal(string Message, PoolBound Bound, string? Guest, long? Asked, long Committed, long Available);

/// <summary>
/// Admission: the guarantees of all guests must fit the capacity (they are promises), and their limits may
/// overcommit it up to the ratio (not everyone uses the limit at once). A guest without a limit is bounded only by
/// the pool and is not counted among the limits.
/// </summary>
public static class Admission
{
    /// <summary>Null when <paramref name="asked"/> fits beside <paramref name="others"/>; else the refusal with the numbers.</summary>
    /// <param name="verb">What is being done, e.g. "create", "start", "raise the guarantee of".</param>
    public static PoolRefusal? Check(Pool pool, IEnumerable<Commitment> others, Commitment asked, string verb)
    {
        var list = others.Where(c => c.Name != asked.Name).ToList();
        var (committed, limits) = Commitments.Of(list);
        if (asked.Guarantee > pool.Capacity - committed)
        {
            var free = Math.Max(0, pool.Capacity - committed);
            return new PoolRefusal(
                $"cannot {verb} '{asked.Name}': its guarantee of {ByteSize.FormatRounded(asked.Guarantee)} does not fit the memory pool: " +
                $"{ByteSize.FormatRounded(committed)} of {ByteSize.FormatRounded(pool.Capacity)} is committed to {list.Count} other guest(s), {ByteSize.FormatRounded(free)} is free",
                PoolBound.Guarantees, asked.Name, asked.Guarantee, committed, pool.Capacity);
        }
        if (asked.Limit is { } limit && limit > pool.LimitsCap - limits)
        {
            return new PoolRefusal(
                $"cannot {verb} '{asked.Name}': its limit of {ByteSize.FormatRounded(limit)} would bring the guests' limits to " +
                $"{ByteSize.FormatRounded(limits > long.MaxValue - limit ? long.MaxValue : limits + limit)}, over the pool's {ByteSize.FormatRounded(pool.LimitsCap)} ({LimitsCapText(pool)})",
                PoolBound.Limits, asked.Name, limit, limits, pool.LimitsCap);
        }
        return null;
    }

    /// <summary>The line of <see cref="Check"/>, or null.</summary>
    public static string? Refusal(Pool pool, IEnumerable<Commitment> others, Commitment asked, string verb) =>
        Check(pool, others, asked, verb)?.Message;

    /// <summary>Null when what guests hold now fits a pool with new settings; else the refusal with the numbers.</summary>
    public static PoolRefusal? CheckSettings(Pool pool, Commitments held)
    {
        if (held.Guarantees > pool.Capacity)
            return new PoolRefusal($"the pool's capacity would be {ByteSize.FormatRounded(pool.Capacity)}, less than the {ByteSize.FormatRounded(held.Guarantees)} " +
                "already guaranteed to guests", PoolBound.Guarantees, null, null, held.Guarantees, pool.Capacity);
        if (held.Limits > pool.LimitsCap)
            return new PoolRefusal($"the guests' limits add up to {ByteSize.FormatRounded(held.Limits)}, more than {ByteSize.FormatRounded(pool.LimitsCap)} ({LimitsCapText(pool)})",
                PoolBound.Limits, null, null, held.Limits, pool.LimitsCap);
        return null;
    }

    private static string LimitsCapText(Pool pool) =>
        $"capacity {ByteSize.FormatRounded(pool.Capacity)} x overcommit {pool.Overcommit.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture)}";
}
