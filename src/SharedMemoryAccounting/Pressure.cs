using Vserver.Api;

namespace SharedMemoryAccounting;

/// <summary>A running domain as pressure sees it: its balloon floor, the size the operator set, the size it has now.</summary>
public sealed record BalloonedDomain(string Name, long Guarantee, long Target, long Current);

/// <summary>A running vserver's charge against its guarantee.</summary>
public sealed record VserverCharge(string Name, long Usage, long Guarantee);

/// <summary>What to do now: the balloon size each domain should have; what changed (to log) and how things stand
/// (for `vsctl stat`).</summary>
public sealed record PressureDecision(bool UnderPressure, IReadOnlyDictionary<string, long> Balloons, IReadOnlyList<string> Actions,
    IReadOnlyList<string> Notes);

/// <summary>
/// Memory pressure on the pool. When the pool's free memory falls below the threshold, domains give memory back
/// first (their balloons shrink them toward their guarantees, the largest surplus first, by as much as is missing);
/// vservers over their guarantee are then named (the kernel reclaims from them first: their guarantee is their
/// soft limit / memory.low). Memory goes back to the domains only as far as it fits above the threshold plus a
/// margin, so giving it back cannot itself bring the pressure back.
/// </summary>
public static class Pressure
{
    /// <summary>The margin above the threshold before anything is given back: a quarter of it, at least 64M.</summary>
    public static long Margin(long minFree) => Math.Max(64L << 20, minFree / 4);

    public static PressureDecision Decide(long free, long minFree, IReadOnlyList<BalloonedDomain> domains, IReadOnlyList<VserverCharge> vservers)
    {
        var balloons = domains.ToDictionary(d => d.Name, d => Math.Clamp(d.Current, d.Guarantee, d.Target), StringComparer.Ordinal);
        var notes = new List<string>();
        var actions = new List<string>();
        var under = free < minFree;
        if (under)
        {
            var missing = minFree - free;
            notes.Add($"the pool is under pressure: {ByteSize.FormatRounded(free)} free, below the {ByteSize.FormatRounded(minFree)} threshold");
            foreach (var d in domains.OrderByDescending(d => balloons[d.Name] - d.Guarantee).ThenBy(d => d.Name, StringComparer.Ordinal))
            {
                var surplus = balloons[d.Name] - d.Guarantee;
                if (surplus <= 0) continue;
                // Whatever is missing, at least a page's worth of progress; a balloon cannot go below the guarantee.
                var take = Math.Min(surplus, Math.Max(missing, 1L << 20));
                balloons[d.Name] -= take;
                missing -= take;
                actions.Add($"domain {d.Name} shrunk to {ByteSize.FormatRounded(balloons[d.Name])} (guarantee {ByteSize.FormatRounded(d.Guarantee)}, set {ByteSize.FormatRounded(d.Target)})");
                if (missing <= 0) break;
            }
            foreach (var d in domains.Where(d => balloons[d.Name] < d.Target).OrderBy(d => d.Name, StringComparer.Ordinal))
                notes.Add($"domain {d.Name} held at {ByteSize.FormatRounded(balloons[d.Name])} of {ByteSize.FormatRounded(d.Target)} (guarantee {ByteSize.FormatRounded(d.Guarantee)})");
            foreach (var v in vservers.Where(v => v.Usage > v.Guarantee).OrderByDescending(v => v.Usage - v.Guarantee))
                notes.Add($"vserver {v.Name} is {ByteSize.FormatRounded(v.Usage - v.Guarantee)} over its guarantee (uses {ByteSize.FormatRounded(v.Usage)}, guaranteed {ByteSize.FormatRounded(v.Guarantee)})");
        }
        else
        {
            var room = free - minFree - Margin(minFree);
            foreach (var d in domains.OrderBy(d => d.Name, StringComparer.Ordinal))
            {
                var owed = d.Target - balloons[d.Name];
                if (owed <= 0 || room <= 0) continue;
                var give = Math.Min(owed, room);
                balloons[d.Name] += give;
                room -= give;
                actions.Add($"domain {d.Name} given back {ByteSize.FormatRounded(give)}, now {ByteSize.FormatRounded(balloons[d.Name])} of {ByteSize.FormatRounded(d.Target)}");
            }
            foreach (var d in domains.Where(d => balloons[d.Name] < d.Target).OrderBy(d => d.Name, StringComparer.Ordinal))
                notes.Add($"domain {d.Name} still at {ByteSize.FormatRounded(balloons[d.Name])} of {ByteSize.FormatRounded(d.Target)}: waiting for room above the threshold");
        }
        return new PressureDecision(under, balloons, actions, notes);
    }
}
