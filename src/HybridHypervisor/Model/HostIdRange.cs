using System.Globalization;

namespace HybridHypervisor.Model;

/// <summary>
/// The host ids the agent hands to unprivileged guests (VSERVER_IDMAP=START:COUNT), one slot of 65536 per guest so
/// that every id a system image uses (0..65535, nobody included) exists inside, as Incus and LXC give.
/// </summary>
public sealed record HostIdRange(long Start, long Count)
{
    public const long SlotSize = 65536;
    /// <summary>(uid_t)-1 means "no id" to the kernel; nothing may map to it.</summary>
    public const long LastUsableId = uint.MaxValue - 1;

    public static readonly HostIdRange Default = new(1_000_000, 1_000_000_000);

    public int Slots => (int)(Count / SlotSize);

    public static HostIdRange Parse(string text)
    {
        var parts = text.Split(':');
        if (parts.Length != 2
            || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var start)
            || !long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var count))
            throw new FormatException($"invalid VSERVER_IDMAP '{text}': write START:COUNT, e.g. 1000000:1000000000");
        if (start < SlotSize)
            throw new FormatException($"invalid VSERVER_IDMAP '{text}': START must be at least {SlotSize}, above the host's own users");
        if (count < SlotSize || start + count - 1 > LastUsableId)
            throw new FormatException(
                $"invalid VSERVER_IDMAP '{text}': COUNT must hold at least one guest ({SlotSize} ids) and end by {LastUsableId}");
        return new HostIdRange(start, count);
    }

    /// <summary>Whether every id of <paramref name="map"/> is in this range.</summary>
    public bool Holds(IdMap map) => map.HostBase >= Start && map.HostEnd <= Start + Count;

    /// <summary>The first slot no existing guest's map overlaps.</summary>
    public IdMap Allocate(IEnumerable<IdMap> taken)
    {
        var used = taken.ToList();
        for (var slot = 0; slot < Slots; slot++)
        {
            var candidate = new IdMap(Start + slot * SlotSize, SlotSize);
            if (!used.Any(u => u.HostBase < candidate.HostEnd && candidate.HostBase < u.HostEnd)) return candidate;
        }
        throw new InvalidOperationException(
            $"all {Slots} id ranges of {Start}:{Count} are taken by guests; destroy one or widen VSERVER_IDMAP");
    }

    public override string ToString() => $"{Start}:{Count}";
}
