using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using HybridHypervisor;
using HybridHypervisor.Model;
using Shouldly;
using Vserver.Isolation.Network;
using Vserver.Isolation.Storage;
using Xunit;

namespace Vserver.Tests.Storage;

/// <summary>
/// The state root turned against the agent, as an attacker with write access to it (or a careless operator) would:
/// FIFOs, sockets, device nodes and directories where files belong, links at every path the agent opens, configs that
/// name paths outside. Each attempt must end in one line naming the path, the guest broken (not loaded, not a hang, not
/// a crash), and nothing outside the root read, written or removed.
/// </summary>
public sealed class StateRootAttackTests : IDisposable
{
    private const string Secret = "Zsecret-root-hash:$6$abcdefgh$";
    private readonly string _root = Directory.CreateTempSubdirectory("vsattack-").FullName;
    private readonly string _outside;
    private readonly string _secretFile;
    private readonly FleetOptions _options;
    private readonly GuestStore _store;

    public StateRootAttackTests()
    {
        _outside = Path.Combine(_root, "outside");
        Directory.CreateDirectory(Path.Combine(_outside, "hostdir"));
        File.WriteAllText(Path.Combine(_outside, "hostdir", "keep"), "host file\n");
        _secretFile = Path.Combine(_outside, "shadow");
        File.WriteAllText(_secretFile, Secret + "\n");
        _options = new FleetOptions
        {
            StateRoot = Path.Combine(_root, "state"), RunRoot = Path.Combine(_root, "run"), BridgeName = "vsx",
            Subnet = Ipv4Subnet.Parse("10.9.0.0/24"), CgroupParent = "x", VsinitPath = "/nonexistent", RecipesRoot = _root,
        };
        Directory.CreateDirectory(_options.GuestsRoot);
        _store = new GuestStore(_options);
    }

    private static readonly System.Collections.Concurrent.ConcurrentBag<Socket> Sockets = [];

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static string ValidConfig(string name, string image = "busybox", string extra = "") =>
        "{\"name\": \"" + name + "\", \"image\": \"" + image + "\", \"network\": {\"ipv4\": \"10.9.0.5\"}, "
        + "\"security\": {\"idMap\": {\"hostBase\": 1000000, \"count\": 65536}}" + extra + "}";

    private string GuestDir(string name)
    {
        var dir = Path.Combine(_options.GuestsRoot, name);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>A digest of everything outside the state root the tests planted: it must never change.</summary>
    private string OutsideDigest()
    {
        var parts = Directory.EnumerateFileSystemEntries(_outside, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(p => p + ":" + (File.Exists(p) ? Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(p))) : "dir"));
        return string.Join("|", parts);
    }

    /// <summary>LoadAll, which must come back within seconds whatever is in the root (a FIFO once blocked it forever).</summary>
    private BrokenGuest LoadBroken(string name)
    {
        var load = Task.Run(() => _store.LoadAll(2));
        load.Wait(TimeSpan.FromSeconds(10)).ShouldBeTrue("LoadAll hung");
        var (guests, broken) = load.Result;
        guests.ShouldNotContain(g => g.Name == name);
        var b = broken.ShouldHaveSingleItem();
        b.Name.ShouldBe(name);
        b.Problem.ShouldNotContain('\n');
        b.Problem.ShouldNotContain(Secret[..6]);
        return b;
    }

