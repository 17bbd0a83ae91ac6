using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using HybridHypervisor;
using HybridHypervisor.Model;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.Properties;

/// <summary>guest.json files, well-formed or not, fed through GuestStore.LoadAll as the agent loads its fleet at start.
/// Each case gets its own state root under a temp directory that is removed afterwards.</summary>
public sealed class GuestConfigProperties : IDisposable
{
    private static readonly Ipv4Subnet Subnet = Ipv4Subnet.Parse("10.88.0.0/24");
    private static readonly int HostCpus = Environment.ProcessorCount;

    private readonly string _root = Directory.CreateTempSubdirectory("vsprops-").FullName;
    private int _case;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    // ---- what to load ----

    /// <summary>A directory name LoadAll will look at: no '/', no NUL, not starting with '.', at most 255 bytes, and
    /// valid UTF-16 (a lone surrogate would come back from the file system as U+FFFD, a different name).</summary>
    private static readonly Gen<string> DirNames = Gen.Frequency(
            (6, Generators.ValidLabel),
            (3, Generators.ValidLabel.SelectMany(l => Generators.Mutate(l, Generators.HostileChar))),
            (1, Generators.ValidLabel.Select(l => l + "\n")), // what a '$'-anchored pattern lets through
            (1, Generators.HostileString))
        .Where(n => n.Length > 0 && !n.Contains('/') && !n.Contains('\0') && !n.StartsWith('.') && Encoding.UTF8.GetByteCount(n) <= 255
            && Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(n)) == n);

    private static string Str(string s) => JsonSerializer.Serialize(s);

    private static readonly Gen<string> AnyToken = Gen.Elements(
        "null", "true", "false", "0", "-1", "1.5", "-0", "1e400", "-1e400", "1E-400", "9223372036854775808", "99999999999999999999999",
        "\"\"", "\"x\"", "\"NaN\"", "\"Infinity\"", "\"-1\"", "\"4M\"", "\"10.88.0.5\"", "[]", "{}", "[null]", "[1,2]", "{\"a\":1}",
        "{\"memoryBytes\":1}", "[[[[[[]]]]]]", "\"\\u0000\"", "\"\\ud800\"", "\"a\\nb\"");

    private static Gen<string> Field(int weightOfValid, Gen<string> valid) =>
        Gen.Frequency((weightOfValid, valid), (1, AnyToken));

    private static readonly Gen<string> Numbers64 = Gen.Frequency(
        (3, Gen.Elements(0L, 1L, (4L << 20) - 1, 4L << 20, (4L << 20) + 1, 256L << 20, -1L, -(4L << 20), long.MaxValue, long.MinValue)
            .Select(v => v.ToString(CultureInfo.InvariantCulture))),
        (2, Gen.Choose(-100, 100_000).Select(v => (v * 1024L).ToString(CultureInfo.InvariantCulture))),
        (1, Gen.Elements("4194304.0", "4194304.5", "4.194304e6", "\"4194304\"", "\"268435456\"", "\"-5\"", "1e19", "0x400000")));

    private static readonly Gen<string> CpuValues = Gen.Frequency(
        (3, Gen.Choose(-4, 4 * HostCpus + 4).Select(q => (q / 4.0).ToString("R", CultureInfo.InvariantCulture))),
        (1, Gen.Elements("0", "-0", "0.0001", "1e-300", "4.9e-324", $"{HostCpus}", $"{HostCpus}.000001", $"{HostCpus + 1}", "1e308",
            "\"0.5\"", "\"NaN\"", "\"Infinity\"", "\"-Infinity\"", "\"1e400\"")));

    private static readonly Gen<string> PidValues = Gen.Frequency(
        (3, Gen.Choose(-3, 5000).Select(v => v.ToString(CultureInfo.InvariantCulture))),
        (1, Gen.Elements("2147483647", "2147483648", "-2147483648", "1.0", "1.5", "\"200\"", "\"0\"", "1e3")));

    private static readonly Gen<string> AddressValues = Gen.Frequency(
        (4, Gen.Choose(0, 255).Select(n => $"10.88.0.{n}")),
        (1, Gen.Choose(0, 255).Select(n => $"10.88.1.{n}")),
        (1, Gen.Elements("10.88.0.010", "10.88.0.0x10", "10.88.0.255", "10.88.0.0", "10.88.0.1", "10.88.0.2 ", "10.88.2", "::1",
            "::ffff:10.88.0.5", "", "10.88.0.256", "167772165")),
        (1, Generators.HostileString));

    private static readonly Gen<string> Limits = Gen.Frequency(
        (5, Generators.Tuple(Optional("memoryBytes", Field(6, Numbers64)), Optional("cpus", Field(6, CpuValues)), Optional("pids", Field(6, PidValues)))
            .Select(t => "{" + string.Join(", ", new[] { t.Item1, t.Item2, t.Item3 }.Where(f => f.Length > 0)) + "}")),
        (1, AnyToken));

    private static readonly Gen<string> Network = Gen.Frequency(
        (5, Optional("ipv4", Field(6, AddressValues.Select(Str))).Select(f => "{" + f + "}")),
        (1, AnyToken));

    private static readonly Gen<string> Commands = Gen.Frequency(
        (3, Gen.Choose(1, 3).SelectMany(n => Gen.ArrayOf(Gen.Elements("/bin/sh", "-c", "sleep 1", "/sbin/init"), n))
            .Select(a => "[" + string.Join(", ", a.Select(Str)) + "]")),
        (1, Gen.Elements("[]", "[\"\"]", "[null]", "[\"/bin/sh\", null]", "[\"a\", 1]", "\"/bin/sh\"")),
        (1, AnyToken));

    /// <summary>"key": value, or nothing (the field left out); keys sometimes in another case, which the Web defaults accept.</summary>
    private static Gen<string> Optional(string key, Gen<string> value) =>
        Gen.Frequency(
            (1, Gen.Constant("")),
            (6, Gen.Zip(Gen.Frequency((8, Gen.Constant(key)), (1, Gen.Constant(char.ToUpperInvariant(key[0]) + key[1..])),
                    (1, Gen.Constant(key.ToUpperInvariant()))), value)
                .Select(t => $"{Str(t.Item1)}: {t.Item2}")));

    /// <summary>A guest.json built field by field: right values, wrong values, values of the wrong type, fields left out,
    /// unknown or repeated fields.</summary>
    private static Gen<string> ConfigText(string dirName) =>
        Generators.Tuple(
            Generators.Tuple(
                Optional("name", Gen.Frequency((8, Gen.Constant(Str(dirName))), (1, DirNames.Select(Str)), (1, AnyToken))),
                Optional("kind", Field(4, Gen.Elements("\"vserver\"", "\"Vserver\"", "\"domain\"", "0", "1", "7", "-1", "\"Nope\""))),
                Optional("image", Field(6, Gen.Elements("\"busybox\"", "\"alpine\"", "\"\"", "\" \"")))),
            Generators.Tuple(Optional("limits", Limits), Optional("network", Network), Optional("restart",
                Field(4, Gen.Elements("\"no\"", "\"onFailure\"", "\"OnFailure\"", "\"on-failure\"", "\"always\"", "2", "42", "\"sometimes\"")))),
            Generators.Tuple(Optional("command", Commands), Optional("created", Field(4, Gen.Elements("\"2025-01-02T03:04:05+00:00\"", "\"yesterday\"", "0"))),
                Optional("phase", Field(4, Gen.Elements("\"ready\"", "\"Creating\"", "\"destroying\"", "3", "\"gone\"")))),
            Gen.Frequency((6, Gen.Constant("")), (1, Gen.Elements("\"extra\": 1", "\"name\": \"other\"", "\"image\": null", "\"limits\": null"))))
        .SelectMany(t =>
        {
            var fields = new[] { t.Item1.Item1, t.Item1.Item2, t.Item1.Item3, t.Item2.Item1, t.Item2.Item2, t.Item2.Item3,
                t.Item3.Item1, t.Item3.Item2, t.Item3.Item3, t.Item4 }.Where(f => f.Length > 0).ToArray();
            return Gen.Shuffle(fields).Select(fs => "{\n  " + string.Join(",\n  ", fs) + "\n}\n");
        });

    /// <summary>A config with every field well-typed, and each limit and the address on or next to the edge of what is
    /// allowed (mostly on the allowed side); about half of these load. Without them few generated configs would get as
    /// far as the rules.</summary>
    private static Gen<string> NearValidConfig(string dirName)
    {
        static Gen<string> Maybe(string key, Gen<string> allowed, Gen<string> refused) =>
            Gen.Frequency((1, Gen.Constant("")), (3, allowed.Select(v => $"{Str(key)}: {v}")), (1, refused.Select(v => $"{Str(key)}: {v}")));
        var h = HostCpus.ToString(CultureInfo.InvariantCulture);
        var limits = Generators.Tuple(
            Maybe("memoryBytes", Gen.Elements("4194304", "4194305", "268435456", "9223372036854775807"), Gen.Elements("4194303", "0", "-1", "4194304.5")),
            Maybe("cpus", Gen.Elements("0.0001", "0.5", "1", h, h + ".0"),
                Gen.Elements("0", "-0.5", h + ".000001", (HostCpus + 1).ToString(CultureInfo.InvariantCulture), "\"NaN\"", "\"Infinity\"")),
            Maybe("pids", Gen.Elements("1", "2", "2147483647"), Gen.Elements("-1", "0")));
        var address = Maybe("ipv4", Gen.Elements("10.88.0.2", "10.88.0.3", "10.88.0.128", "10.88.0.253", "10.88.0.254", "10.88.0.010", "10.88.0.0x2").Select(Str),
            Gen.Elements("10.88.0.0", "10.88.0.1", "10.88.0.255", "10.88.1.2", "10.87.255.254", "10.88.2", "10.88.0.2 ").Select(Str));
        var command = Maybe("command", Gen.Elements("[\"/bin/sh\", \"-c\", \"sleep 1\"]", "[\"/sbin/init\"]"), Gen.Constant("[]"));
        return Generators.Tuple(limits, address, command).Select(t =>
        {
            var limitFields = string.Join(", ", new[] { t.Item1.Item1, t.Item1.Item2, t.Item1.Item3 }.Where(f => f.Length > 0));
            var fields = new[] { $"\"name\": {Str(dirName)}", "\"image\": \"busybox\"", $"\"limits\": {{{limitFields}}}",
                $"\"network\": {{{t.Item2}}}", t.Item3 }.Where(f => f.Length > 0);
            return "{\n  " + string.Join(",\n  ", fields) + "\n}\n";
        });
    }

    /// <summary>Vserver configs as the agent writes them, every field set to something valid (the name is set per case).
    /// A domain's config must keep its "domain" section (see DomainModelTests).</summary>
    private static readonly Gen<GuestConfig> SavedConfigs =
        Generators.Tuple(
                Generators.Tuple(Gen.Choose(2, 254), Gen.Elements<long?>(null, 4L << 20, 256L << 20), Gen.Elements<int?>(null, 1, 200)),
                Gen.Elements<double?>(null, 0.5, 1),
                Gen.Elements<IReadOnlyList<string>?>(null, ["/bin/sh", "-c", "sleep 1"]),
                Generators.Tuple(Gen.Constant(GuestKind.Vserver), Gen.Elements(RestartPolicy.No, RestartPolicy.OnFailure, RestartPolicy.Always),
                    Gen.Choose(0, 1_000_000)))
            .Select(t => new GuestConfig
            {
                Name = "web",
                Kind = t.Item4.Item1,
                Image = "busybox",
                Limits = new GuestLimits { MemoryBytes = t.Item1.Item2, Cpus = t.Item2, Pids = t.Item1.Item3 },
                Network = new GuestNetworkConfig { Ipv4 = $"10.88.0.{t.Item1.Item1}" },
                Restart = t.Item4.Item2,
                Command = t.Item3,
                Created = DateTimeOffset.UnixEpoch.AddMinutes(t.Item4.Item3),
                Phase = GuestPhase.Ready,
                Security = new GuestSecurity { IdMap = new IdMap(1_000_000 + (t.Item1.Item1 * 65536L), 65536) },
            });

    /// <summary>What a well-formed guest.json looks like when the agent writes it.</summary>
    private static Gen<string> SavedConfig(string dirName) =>
        SavedConfigs.Select(c => JsonSerializer.Serialize(c with { Name = dirName }, ConfigJson.Default.GuestConfig));

    private static Gen<byte[]> MutatedBytes(byte[] bytes) =>
        Generators.Tuple(Gen.Choose(0, 5), Gen.Choose(0, bytes.Length), Gen.Choose(0, bytes.Length), Gen.Choose(0, 255)).Select(m =>
        {
            var (op, i, j, b) = m;
            var (lo, hi) = (Math.Min(i, j), Math.Max(i, j));
            return op switch
            {
                0 => bytes[..lo],                                                           // truncated
                1 when bytes.Length > 0 => bytes.Select((x, k) => k == Math.Min(lo, bytes.Length - 1) ? (byte)b : x).ToArray(),
                2 => [.. bytes[..lo], (byte)b, .. bytes[lo..]],                             // a byte inserted
                3 => [.. bytes[..lo], .. bytes[hi..]],                                      // a range cut out
                4 => [.. bytes[..hi], .. bytes[lo..]],                                      // a range repeated
                _ => [0xef, 0xbb, 0xbf, .. bytes],                                         // a UTF-8 byte order mark
            };
        });

    private static readonly Gen<(string Dir, byte[] Content)> Files = Gen.Frequency(
        (1, Gen.Frequency((9, Generators.ValidLabel), (1, Generators.ValidLabel.Select(l => l + "\n")))
            .SelectMany(dir => NearValidConfig(dir).Select(text => (dir, Encoding.UTF8.GetBytes(text))))),
        (2, DirNames.SelectMany(dir => Gen.Frequency(
            (4, ConfigText(dir).Select(Encoding.UTF8.GetBytes)),
            (2, ConfigText(dir).Select(Encoding.UTF8.GetBytes).SelectMany(MutatedBytes)),
            (2, SavedConfig(dir).Select(Encoding.UTF8.GetBytes).SelectMany(b => Gen.Choose(1, 4).SelectMany(n =>
            {
                var g = Gen.Constant(b);
                for (var k = 0; k < n; k++) g = g.SelectMany(MutatedBytes);
                return g;
            }))),
            (1, Gen.Choose(0, 300).SelectMany(n => Gen.ArrayOf(Gen.Choose(0, 255).Select(x => (byte)x), n))),
            (1, Gen.Elements("", "null", "[]", "{}", "\"web\"", "0", "{\"name\":", "{\"name\":\"x\"}}", new string('[', 100))
                .Select(Encoding.UTF8.GetBytes)))
        .Select(content => (dir, content)))));

    // ---- loading ----

    private sealed record Outcome(string Dir, string Path, IReadOnlyList<GuestConfig> Guests, IReadOnlyList<BrokenGuest> Broken, Exception? Crash)
    {
        public string Describe(byte[] content) =>
            $"dir {PropertyRun.Show(Dir)}, guest.json {PropertyRun.Show(Encoding.UTF8.GetString(content))}: "
            + (Crash is not null ? $"threw {Crash.GetType().Name}: {Crash.Message}"
                : $"{Guests.Count} loaded, broken: {string.Join(" | ", Broken.Select(b => b.Problem))}");
    }

    private Outcome Load(string dir, byte[] content)
    {
        var caseRoot = Path.Combine(_root, (++_case).ToString(CultureInfo.InvariantCulture));
        try
        {
            var options = new FleetOptions
            {
                StateRoot = caseRoot, RunRoot = Path.Combine(caseRoot, "run"), BridgeName = "vsprop0", Subnet = Subnet,
                CgroupParent = "vsprops", VsinitPath = "/nonexistent", RecipesRoot = caseRoot,
            };
            var store = new GuestStore(options);
            var guestDir = Path.Combine(options.GuestsRoot, dir);
            Directory.CreateDirectory(guestDir);
            File.WriteAllBytes(Path.Combine(guestDir, "guest.json"), content);
            try
            {
                var (guests, broken) = store.LoadAll(HostCpus);
                return new Outcome(dir, store.PathsFor(dir).Config, guests, broken, null);
            }
            catch (Exception e)
            {
                return new Outcome(dir, store.PathsFor(dir).Config, [], [], e);
            }
        }
        finally
        {
            Directory.Delete(caseRoot, recursive: true);
        }
    }

    // ---- properties ----

    [Fact]
    public void Loading_never_crashes_and_a_broken_config_is_reported_with_its_path_and_position()
    {
        PropertyRun.Check(Prop.ForAll(Files.Arb(), file =>
        {
            var o = Load(file.Dir, file.Content);
            var label = o.Describe(file.Content);
            if (o.Crash is not null) return false.Label(label);
            if (o.Guests.Count + o.Broken.Count != 1) return false.Label(label);
            if (o.Broken.Count == 0) return true.Label(label);
            var problem = o.Broken[0].Problem;
            var locatedIfJson = !problem.Contains("invalid JSON", StringComparison.Ordinal)
                || System.Text.RegularExpressions.Regex.IsMatch(problem, @"invalid JSON at line [0-9]+, byte [0-9]+$");
            return (problem.StartsWith(o.Path, StringComparison.Ordinal) && locatedIfJson).Label(label);
        }));
    }

    [Fact]
    public void A_config_that_loads_satisfies_the_rules()
    {
        PropertyRun.Check(Prop.ForAll(Files.Arb(), file =>
        {
            var o = Load(file.Dir, file.Content);
            var label = o.Describe(file.Content);
            // A crash is the other property's failure; here only what does load is judged.
            if (o.Crash is not null || o.Guests.Count == 0) return true.Label(label);
            var c = o.Guests.Single();
            return (GuestNameProperties.IsDnsLabel(c.Name) && c.Name == file.Dir
                    && !string.IsNullOrEmpty(c.Image)
                    && c.Limits is not null && c.Network is not null
                    && (c.Limits.MemoryBytes is not { } m || m >= 4L << 20)
                    && (c.Limits.Pids is not { } p || p >= 1)
                    && (c.Limits.Cpus is not { } cpus || (!double.IsNaN(cpus) && cpus > 0 && cpus <= HostCpus))
                    && (c.Network.Ipv4 is not { } ip || IsGuestAddress(ip))
                    && c.Command is not { Count: 0 })
                .Label(label);
        }));
    }

    private static readonly string[] OptionalFields = ["kind", "limits", "network", "restart", "command", "created", "phase"];

    [Fact]
    public void Fields_left_out_load_as_the_defaults_the_record_declares()
    {
        var cases = Generators.Tuple(Generators.ValidLabel, SavedConfigs, Gen.SubListOf(OptionalFields).Where(l => l.Count > 0))
            .Select(t => (Dir: t.Item1, Saved: t.Item2 with { Name = t.Item1 }, Left: t.Item3.ToArray()));
        PropertyRun.Check(Prop.ForAll(cases.Arb(), c =>
        {
            var json = System.Text.Json.Nodes.JsonNode.Parse(JsonSerializer.Serialize(c.Saved, ConfigJson.Default.GuestConfig))!.AsObject();
            foreach (var key in c.Left) json.Remove(key);
            var content = Encoding.UTF8.GetBytes(json.ToJsonString());
            var o = Load(c.Dir, content);
            var label = $"left out {string.Join(", ", c.Left)}; " + o.Describe(content);
            if (o.Crash is not null || o.Guests.Count != 1) return false.Label(label);
            var defaults = new GuestConfig { Name = c.Dir, Image = c.Saved.Image };
            var loaded = o.Guests[0];
            bool Left(string key) => c.Left.Contains(key);
            return (loaded.Kind == (Left("kind") ? defaults.Kind : c.Saved.Kind)
                    && loaded.Limits == (Left("limits") ? defaults.Limits : c.Saved.Limits)
                    && loaded.Network == (Left("network") ? defaults.Network : c.Saved.Network)
                    && loaded.Restart == (Left("restart") ? defaults.Restart : c.Saved.Restart)
                    && (Left("command") || c.Saved.Command is null
                        ? loaded.Command is null
                        : loaded.Command is { } command && command.SequenceEqual(c.Saved.Command))
                    && loaded.Created == (Left("created") ? defaults.Created : c.Saved.Created)
                    && loaded.Phase == (Left("phase") ? defaults.Phase : c.Saved.Phase))
                .Label($"{label}; loaded as kind {loaded.Kind}, limits {loaded.Limits?.ToString() ?? "null"}, network "
                    + $"{loaded.Network?.ToString() ?? "null"}, restart {loaded.Restart}, phase {loaded.Phase}");
        }));
    }

    private static readonly Gen<double> AnyCpus = Gen.Frequency(
        (4, Gen.Choose(-8, 1100).Select(q => q / 4.0)),
        (1, Gen.Elements(double.NaN, double.PositiveInfinity, double.NegativeInfinity, -0.0, double.Epsilon, 1e-300, double.MaxValue,
            BitConverter.Int64BitsToDouble(BitConverter.DoubleToInt64Bits(2.0) + 1))));

    private static readonly Gen<(GuestLimits Limits, int HostCpus)> LimitCases =
        Gen.Zip(
                Generators.Tuple(
                    Gen.Frequency((1, Gen.Constant<long?>(null)),
                        (3, Gen.Elements(long.MinValue, -1L, 0L, 1L, (4L << 20) - 1, 4L << 20, (4L << 20) + 1, long.MaxValue).Select(v => (long?)v)),
                        (2, Gen.Choose(0, 1 << 30).Select(v => (long?)v * 8))),
                    Gen.Frequency((1, Gen.Constant<double?>(null)), (4, AnyCpus.Select(c => (double?)c))),
                    Gen.Frequency((1, Gen.Constant<int?>(null)), (3, Gen.Elements(int.MinValue, -1, 0, 1, 2, int.MaxValue).Select(v => (int?)v)),
                        (1, Gen.Choose(-100, 100_000).Select(v => (int?)v)))),
                Gen.Frequency((3, Gen.Choose(1, 8)), (1, Gen.Elements(2, 64, 256))))
            .Select(t => (new GuestLimits { MemoryBytes = t.Item1.Item1, Cpus = t.Item1.Item2, Pids = t.Item1.Item3 }, t.Item2));

    [Fact]
    public void Limits_are_accepted_exactly_when_within_the_rules()
    {
        PropertyRun.Check(Prop.ForAll(LimitCases.Arb(), c =>
        {
            var (limits, hostCpus) = c;
            var error = GuestConfigValidator.LimitsError(limits, hostCpus)?.Message;
            var allowed = (limits.MemoryBytes is not { } m || m >= 4L << 20)
                && (limits.Cpus is not { } cpus || (double.IsFinite(cpus) && cpus >= GuestConfigValidator.MinCpus && cpus <= hostCpus))
                && (limits.Pids is not { } p || p >= 1);
            return (allowed == error is null).Label($"{limits} on {hostCpus} CPUs: {error ?? "accepted"}");
        }));
    }

    /// <summary>What the agent will do with the stored address: IPAddress.Parse it, and it must be a guest address of the subnet.</summary>
    private static bool IsGuestAddress(string text)
    {
        if (!IPAddress.TryParse(text, out var address) || address.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork) return false;
        var a = Ipv4Subnet.ToUInt(address);
        var hostBits = 32 - Subnet.PrefixLength;
        return a >> hostBits == Subnet.Network >> hostBits && a != Subnet.Network && a != Subnet.Network + 1
            && a != (Subnet.Network | (uint)((1L << hostBits) - 1));
    }
}
