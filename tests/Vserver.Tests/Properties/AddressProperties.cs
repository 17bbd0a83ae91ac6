using System.Globalization;
using System.Net;
using FsCheck;
using FsCheck.Fluent;
using HybridHypervisor.Model;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Properties;

/// <summary>Ipv4Subnet and GuestConfigValidator.Ipv4Error against plain integer arithmetic on a strict reading of
/// "A.B.C.D" (four decimal numbers, 0-255).</summary>
public sealed class AddressProperties
{
    private static readonly Gen<uint> AnyUInt =
        Gen.Zip(Gen.Choose(0, 0xffff), Gen.Choose(0, 0xffff)).Select(t => (uint)t.Item1 << 16 | (uint)t.Item2);

    private static string Quad(uint a) => $"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}";

    /// <summary>Four decimal components 0-255 (leading zeros read as decimal, as a person reads them), or null.</summary>
    internal static uint? ReadDecimalQuad(string s)
    {
        var parts = s.Split('.');
        if (parts.Length != 4) return null;
        uint value = 0;
        foreach (var p in parts)
        {
            if (p.Length is 0 or > 3 || !p.All(char.IsAsciiDigit)) return null;
            var n = uint.Parse(p, CultureInfo.InvariantCulture);
            if (n > 255) return null;
            value = value << 8 | n;
        }
        return value;
    }

    /// <summary>One address component: decimal, with leading zeros, octal- or hex-looking, out of range, or junk.</summary>
    private static readonly Gen<string> Component = Gen.Frequency(
        (8, Gen.Choose(0, 255).Select(n => n.ToString(CultureInfo.InvariantCulture))),
        (2, Gen.Choose(0, 255).Select(n => "0" + n.ToString(CultureInfo.InvariantCulture))),
        (1, Gen.Choose(0, 255).Select(n => "00" + n.ToString(CultureInfo.InvariantCulture))),
        (1, Gen.Choose(0, 255).Select(n => "0x" + n.ToString("x", CultureInfo.InvariantCulture))),
        (1, Gen.Choose(256, 70000).Select(n => n.ToString(CultureInfo.InvariantCulture))),
        (1, Gen.Elements("", "-1", "+1", " 1", "1 ", "4294967295", "99999999999", "a", "0X1F", "1e2", "١")));

    private static readonly Gen<string> AddressText = Gen.Frequency(
        (6, Gen.Choose(1, 5).SelectMany(n => Gen.ArrayOf(Component, n)).Select(cs => string.Join('.', cs))),
        (4, AnyUInt.Select(Quad)),
        (2, AnyUInt.Select(Quad).SelectMany(q => Generators.Mutate(q, Generators.HostileChar))),
        (1, Generators.HostileString),
        (1, Gen.Elements("::1", "::ffff:10.88.0.5", "fe80::1%1", "10.88.0.5%eth0", "10.88.0.5:80", "10.88.0.5/24", "localhost",
            "0", "10", "10.88", "10.88.5", "167772165", "0x0a580005", "10.88.0.5.", ".10.88.0.5")));

    private static readonly Gen<string> SubnetText = Gen.Frequency(
        (5, Gen.Zip(AddressText, Gen.Frequency(
                (6, Gen.Choose(-2, 40).Select(p => p.ToString(CultureInfo.InvariantCulture))),
                (1, Gen.Elements("", "024", "+24", " 24", "24 ", "0x18", "2 4", "24/24", "١٦", "99999999999"))))
            .Select(t => t.Item1 + "/" + t.Item2)),
        (3, Gen.Zip(AnyUInt, Gen.Choose(8, 30)).Select(t => $"{Quad(t.Item1)}/{t.Item2}")),
        (1, Generators.HostileString),
        (1, Gen.Elements("", "/", "//", "10.88.0.0/", "/24", "10.88.0.0/24/", "10/8", "167772160/8", "::/64", "::ffff:10.0.0.0/104")));

    /// <summary>A subnet as the agent might be configured: any network, prefix 8..30.</summary>
    private static readonly Gen<Ipv4Subnet> Subnets =
        Gen.Zip(AnyUInt, Gen.Choose(8, 30)).Select(t => Ipv4Subnet.Parse($"{Quad(t.Item1)}/{t.Item2}"));

