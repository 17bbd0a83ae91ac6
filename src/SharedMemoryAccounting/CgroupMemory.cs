namespace SharedMemoryAccounting;

/// <summary>
/// What a guest's memory cgroup charges it, in bytes, the same on cgroup v1 and v2. The kernel charges a page of
/// page cache to the first cgroup that touched it, so <see cref="Cache"/> is not a fair measure of shared files.
/// </summary>
public sealed record CgroupMemory
{
    /// <summary>Everything charged (v1 memory.usage_in_bytes, v2 memory.current).</summary>
    public long Usage { get; init; }
    public long? Limit { get; init; }
    /// <summary>Anonymous memory (v1 rss, v2 anon): private to the guest.</summary>
    public long Anon { get; init; }
    /// <summary>Page cache charged here, shmem/tmpfs included (v1 cache, v2 file).</summary>
    public long Cache { get; init; }
    /// <summary>Charged page cache that some process maps (v1 mapped_file, v2 file_mapped).</summary>
    public long CacheMapped { get; init; }
    public long Shmem { get; init; }
    public long Swap { get; init; }
    public long ActiveAnon { get; init; }
    public long InactiveAnon { get; init; }
    public long ActiveFile { get; init; }
    public long InactiveFile { get; init; }
    public long Unevictable { get; init; }
    public long Dirty { get; init; }
    public long Writeback { get; init; }
    public long SlabReclaimable { get; init; }
    public long SlabUnreclaimable { get; init; }

    /// <summary>Charged page cache that nobody maps: it shows in no process's PSS, so it is the guest's own.</summary>
    public long UnmappedCache => Math.Max(0, Cache - CacheMapped);

    /// <summary>From a memory.stat breakdown as <c>ICgroup.ReadMemoryStat</c> gives it (v1 keys without total_, or v2 keys).</summary>
    public static CgroupMemory FromStat(IReadOnlyDictionary<string, long> stat, long usage, long? limit)
    {
        long Get(string key) => stat.GetValueOrDefault(key);
        var v2 = stat.ContainsKey("anon") || stat.ContainsKey("file");
        return new CgroupMemory
        {
            Usage = usage,
            Limit = limit,
            Anon = v2 ? Get("anon") : Get("rss"),
            Cache = v2 ? Get("file") : Get("cache"),
            CacheMapped = v2 ? Get("file_mapped") : Get("mapped_file"),
            Shmem = Get("shmem"),
            Swap = Get("swap"),
            ActiveAnon = Get("active_anon"),
            InactiveAnon = Get("inactive_anon"),
            ActiveFile = Get("active_file"),
            InactiveFile = Get("inactive_file"),
            Unevictable = Get("unevictable"),
            Dirty = v2 ? Get("file_dirty") : Get("dirty"),
            Writeback = v2 ? Get("file_writeback") : Get("writeback"),
            SlabReclaimable = Get("slab_reclaimable"),
            SlabUnreclaimable = Get("slab_unreclaimable"),
        };
    }
}
