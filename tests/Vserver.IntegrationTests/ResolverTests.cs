using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Vserver.Isolation.Network;

namespace Vserver.IntegrationTests;

/// <summary>
/// The guests' resolver for real: a dnsmasq on a bridge of the test's own, forwarding to an "outside" resolver, a second
/// dnsmasq in a network namespace joined to the host by a veth, which answers outside.test and logs every query it gets.
/// Queries go from the host to the bridge address, as a guest's would. Each test has its own bridge, subnet, namespace,
/// addresses and run directory, and removes them (and every process naming its directory) even when it fails.
/// </summary>
public sealed class ResolverTests : IAsyncLifetime
{
    private const int NoError = 0, NxDomain = 3;
    private static readonly IPAddress OutsideAnswer = IPAddress.Parse("198.18.99.1");

    private readonly string _id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(3));
    private readonly string _root = Directory.CreateTempSubdirectory("vsres-").FullName;
    private readonly ConcurrentQueue<string> _log = new();
    private readonly StringBuilder _upstreamLog = new();
    private readonly List<Resolver> _resolvers = [];
    private Process? _upstream;
    private string _subnetPrefix = "";
    private string _linkPrefix = "";

    private string Bridge => $"vsr{_id}";
    private string Namespace => $"vsres{_id}";
    private string HostSide => $"vr{_id}h";
    private IPAddress Gateway => IPAddress.Parse($"{_subnetPrefix}.1");
    private IPAddress Guest(int host) => IPAddress.Parse($"{_subnetPrefix}.{host}");
    private string HostAddress => $"{_linkPrefix[.._linkPrefix.LastIndexOf('.')]}.{LastOctet(_linkPrefix) + 1}";
    private IPAddress OutsideAddress => IPAddress.Parse($"{_linkPrefix[.._linkPrefix.LastIndexOf('.')]}.{LastOctet(_linkPrefix) + 2}");
    private string Dir => Path.Combine(_root, "run", "dns");

    private ResolverConfig Config(string domain = "vserver") => new(Bridge, Gateway, domain, [OutsideAddress], Dir);

    public async ValueTask InitializeAsync()
    {
        try
        {
            await SetUpAsync();
        }
        catch
        {
            await DisposeAsync();
            throw;
        }
    }

    private async Task SetUpAsync()
    {
        // dnsmasq reads its hosts directory as user dnsmasq: the temp dir must let others through (0711), as TestHost's does.
        File.SetUnixFileMode(_root, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);
        while (true)
        {
            _subnetPrefix = $"10.{RandomNumberGenerator.GetInt32(200, 250)}.{RandomNumberGenerator.GetInt32(0, 256)}";
            if (Unused($"{_subnetPrefix}.0/24")) break;
        }
        while (true)
        {
            _linkPrefix = $"198.18.{RandomNumberGenerator.GetInt32(0, 256)}.{RandomNumberGenerator.GetInt32(0, 64) * 4}";
            if (Unused($"{_linkPrefix}/30")) break;
        }
        TestHost.Run("ip", "link", "add", Bridge, "type", "bridge").ShouldSucceed();
        TestHost.Run("ip", "addr", "add", $"{Gateway}/24", "dev", Bridge).ShouldSucceed();
        TestHost.Run("ip", "link", "set", Bridge, "up").ShouldSucceed();

        TestHost.Run("ip", "netns", "add", Namespace).ShouldSucceed();
        TestHost.Run("ip", "link", "add", HostSide, "type", "veth", "peer", "name", "eth0", "netns", Namespace).ShouldSucceed();
        TestHost.Run("ip", "addr", "add", $"{HostAddress}/30", "dev", HostSide).ShouldSucceed();
        TestHost.Run("ip", "link", "set", HostSide, "up").ShouldSucceed();
        foreach (var args in new[] { new[] { "addr", "add", $"{OutsideAddress}/30", "dev", "eth0" }, ["link", "set", "eth0", "up"], ["link", "set", "lo", "up"] })
            TestHost.Run("nsenter", [$"--net=/run/netns/{Namespace}", "ip", .. args]).ShouldSucceed();

        // The outside's resolver: in the foreground (a child of this test, ended by its pid), no pid file, every query logged.
        var psi = new ProcessStartInfo("nsenter", [$"--net=/run/netns/{Namespace}", "/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
            "--pid-file=", "--log-facility=-", "--log-queries", "--no-resolv", "--no-hosts", "--bind-interfaces",
            $"--listen-address={OutsideAddress}", $"--address=/outside.test/{OutsideAnswer}", "--user=dnsmasq", "--group=nogroup"])
        {
            UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true,
        };
        _upstream = Process.Start(psi)!;
        _upstream.ErrorDataReceived += (_, e) => { lock (_upstreamLog) _upstreamLog.AppendLine(e.Data); };
        _upstream.OutputDataReceived += (_, e) => { lock (_upstreamLog) _upstreamLog.AppendLine(e.Data); };
        _upstream.BeginErrorReadLine();
        _upstream.BeginOutputReadLine();
        var ready = await PollAsync(OutsideAddress, "outside.test", a => a.Addresses.Contains(OutsideAnswer), TimeSpan.FromSeconds(10));
        ready.ShouldNotBeNull($"the outside resolver did not answer:\n{UpstreamLog}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var resolver in _resolvers) resolver.Dispose();
        // Every dnsmasq started on this test's directory, by pid (a test that failed may have left one behind).
        foreach (var pid in TestHost.ProcessesNaming(_root))
        {
            try
            {
                using var process = Process.GetProcessById(pid);
                process.Kill();
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(5));
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
            {
            }
        }
        if (_upstream is { HasExited: false }) _upstream.Kill();
        _upstream?.Dispose();
        _upstream = null;
        // The namespace takes its end of the veth with it; the host's end goes with its peer.
        TestHost.Run("ip", "netns", "del", Namespace);
        TestHost.Run("ip", "link", "del", Bridge);
        if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true);
    }

    [Fact]
    public async Task Guests_names_resolve_follow_each_change_without_a_restart_and_other_names_go_upstream()
    {
        var resolver = Track(new Resolver(Config(), _log.Enqueue));
        resolver.WriteHosts([("db1", Guest(2)), ("web1", Guest(3))]);
        var clock = Stopwatch.StartNew();
        resolver.Start();
        var startMs = clock.Elapsed.TotalMilliseconds;
        var pid = resolver.Pid.ShouldNotBeNull();

        (await QueryAsync(Gateway, "db1.vserver")).ShouldBe(new Answer(NoError, [Guest(2)], 0), "a guest's name, TTL 0 so no cache keeps it");
        (await QueryAsync(Gateway, "web1")).Addresses.ShouldBe([Guest(3)], "the bare name too");
        (await QueryAsync(Gateway, "db9.vserver")).Rcode.ShouldBe(NxDomain, "no such guest");
        (await QueryAsync(Gateway, "outside.test")).Addresses.ShouldBe([OutsideAnswer], "forwarded upstream");
        // The outside logs queries in the order they came: once the forwarded one is in its log, db9 would be too.
        var forwarded = $"query[A] outside.test from {HostAddress}";
        for (var waited = Stopwatch.StartNew(); !UpstreamLog.Contains(forwarded, StringComparison.Ordinal); await Task.Delay(10, TestContext.Current.CancellationToken))
            waited.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(2), $"no '{forwarded}' in the outside's log:\n{UpstreamLog}");
        UpstreamLog.ShouldNotContain("db9", customMessage: "a name under the domain is never asked upstream");

        // A new address for db1, and web1 gone; then many changes in a row, each timed to the first answer that shows it.
        resolver.WriteHosts([("db1", Guest(4))]);
        (await PollAsync(Gateway, "db1.vserver", a => a.Addresses.SequenceEqual([Guest(4)]), TimeSpan.FromSeconds(2))).ShouldNotBeNull("db1's new address");
        (await PollAsync(Gateway, "web1.vserver", a => a.Rcode == NxDomain, TimeSpan.FromSeconds(2))).ShouldNotBeNull("a removed guest is NXDOMAIN");
        var latencies = new List<double>();
        var firstQueryRight = 0;
        for (var i = 0; i < 30; i++)
        {
            var address = Guest(10 + i);
            resolver.WriteHosts([("db1", address)]);
            var changed = Stopwatch.StartNew();
            var first = await QueryAsync(Gateway, "db1.vserver");
            if (first.Addresses.SequenceEqual([address])) firstQueryRight++;
            else (await PollAsync(Gateway, "db1.vserver", a => a.Addresses.SequenceEqual([address]), TimeSpan.FromSeconds(2))).ShouldNotBeNull($"change {i}");
            latencies.Add(changed.Elapsed.TotalMilliseconds);
        }
        resolver.Pid.ShouldBe(pid, "names change without a restart");
        latencies.Sort();
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"start {startMs:0.0} ms; hosts change to answer: median {latencies[latencies.Count / 2]:0.00} ms, max {latencies[^1]:0.00} ms; " +
            $"first query after WriteHosts already right {firstQueryRight} of {latencies.Count}");

        // Another domain: dnsmasq restarted with it, the names rewritten under it.
        clock.Restart();
        resolver.Restart(Config("guests.example.org"));
        var restartMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        var all = Resolver.FindAll();
        TestContext.Current.TestOutputHelper?.WriteLine($"restart with a new domain {restartMs:0.0} ms; FindAll {clock.Elapsed.TotalMilliseconds:0.0} ms ({all.Count} found)");
        resolver.Pid.ShouldNotBe(pid);
        (await QueryAsync(Gateway, "db1.guests.example.org")).Addresses.ShouldBe([Guest(39)]);
        (await QueryAsync(Gateway, "db1.vserver")).Addresses.ShouldBeEmpty("the old domain is no longer answered here");
        File.ReadAllText(Resolver.HostsFile(resolver.Config)).ShouldBe($"{Guest(39)}\tdb1.guests.example.org db1\n");

        // Names written from several threads while the domain changes back: the file ends whole, under the domain in force.
        var cancel = TestContext.Current.CancellationToken;
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(() =>
        {
            for (var i = 0; i < 10; i++) resolver.WriteHosts([("db1", Guest(100 + w * 10 + i))]);
        }, cancel)).Append(Task.Run(() => resolver.Restart(Config()), cancel)).ToArray();
        await Task.WhenAll(writers);
        var line = File.ReadAllText(Resolver.HostsFile(resolver.Config));
        line.ShouldMatch(@"^10\.\d+\.\d+\.\d+\tdb1\.vserver db1\n\z");
        var last = IPAddress.Parse(line[..line.IndexOf('\t')]);
        (await PollAsync(Gateway, "db1.vserver", a => a.Addresses.SequenceEqual([last]), TimeSpan.FromSeconds(2))).ShouldNotBeNull();
    }

    [Fact]
    public async Task A_killed_dnsmasq_is_started_again_a_restarted_agent_adopts_the_running_one_and_stop_ends_it()
    {
        var resolver = Track(new Resolver(Config(), _log.Enqueue));
        resolver.Start();
        resolver.WriteHosts([("db1", Guest(2))]);
        var first = resolver.Pid.ShouldNotBeNull();

        // Killed after it ran a while (a dnsmasq that dies within a second of its start waits for the next second).
        await Task.Delay(1100, TestContext.Current.CancellationToken);
        var killed = Stopwatch.StartNew();
        Process.GetProcessById(first).Kill();
        while (resolver.Pid is not { } p || p == first)
        {
            killed.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(5), "dnsmasq was not started again");
            await Task.Delay(5, TestContext.Current.CancellationToken);
        }
        var restartMs = killed.Elapsed.TotalMilliseconds;
        var second = resolver.Pid.Value;
        (await QueryAsync(Gateway, "db1.vserver")).Addresses.ShouldBe([Guest(2)]);
        _log.ShouldContain($"resolver on {Gateway} (dnsmasq pid {first}) died; started again (pid {second})");
        TestContext.Current.TestOutputHelper?.WriteLine($"killed to running again: {restartMs:0} ms");

        // The agent goes (disposed, or killed: the same to dnsmasq, which runs in a session of its own); the next adopts it.
        resolver.Dispose();
        await Task.Delay(1500, TestContext.Current.CancellationToken);
        AliveAs(second, Dir).ShouldBeTrue("dnsmasq outlives the agent");
        var (parent, session) = ParentAndSession(second);
        parent.ShouldNotBe(Environment.ProcessId, "not the agent's child");
        session.ShouldNotBe(ParentAndSession(Environment.ProcessId).Session, "in a session of its own: the agent's end does not reach it");
        (await QueryAsync(Gateway, "db1.vserver")).Addresses.ShouldBe([Guest(2)], "guests keep their DNS meanwhile");
        var next = Track(new Resolver(Config(), _log.Enqueue));
        next.Start();
        next.Pid.ShouldBe(second, "adopted, not started anew");
        Resolver.FindAll().Where(r => r.PidFile == Resolver.PidFile(Config())).Select(r => (r.Pid, r.Bridge)).ShouldBe([(second, Bridge)]);

        // Another agent's resolver on another address of the same bridge runs beside it, untouched by either.
        TestHost.Run("ip", "addr", "add", $"{Guest(254)}/24", "dev", Bridge).ShouldSucceed();
        var otherDir = Path.Combine(_root, "other", "dns");
        var other = Track(new Resolver(new ResolverConfig("vso" + _id, Guest(254), "vserver", [OutsideAddress], otherDir), _log.Enqueue));
        other.Start();
        other.WriteHosts([("db1", Guest(7))]);
        (await QueryAsync(Guest(254), "db1.vserver")).Addresses.ShouldBe([Guest(7)]);
        (await QueryAsync(Gateway, "db1.vserver")).Addresses.ShouldBe([Guest(2)]);

        next.Stop();
        (await PollAsync(Gateway, "db1.vserver", _ => false, TimeSpan.FromMilliseconds(300))).ShouldBeNull("nothing answers any more");
        AliveAs(second, Dir).ShouldBeFalse();
        Directory.Exists(Dir).ShouldBeFalse();
        await Task.Delay(1500, TestContext.Current.CancellationToken);
        next.Pid.ShouldBeNull("a stopped resolver is not started again");
        other.Pid.ShouldNotBeNull();
        (await QueryAsync(Guest(254), "db1.vserver")).Addresses.ShouldBe([Guest(7)], "the other agent's resolver runs on");
        other.Stop();
    }

    [Fact]
    public async Task Start_says_in_one_line_why_dnsmasq_cannot_run()
    {
        var resolver = Track(new Resolver(Config(), _log.Enqueue));
        resolver.Start();

        // Port 53 on the address is held (here by our own first resolver, under another run directory).
        var taken = Track(new Resolver(Config() with { BridgeName = "vsx" + _id, Dir = Path.Combine(_root, "second", "dns") }, _log.Enqueue));
        var error = Should.Throw<ResolverException>(taken.Start).Message;
        error.ShouldBe($"start the DNS resolver of bridge vsx{_id} on {Gateway} port 53 (dnsmasq): failed to create listening socket for {Gateway}: " +
            $"Address already in use; another program holds port 53 on {Gateway} (ss -lunp 'sport = :53' names it)");
        resolver.Pid.ShouldNotBeNull("the running resolver is not disturbed");

        // New settings that cannot work: the previous ones are started again.
        var pid = resolver.Pid;
        error = Should.Throw<ResolverException>(() => resolver.Restart(Config() with { ListenAddress = Guest(202) })).Message;
        error.ShouldContain($"on {Guest(202)} port 53 (dnsmasq): failed to create listening socket for {Guest(202)}: Cannot assign requested address");
        error.ShouldEndWith("; it runs on with the previous settings");
        resolver.Config.ListenAddress.ShouldBe(Gateway);
        resolver.Pid.ShouldNotBeNull().ShouldNotBe(pid.ShouldNotBeNull());
        (await QueryAsync(Gateway, "outside.test")).Addresses.ShouldBe([OutsideAnswer]);

        var elsewhere = Track(new Resolver(Config() with { BridgeName = "vsy" + _id, ListenAddress = Guest(200), Dir = Path.Combine(_root, "third", "dns") }, _log.Enqueue));
        Should.Throw<ResolverException>(elsewhere.Start).Message.ShouldContain($"Cannot assign requested address; {Guest(200)} is no address of this host");

        // A run directory under a 0700 directory: dnsmasq, as user dnsmasq, could not read its names.
        var closed = Path.Combine(_root, "closed");
        Directory.CreateDirectory(closed, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        File.SetUnixFileMode(closed, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var unreachable = Track(new Resolver(Config() with { BridgeName = "vsz" + _id, ListenAddress = Guest(201), Dir = Path.Combine(closed, "dns") }, _log.Enqueue));
        error = Should.Throw<ResolverException>(unreachable.Start).Message;
        error.ShouldStartWith($"dnsmasq runs as user dnsmasq (uid ");
        error.ShouldContain($"cannot reach its hosts directory {closed}/dns/hosts: {closed} is mode 0700 owned by uid 0 gid 0; let others search it (chmod o+x {closed})");
        error.ShouldNotContain("\n");
        (await QueryAsync(Gateway, "outside.test")).Addresses.ShouldBe([OutsideAnswer]);
    }

    private Resolver Track(Resolver resolver)
    {
        _resolvers.Add(resolver);
        return resolver;
    }

    private string UpstreamLog
    {
        get
        {
            lock (_upstreamLog) return _upstreamLog.ToString();
        }
    }

    /// <summary>From /proc/PID/stat: the fields after "(comm)" are state, ppid, pgrp, session.</summary>
    private static (int Parent, int Session) ParentAndSession(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture), int.Parse(fields[3], System.Globalization.CultureInfo.InvariantCulture));
    }

    private static bool AliveAs(int pid, string dir) =>
        TestHost.Processes().Any(p => p.Pid == pid && p.CommandLine.Contains(dir, StringComparison.Ordinal));

    /// <summary>No address of this host is in <paramref name="cidr"/> and no route leads into it.</summary>
    private static bool Unused(string cidr) =>
        TestHost.Run("ip", "-o", "addr", "show", "to", cidr).Stdout.Trim().Length == 0
        && TestHost.Run("ip", "route", "show", "root", cidr).Stdout.Trim().Length == 0;

    private static int LastOctet(string address) => int.Parse(address[(address.LastIndexOf('.') + 1)..], System.Globalization.CultureInfo.InvariantCulture);

    private sealed record Answer(int Rcode, IReadOnlyList<IPAddress> Addresses, uint? Ttl)
    {
        public bool Equals(Answer? other) => other is not null && Rcode == other.Rcode && Addresses.SequenceEqual(other.Addresses) && Ttl == other.Ttl;
        public override int GetHashCode() => HashCode.Combine(Rcode, Addresses.Count, Ttl);
        public override string ToString() => $"rcode {Rcode}, [{string.Join(", ", Addresses)}], ttl {Ttl}";
    }

    private static async Task<Answer> QueryAsync(IPAddress server, string name) =>
        await TryQueryAsync(server, name, TimeSpan.FromSeconds(2)) ?? throw new TimeoutException($"no answer from {server} for {name} in 2 s");

    /// <summary>Asks until an answer satisfies <paramref name="done"/>; null if none did in <paramref name="limit"/>.</summary>
    private static async Task<Answer?> PollAsync(IPAddress server, string name, Func<Answer, bool> done, TimeSpan limit)
    {
        var deadline = DateTime.UtcNow + limit;
        while (DateTime.UtcNow < deadline)
        {
            if (await TryQueryAsync(server, name, TimeSpan.FromMilliseconds(300)) is { } answer && done(answer)) return answer;
            await Task.Delay(10, TestContext.Current.CancellationToken);
        }
        return null;
    }

    /// <summary>One A query over UDP, as a guest's stub resolver sends it (System.Net cannot ask a given server).</summary>
    private static async Task<Answer?> TryQueryAsync(IPAddress server, string name, TimeSpan timeout)
    {
        var id = (ushort)RandomNumberGenerator.GetInt32(0, 65536);
        var query = new List<byte>();
        query.AddRange([(byte)(id >> 8), (byte)id, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, one question
        foreach (var label in name.Split('.'))
        {
            query.Add((byte)label.Length);
            query.AddRange(Encoding.ASCII.GetBytes(label));
        }
        query.AddRange([0, 0, 1, 0, 1]); // root, type A, class IN
        using var udp = new UdpClient(server.AddressFamily);
        await udp.SendAsync(query.ToArray(), new IPEndPoint(server, 53));
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var reply = (await udp.ReceiveAsync(cancel.Token)).Buffer;
                if (reply.Length >= 12 && BinaryPrimitives.ReadUInt16BigEndian(reply) == id) return Parse(reply);
            }
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    private static Answer Parse(byte[] reply)
    {
        var rcode = reply[3] & 0x0F;
        var answers = BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(6));
        var at = SkipName(reply, 12) + 4;
        var addresses = new List<IPAddress>();
        uint? ttl = null;
        for (var i = 0; i < answers; i++)
        {
            at = SkipName(reply, at);
            var type = BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(at));
            var recordTtl = BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(at + 4));
            var length = BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(at + 8));
            at += 10;
            if (type == 1 && length == 4)
            {
                addresses.Add(new IPAddress(reply.AsSpan(at, 4)));
                ttl ??= recordTtl;
            }
            at += length;
        }
        return new Answer(rcode, addresses, ttl);
    }

    private static int SkipName(byte[] message, int at)
    {
        while (true)
        {
            var length = message[at];
            if (length == 0) return at + 1;
            if ((length & 0xC0) == 0xC0) return at + 2; // a pointer ends the name
            at += 1 + length;
        }
    }
}