    private static void Run(string program, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(program, args) { RedirectStandardError = true })!;
        p.WaitForExit();
        p.ExitCode.ShouldBe(0, p.StandardError.ReadToEnd());
    }

    /// <summary>Something at <paramref name="path"/> that is not a regular file; the name says what.</summary>
    private static string Plant(string kind, string path)
    {
        switch (kind)
        {
            case "fifo": Run("mkfifo", path); return "a FIFO";
            case "socket":
                // Left open: closing a bound socket makes .NET remove its file.
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                s.Bind(new UnixDomainSocketEndPoint(path));
                Sockets.Add(s);
                return "a unix socket";
            case "device": Run("mknod", path, "c", "1", "3"); return "a character device"; // /dev/null's numbers
            default: Directory.CreateDirectory(path); return "a directory";
        }
    }

    public static TheoryData<string, bool> Kinds()
    {
        var data = new TheoryData<string, bool>();
        foreach (var kind in new[] { "fifo", "socket", "device", "directory" })
        foreach (var openat2 in new[] { true, false })
            data.Add(kind, openat2);
        return data;
    }

    private static T WithResolution<T>(bool openat2, Func<T> body)
    {
        StateFile.UseOpenat2 = openat2;
        try
        {
            return body();
        }
        finally
        {
            StateFile.UseOpenat2 = true;
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void A_config_that_is_not_a_regular_file_makes_its_guest_broken_in_one_line(string kind, bool openat2)
    {
        if (kind == "device" && !Environment.IsPrivilegedProcess) return; // mknod needs root
        var path = Path.Combine(GuestDir("g1"), "guest.json");
        var what = Plant(kind, path);
        var before = OutsideDigest();
        var b = WithResolution(openat2, () => LoadBroken("g1"));
        b.Problem.ShouldBe($"{path} is {what}, not a regular file");
        OutsideDigest().ShouldBe(before);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void An_intent_journal_that_is_not_a_regular_file_makes_its_guest_broken(string kind, bool openat2)
    {
        if (kind == "device" && !Environment.IsPrivilegedProcess) return;
        var dir = GuestDir("g2");
        File.WriteAllText(Path.Combine(dir, "guest.json"), ValidConfig("g2"));
        var what = Plant(kind, Path.Combine(dir, "intent.json"));
        var b = WithResolution(openat2, () => LoadBroken("g2"));
        b.Problem.ShouldBe($"{Path.Combine(dir, "intent.json")} is {what}, not a regular file");
        _store.ReadIntent("g2").ShouldBeNull();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_config_linked_to_a_secret_is_not_read_and_its_content_never_shown(bool openat2)
    {
        var path = Path.Combine(GuestDir("g3"), "guest.json");
        File.CreateSymbolicLink(path, _secretFile);
        var b = WithResolution(openat2, () => LoadBroken("g3"));
        b.Problem.ShouldStartWith($"{path} is a symbolic link, not a regular file");
        b.Problem.ShouldNotContain("'Z'");
        // What is still read of a broken config for its claims goes through the same door.
        _store.TryReadClaims("g3").Address.ShouldBeNull();
    }

    [Fact]
    public void A_config_that_does_not_parse_is_located_but_never_quoted()
    {
        var path = Path.Combine(GuestDir("g4"), "guest.json");
        File.WriteAllText(path, Secret + "\n");
        var b = LoadBroken("g4");
        b.Problem.ShouldBe($"{path}: invalid JSON at line 1, byte 1");
        File.WriteAllText(path, "{\"name\": \"g4\",\n \"image\": Zsecret}");
        LoadBroken("g4").Problem.ShouldBe($"{path}: invalid JSON at line 2, byte 11");
    }

    [Theory]
    [InlineData("upper", "directory")]
    [InlineData("work", "directory")]
    [InlineData("rootfs", "directory")]
    [InlineData("layer", "directory")]
    [InlineData("layer.ext4", "regular file")]
    [InlineData("disk.qcow2", "regular file")]
    [InlineData("disk.ext4", "regular file")]
    [InlineData("console.log", "regular file")]
    [InlineData("intent.json", "regular file")]
    public void A_link_at_any_path_the_agent_mounts_or_opens_makes_the_guest_broken(string entry, string expected)
    {
        var dir = GuestDir("g5");
        File.WriteAllText(Path.Combine(dir, "guest.json"), ValidConfig("g5"));
        var target = expected == "directory" ? Path.Combine(_outside, "hostdir") : _secretFile;
        File.CreateSymbolicLink(Path.Combine(dir, entry), target);
        var before = OutsideDigest();
        var b = LoadBroken("g5");
        b.Problem.ShouldStartWith($"{Path.Combine(dir, entry)} is a symbolic link, not a {expected}");
        // And a start that raced the load is refused before anything is mounted or opened.
        var refusal = Should.Throw<FleetException>(() => _store.PathsFor("g5").RequireLayout("g5"));
        refusal.Message.ShouldBe($"guest 'g5' is broken: {b.Problem}");
        OutsideDigest().ShouldBe(before);
    }

    [Fact]
    public void A_guest_directory_linked_to_a_host_directory_is_broken_and_never_emptied()
    {
        var empty = Path.Combine(_outside, "empty");
        Directory.CreateDirectory(empty);
        File.CreateSymbolicLink(Path.Combine(_options.GuestsRoot, "g6"), empty);
        var b = LoadBroken("g6");
        b.Problem.ShouldBe($"{Path.Combine(_options.GuestsRoot, "g6")} is a symbolic link, not a directory");
        // An empty directory once looked like a create that died, and was removed with whatever the link led to.
        Directory.Exists(empty).ShouldBeTrue();
        _store.IsStillborn("g6").ShouldBeFalse();
        Should.Throw<StateFileException>(() => _store.Save(new GuestConfig { Name = "g6", Image = "busybox" }))
            .Message.ShouldContain("symbolic link");
        Directory.EnumerateFileSystemEntries(empty).ShouldBeEmpty();
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_link_on_the_way_to_a_state_file_is_not_followed(bool openat2)
    {
        // guests/ itself replaced by a link to a tree that looks like one.
        var fake = Path.Combine(_outside, "guests");
        Directory.CreateDirectory(Path.Combine(fake, "g7"));
        File.WriteAllText(Path.Combine(fake, "g7", "guest.json"), ValidConfig("g7"));
        Directory.Delete(_options.GuestsRoot);
        File.CreateSymbolicLink(_options.GuestsRoot, fake);
        var b = WithResolution(openat2, () => LoadBroken("g7"));
        b.Problem.ShouldContain("ELOOP");
        b.Problem.ShouldContain($"nothing under {_options.StateRoot} is followed");
    }

    [Theory]
    [InlineData("../../../../etc", "image")]
    [InlineData("busybox/../../../etc", "image")]
    [InlineData("", "no image given")]
    public void A_config_whose_image_is_a_path_is_broken(string image, string expected)
    {
        File.WriteAllText(Path.Combine(GuestDir("g8"), "guest.json"), ValidConfig("g8", image));
        var b = LoadBroken("g8");
        b.Problem.ShouldStartWith(Path.Combine(_options.GuestsRoot, "g8", "guest.json") + ": ");
        b.Problem.ShouldContain(expected);
    }

    [Theory]
    [InlineData(""", "kind": "domain", "domain": {"kernel": "../../boot", "vcpus": 1, "maxMemoryBytes": 268435456}""", "kernel")]
    [InlineData(""", "limits": {"memoryBytes": 1024}""", "below the minimum")]
    [InlineData(""", "limits": {"pids": 0}""", "pids")]
    public void A_config_breaking_a_create_rule_is_broken(string extra, string expected)
    {
        File.WriteAllText(Path.Combine(GuestDir("g9"), "guest.json"), ValidConfig("g9", extra: extra));
        LoadBroken("g9").Problem.ShouldContain(expected);
    }

    [Fact]
    public void A_config_with_an_address_outside_the_subnet_an_id_map_outside_the_range_or_a_bad_mac_is_broken()
    {
        var path = Path.Combine(GuestDir("g10"), "guest.json");
        File.WriteAllText(path, ValidConfig("g10").Replace("10.9.0.5", "192.168.1.5", StringComparison.Ordinal));
        LoadBroken("g10").Problem.ShouldContain("outside this host's guest subnet");
        File.WriteAllText(path, ValidConfig("g10").Replace("1000000", "65536", StringComparison.Ordinal));
        LoadBroken("g10").Problem.ShouldBe($"{path}: id map 65536+65536 is outside this host's id range 1000000:1000000000 (VSERVER_IDMAP)");
        File.WriteAllText(path, ValidConfig("g10").Replace("\"ipv4\"", "\"mac\": \"eth0; reboot\", \"ipv4\"", StringComparison.Ordinal));
        LoadBroken("g10").Problem.ShouldContain("invalid MAC address");
    }

    [Fact]
    public void A_good_config_still_loads()
    {
        var dir = GuestDir("ok");
        File.WriteAllText(Path.Combine(dir, "guest.json"), ValidConfig("ok"));
        Directory.CreateDirectory(Path.Combine(dir, "upper"));
        var (guests, broken) = _store.LoadAll(2);
        broken.ShouldBeEmpty();
        guests.ShouldHaveSingleItem().Image.ShouldBe("busybox");
    }

    [Fact]
    public void Writes_go_through_no_link_planted_at_the_temp_name_the_target_or_the_directory()
    {
        var dir = GuestDir("w1");
        var before = OutsideDigest();
        // A link at the temp name AtomicFile will use (same pid and thread id), at the target, and a linked directory.
        var temp = Path.Combine(dir, $".guest.json.tmp-{Environment.ProcessId}-{Environment.CurrentManagedThreadId}");
        File.CreateSymbolicLink(temp, _secretFile);
        File.CreateSymbolicLink(Path.Combine(dir, "guest.json"), _secretFile);
        _store.Save(new GuestConfig { Name = "w1", Image = "busybox" });
        new FileInfo(Path.Combine(dir, "guest.json")).LinkTarget.ShouldBeNull();
        File.Exists(temp).ShouldBeFalse();
        File.CreateSymbolicLink(Path.Combine(_options.GuestsRoot, "w2"), Path.Combine(_outside, "hostdir"));
        Should.Throw<StateFileException>(() => _store.BeginIntent("w2", new GuestIntent { Operation = "promote" }))
            .Message.ShouldBe($"{Path.Combine(_options.GuestsRoot, "w2")} is a symbolic link, not a directory; nothing under {_options.StateRoot} is followed");
        OutsideDigest().ShouldBe(before);
    }

    [Fact]
    public void A_state_file_too_large_to_be_one_or_outside_the_root_is_refused()
    {
        var big = Path.Combine(GuestDir("g11"), "guest.json");
        using (var f = File.Create(big)) f.SetLength(StateFile.MaxBytes + 1L);
        LoadBroken("g11").Problem.ShouldBe($"{big} is {StateFile.MaxBytes + 1L} bytes, more than any state file holds (4M)");
        Should.Throw<StateFileException>(() => StateFile.TryReadAllText(_options.StateRoot, _secretFile))
            .Message.ShouldBe($"{_secretFile} is outside {_options.StateRoot}");
    }

    [Fact]
    public void A_directory_link_in_the_way_of_a_removal_removes_the_link_only()
    {
        var link = Path.Combine(_options.StateRoot, "doomed");
        File.CreateSymbolicLink(link, Path.Combine(_outside, "hostdir"));
        var before = OutsideDigest();
        AtomicFile.DeleteDirectory(link, "destroying");
        Path.Exists(link).ShouldBeFalse();
        OutsideDigest().ShouldBe(before);
    }
}