    [Fact]
    public void Subnet_parsing_throws_only_format_errors_and_accepts_only_what_it_reads_as_written()
    {
        PropertyRun.Check(Prop.ForAll(SubnetText.Arb(), text =>
        {
            Ipv4Subnet subnet;
            try
            {
                subnet = Ipv4Subnet.Parse(text);
            }
            catch (FormatException e)
            {
                return e.Message.Contains("A.B.C.D/N", StringComparison.Ordinal).Label($"refused {PropertyRun.Show(text)}: {e.Message}");
            }
            var parts = text.Split('/');
            var written = parts.Length == 2 ? ReadDecimalQuad(parts[0]) : null;
            var prefix = parts.Length == 2 && parts[1].Length is > 0 and <= 9 && parts[1].All(char.IsAsciiDigit)
                ? int.Parse(parts[1], CultureInfo.InvariantCulture) : -1;
            var mask = prefix is >= 8 and <= 30 ? uint.MaxValue << (32 - prefix) : 0;
            return (written is { } w && prefix is >= 8 and <= 30 && subnet.PrefixLength == prefix && subnet.Network == (w & mask)
                    && (subnet.Network & ~subnet.Mask) == 0 && Ipv4Subnet.Parse(subnet.ToString()) == subnet)
                .Label($"accepted {PropertyRun.Show(text)} as {subnet} (read as written: {(written is { } x ? Quad(x) : "not A.B.C.D")}/{prefix})");
        }));
    }

    [Fact]
    public void Dotted_quads_and_subnets_round_trip()
    {
        PropertyRun.Check(Prop.ForAll(Gen.Zip(AnyUInt, Gen.Choose(8, 30)).Arb(), t =>
        {
            var (a, prefix) = t;
            var address = Ipv4Subnet.ToAddress(a);
            var subnet = Ipv4Subnet.Parse($"{Quad(a)}/{prefix}");
            var network = a >> (32 - prefix) << (32 - prefix);
            return (address.ToString() == Quad(a) && Ipv4Subnet.ToUInt(address) == a && Ipv4Subnet.ToUInt(IPAddress.Parse(Quad(a))) == a
                    && subnet.Network == network && subnet.ToString() == $"{Quad(network)}/{prefix}" && Ipv4Subnet.Parse(subnet.ToString()) == subnet)
                .Label($"{Quad(a)}/{prefix} -> {subnet}");
        }));
    }

    [Fact]
    public void Membership_matches_integer_arithmetic_and_the_first_free_address_is_a_free_guest_address()
    {
        var cases = Generators.Tuple(Subnets, AnyUInt, Gen.Choose(0, 3)).SelectMany(t =>
        {
            var (subnet, x, pick) = t;
            var size = 1L << (32 - subnet.PrefixLength);
            // An address anywhere, or one at the edges of the subnet: network, gateway, broadcast, just outside.
            var probe = pick == 0
                ? Gen.Constant(x)
                : Gen.Elements(-1L, 0L, 1L, 2L, size - 2, size - 1, size, x % size).Select(o => (uint)(subnet.Network + o));
            // Taken addresses near the bottom of the subnet, sometimes all of them (a small subnet is then full).
            var low = (int)Math.Min(size, 48);
            var taken = Gen.Frequency(
                    (3, Gen.Choose(0, 12).SelectMany(n => Gen.ArrayOf(Gen.Choose(0, low - 1), n))),
                    (1, Gen.SubListOf(Enumerable.Range(0, low).ToArray()).Select(l => l.ToArray())),
                    (1, Gen.Constant(Enumerable.Range(0, low).ToArray())))
                .Select(os => os.Select(o => subnet.Network + (uint)o).ToArray());
            return Gen.Zip(probe, taken).Select(p => (subnet, p.Item1, p.Item2));
        });
        PropertyRun.Check(Prop.ForAll(cases.Arb(), c =>
        {
            var (subnet, a, taken) = c;
            var hostBits = 32 - subnet.PrefixLength;
            var inside = a >> hostBits == subnet.Network >> hostBits;
            var broadcast = subnet.Network + (uint)((1L << hostBits) - 1);
            var guest = inside && a != subnet.Network && a != subnet.Network + 1 && a != broadcast;
            var free = subnet.FirstFree(taken.Select(Ipv4Subnet.ToAddress));
            var anyFree = Enumerable.Range(2, (int)Math.Min((1L << hostBits) - 3, 64)).Any(o => !taken.Contains(subnet.Network + (uint)o));
            var freeOk = free is null
                ? !anyFree
                : subnet.IsGuestAddress(free) && !taken.Contains(Ipv4Subnet.ToUInt(free))
                  && Enumerable.Range(2, (int)(Ipv4Subnet.ToUInt(free) - subnet.Network - 2)).All(o => taken.Contains(subnet.Network + (uint)o));
            return (subnet.Contains(Ipv4Subnet.ToAddress(a)) == inside && subnet.IsGuestAddress(Ipv4Subnet.ToAddress(a)) == guest
                    && subnet.Broadcast == broadcast && Ipv4Subnet.ToUInt(subnet.Gateway) == subnet.Network + 1 && freeOk)
                .Label($"{subnet}, address {Quad(a)}, taken [{string.Join(' ', taken.Select(Quad))}], first free {free?.ToString() ?? "none"}");
        }));
    }

