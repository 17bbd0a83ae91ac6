using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Vserver.Isolation.Network;

/// <summary>An IPv4 subnet such as 10.88.0.0/24: the bridge takes the first host address, guests the rest.</summary>
public sealed record Ipv4Subnet(uint Network, int PrefixLength)
{
    /// <summary>A subnet as written (A.B.C.D/N, the network's own address); guest subnets take prefixes 8 to 30, routed
    /// ranges (<paramref name="minPrefix"/>, <paramref name="maxPrefix"/>) down to a single /32.</summary>
    public static Ipv4Subnet Parse(string cidr, int minPrefix = 8, int maxPrefix = 30)
    {
        var parts = cidr.Split('/');
        // Only A.B.C.D as written: IPAddress.TryParse also takes "10.88" (10.0.0.88), "167772160", hex and octal
        // ("010" is 8), which would quietly give another subnet than the one the operator meant.
        if (parts.Length != 2 || !IPAddress.TryParse(parts[0], out var address) || address.AddressFamily != AddressFamily.InterNetwork
            || address.ToString() != parts[0]
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var prefix) || prefix < minPrefix || prefix > maxPrefix)
            throw new FormatException($"invalid subnet '{cidr}': write it as A.B.C.D/N with N between {minPrefix} and {maxPrefix}, e.g. 10.88.0.0/24");
        var mask = prefix == 0 ? 0u : uint.MaxValue << (32 - prefix);
        return new Ipv4Subnet(ToUInt(address) & mask, prefix);
    }

    public uint Mask => PrefixLength == 0 ? 0u : uint.MaxValue << (32 - PrefixLength);
    public uint Broadcast => Network | ~Mask;
    public IPAddress Gateway => ToAddress(Network + 1);
    public IPAddress NetworkAddress => ToAddress(Network);

    public bool Contains(IPAddress address) => (ToUInt(address) & Mask) == Network;

    /// <summary>True for an address a guest may have: inside, and neither network, gateway nor broadcast.</summary>
    public bool IsGuestAddress(IPAddress address)
    {
        var a = ToUInt(address);
        return (a & Mask) == Network && a != Network && a != Network + 1 && a != Broadcast;
    }

    /// <summary>The lowest guest address not in <paramref name="taken"/>, or null when the subnet is full.</summary>
    public IPAddress? FirstFree(IEnumerable<IPAddress> taken)
    {
        var used = taken.Select(ToUInt).ToHashSet();
        for (var a = Network + 2; a < Broadcast; a++)
            if (!used.Contains(a)) return ToAddress(a);
        return null;
    }

    public override string ToString() => $"{NetworkAddress}/{PrefixLength}";

    public static uint ToUInt(IPAddress address)
    {
        var b = address.GetAddressBytes();
        return (uint)(b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]);
    }

    public static IPAddress ToAddress(uint value) =>
        new([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]);
}
