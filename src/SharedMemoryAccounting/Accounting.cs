namespace SharedMemoryAccounting;

/// <summary>One guest to account: its processes, and for a vserver what its cgroup charges.</summary>
/// <param name="Pids">A vserver's processes (its cgroup), or a domain's QEMU process.</param>
/// <param name="Cgroup">A vserver's memory cgroup; null for a domain.</param>
public sealed record GuestSample(string Name, IReadOnlyList<int> Pids, CgroupMemory? Cgroup);

/// <summary>A guest's memory, measured (bytes).</summary>
/// <param name="Fair">Its processes' PSS plus page cache charged to it that nobody maps: shared pages split among all who map them.</param>
/// <param name="Private">Anonymous memory plus its own unmapped cache (a domain: QEMU's private pages).</param>
/// <param name="Shared">Resident pages its processes share with other processes.</param>
/// <param name="Charged">What its cgroup charges (first toucher pays for page cache); null for a domain.</param>
public sealed record GuestUsage(string Name, int Processes, long Rss, long Fair, long Private, long Shared, long Swap, long? Charged);

/// <summary>The host's memory split between guests and the host itself (bytes).</summary>
/// <param name="Used">MemTotal - MemFree (the mean of the readings before and after walking the processes).</param>
/// <param name="HostOwn">The host's own use, measured: PSS of processes in no guest, page cache no guest is charged
/// for, and kernel memory (slab, stacks, page tables, per-cpu, vmalloc).</param>
/// <param name="Tolerance">How far <see cref="Unaccounted"/> may stray: a fixed allowance for memory no counter shows
/// (driver and network buffers), 0.5% of the total, and however much <see cref="Used"/> moved during the walk.</param>
public sealed record PoolUsage(long Total, long Used, long Guests, long HostOwn, long Tolerance, long SharedSavings,
    IReadOnlyList<GuestUsage> PerGuest)
{
    public const long FixedAllowance = 128L << 20;

    /// <summary>What no reading explains; within ±<see cref="Tolerance"/> when the accounting adds up.</summary>
    public long Unaccounted => Used - Guests - HostOwn;

    public bool AddsUp => Math.Abs(Unaccounted) <= Tolerance;
}

/// <summary>
/// Fair accounting of the shared pool. The kernel charges a page of page cache to the first cgroup that touches it,
/// so ten vservers running the same binary from one image layer would see it all charged to one of them. Here each
/// guest gets its processes' proportional set size (a page mapped by n processes counts 1/n to each), plus the page
/// cache its cgroup is charged for that no process maps (which is nobody else's).
/// </summary>
public static class Accounting
{
    public static PoolUsage Measure(IMemoryReader reader, IReadOnlyList<GuestSample> guests)
    {
        var before = reader.ReadMemInfo();
        var inGuests = new HashSet<int>();
        var perGuest = new List<GuestUsage>(guests.Count);
        long guestsRss = 0, guestsPss = 0;
        foreach (var guest in guests)
        {
            var sum = SmapsRollup.Zero;
            var processes = 0;
            foreach (var pid in guest.Pids)
            {
                if (!inGuests.Add(pid)) continue;
                sum = sum.Add(reader.ReadRollup(pid));
                processes++;
            }
            guestsRss += sum.Rss;
            guestsPss += sum.Pss;
            var cg = guest.Cgroup;
            var ownCache = cg?.UnmappedCache ?? 0;
            perGuest.Add(new GuestUsage(guest.Name, processes, sum.Rss, sum.Pss + ownCache,
                cg is null ? sum.Private : cg.Anon + ownCache, sum.Shared, cg?.Swap ?? sum.Swap, cg?.Usage));
        }
        long hostPss = 0;
        foreach (var pid in reader.ProcessIds())
        {
            if (!inGuests.Contains(pid)) hostPss += reader.ReadRollup(pid).Pss;
        }
        var after = reader.ReadMemInfo();

        long Mean(Func<MemInfo, long> f) => (f(before) + f(after)) / 2;
        var used = Mean(m => m.UsedBytes);
        var guestsCache = guests.Sum(g => g.Cgroup?.UnmappedCache ?? 0);
        var hostCache = Math.Max(0, Mean(m => m.UnmappedCacheBytes) - guestsCache);
        var hostOwn = hostPss + hostCache + Mean(m => m.KernelBytes) + Mean(m => m["SwapCached"]);
        var drift = Math.Abs(after.UsedBytes - before.UsedBytes);
        var tolerance = PoolUsage.FixedAllowance + before.TotalBytes / 200 + drift;
        // Sharing saves what the guests' processes would use if none of their pages were shared: RSS - PSS.
        return new PoolUsage(before.TotalBytes, used, perGuest.Sum(g => g.Fair), hostOwn, tolerance, guestsRss - guestsPss, perGuest);
    }
}