    private static readonly Gen<(Ipv4Subnet Subnet, string? Text)> GuestAddressCases =
        Subnets.SelectMany(subnet => Gen.Frequency(
            (4, AddressText.Select(s => (string?)s)),
            // Inside the subnet, at its edges, just outside; sometimes written with leading zeros or as hex.
            (4, AnyUInt.SelectMany(x =>
            {
                var size = 1L << (32 - subnet.PrefixLength);
                return Gen.Elements(-1L, 0L, 1L, 2L, 3L, size - 3, size - 2, size - 1, size, x % size);
            }).SelectMany(offset =>
            {
                var a = (uint)(subnet.Network + offset);
                var parts = new[] { a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255 };
                return Gen.ArrayOf(Gen.Frequency((8, Gen.Constant("{0}")), (1, Gen.Constant("0{0}")), (1, Gen.Constant("0x{0:x}"))), 4)
                    .Select(f => (string?)string.Join('.', parts.Select((p, i) => string.Format(CultureInfo.InvariantCulture, f[i], p))));
            })),
            (1, Gen.Constant<string?>(null)))
            .Select(text => (subnet, text)));

    [Fact]
    public void Guest_address_check_never_throws_and_accepts_only_guest_addresses_of_the_subnet()
    {
        PropertyRun.Check(Prop.ForAll(GuestAddressCases.Arb(), c =>
        {
            var (subnet, text) = c;
            var error = GuestConfigValidator.Ipv4Error(text, subnet)?.Message;
            var label = $"{PropertyRun.Show(text)} in {subnet}: {error ?? "accepted"}";
            if (text is null) return (error is null).Label(label);
            if (error is not null) return true.Label(label);
            // What the agent does with an accepted address: IPAddress.Parse, then ToString (Fleet) or straight to the veth (driver).
            var a = Ipv4Subnet.ToUInt(IPAddress.Parse(text));
            var hostBits = 32 - subnet.PrefixLength;
            var broadcast = subnet.Network + (uint)((1L << hostBits) - 1);
            return (IPAddress.Parse(text).AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork
                    && a >> hostBits == subnet.Network >> hostBits && a != subnet.Network && a != subnet.Network + 1 && a != broadcast)
                .Label(label);
        }));
    }

    [Fact]
    public void An_accepted_guest_address_means_what_it_says_in_decimal()
    {
        PropertyRun.Check(Prop.ForAll(GuestAddressCases.Arb(), c =>
        {
            var (subnet, text) = c;
            if (text is null || GuestConfigValidator.Ipv4Error(text, subnet) is not null) return true.ToProperty();
            var parsed = Ipv4Subnet.ToUInt(IPAddress.Parse(text));
            var written = ReadDecimalQuad(text);
            return (written == parsed)
                .Label($"{PropertyRun.Show(text)} accepted in {subnet} as {Quad(parsed)}; written {(written is { } w ? Quad(w) : "not as four decimals")}");
        }));
    }
}
