using System.Text.Json;
using HybridHypervisor;
using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using Microsoft.Extensions.Time.Testing;
using Shouldly;
using Vserver.Api;
using Vserver.Isolation.Images;
using Vserver.Isolation.Network;
using Xunit;

namespace Vserver.Tests.FleetParts;

/// <summary>
/// The fleet's own logic (registry, lifecycle, supervision, recovery after an agent restart) driven through fake drivers
/// and a fake clock: no root, no cgroups, no network, no QEMU. The same behaviour on the real host is what
/// tests/Vserver.IntegrationTests and tests/Faults check.
/// </summary>
public sealed class FleetWithFakeDriversTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("vsfleet-").FullName;
    private readonly FakeGuestDriver _vservers = new(GuestKind.Vserver);
    private readonly FakeGuestDriver _domains = new(GuestKind.Domain);
    private readonly FakeConversionDriver _conversion;
    private readonly FakeHostNetwork _network = new("vsfake0");
    private readonly TimerCountingClock _clock = new();
    private readonly List<string> _log = [];
    private readonly List<HybridHypervisor.Fleet> _fleets = [];
    private readonly CancellationToken _ct = TestContext.Current.CancellationToken;

    public FleetWithFakeDriversTests()
    {
        _conversion = new FakeConversionDriver(_domains);
        // A kernel as `vsctl kernel build` leaves it, whose initramfs can hold a boot: promotion looks it up.
        var kernel = Path.Combine(_root, "state", "kernels", DomainSettings.DefaultKernel);
        Directory.CreateDirectory(kernel);
        foreach (var (file, text) in new[] { ("vmlinux", "k"), ("initrd.img", "i"), ("version", "6.1.0-test"), ("features", "hold") })
            File.WriteAllText(Path.Combine(kernel, file), text);
        // An image as `vsctl image build` leaves it: the create checks that it exists.
        var image = Path.Combine(_root, "state", "images", "busybox");
        Directory.CreateDirectory(Path.Combine(image, "rootfs"));
        File.WriteAllText(Path.Combine(image, "image.json"),
            JsonSerializer.Serialize(new ImageRecord("busybox", 2 << 20, DateTimeOffset.UtcNow, "sha256:0"), ImageJson.Default.ImageRecord));
    }

    public void Dispose()
    {
        foreach (var fleet in _fleets) fleet.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    /// <summary>An agent's fleet over this test's roots; a second call is the next agent after the first one died.</summary>
    private HybridHypervisor.Fleet Agent()
    {
        var options = new FleetOptions
        {
            StateRoot = Path.Combine(_root, "state"),
            RunRoot = Path.Combine(_root, "run"),
            BridgeName = _network.BridgeName,
            Subnet = Ipv4Subnet.Parse("10.250.0.0/24"),
            CgroupParent = "vsfake",
            VsinitPath = "/bin/sh",
            RecipesRoot = Path.Combine(_root, "recipes"),
        };
        var fleet = new HybridHypervisor.Fleet(options, line => { lock (_log) _log.Add(line); }, new HybridHypervisor.FleetParts
        {
            Vservers = _vservers,
            Domains = _domains,
            Conversion = _conversion,
            Network = _network,
            Cgroups = new NoCgroups(),
            Images = new ImageStore(options.ImagesRoot, options.RecipesRoot),
            Kernels = new HybridHypervisor.Domains.KernelStore(options.KernelsRoot, options.RecipesRoot),
            Clock = _clock,
        });
        _fleets.Add(fleet);
        fleet.Initialize();
        return fleet;
    }

    private static Vserver.Api.GuestSpec Vserver(string name, string restart = "no") =>
        new() { Name = name, Image = "busybox", MemoryBytes = 64 << 20, Restart = restart };

    private static async Task UntilAsync(Func<bool> condition, string what)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (waited.Elapsed > TimeSpan.FromSeconds(5)) throw new ShouldAssertException($"not {what} after 5 s");
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task Create_start_stop_and_destroy_go_through_the_guests_driver_and_leave_nothing()
    {
        var fleet = Agent();
        _network.Ensured.ShouldBe(1);

        var created = await fleet.CreateAsync(Vserver("web1"), ct: _ct);
        created.State.ShouldBe(GuestState.Stopped);
        created.Config!.Network.Ipv4.ShouldBe("10.250.0.2");
        var second = await fleet.CreateAsync(Vserver("web2"), ct: _ct);
        second.Config!.Network.Ipv4.ShouldBe("10.250.0.3");
        second.Config.Security.IdMap!.HostBase.ShouldNotBe(created.Config.Security.IdMap!.HostBase);
        var taken = await Should.ThrowAsync<FleetException>(() => fleet.CreateAsync(Vserver("web1"), ct: _ct));
        taken.Kind.ShouldBe(FleetError.Conflict);

        var started = await fleet.StartAsync("web1", ct: _ct);
        started.State.ShouldBe(GuestState.Running);
        started.InitPid.ShouldNotBeNull();
        started.Usage.ShouldNotBeNull().Processes.ShouldBe(1, "a guest's view shows what its driver reads");
        _vservers.IsRunning("web1").ShouldBeTrue();

        var paused = await fleet.PauseAsync("web1", _ct);
        paused.State.ShouldBe(GuestState.Paused);
        (await fleet.ResumeAsync("web1", _ct)).State.ShouldBe(GuestState.Running);

        var stopped = await fleet.StopAsync("web1", TimeSpan.FromSeconds(3), _ct);
        stopped.State.ShouldBe(GuestState.Stopped);
        stopped.LastExit!.Signal.ShouldBe(15);
        _vservers.IsRunning("web1").ShouldBeFalse();
        _vservers.Calls.ShouldBe(["provision web1", "provision web2", "start web1", "stop web1 3s", "end web1"]);
        _domains.Calls.ShouldBeEmpty();

        await fleet.DestroyAsync("web1", force: false, _ct);
        fleet.List().Select(g => g.Name).ShouldBe(["web2"]);
        // Every driver tears a guest down (a conversion may have left parts of both kinds); the fleet removes its files.
        _vservers.Calls.ShouldContain("teardown web1");
        _domains.Calls.ShouldContain("teardown web1");
        Directory.Exists(Path.Combine(_root, "state", "guests", "web1")).ShouldBeFalse();
        Directory.Exists(Path.Combine(_root, "run", "guests", "web1")).ShouldBeFalse();
        // The address goes back to the pool.
        (await fleet.CreateAsync(Vserver("web3"), ct: _ct)).Config!.Network.Ipv4.ShouldBe("10.250.0.2");
    }

    /// <summary>The fleet's refusals say what is wrong in plain words; what to do is in their code and fields, for the
    /// client to say in its own terms (<c>Vserver.Cli.AgentErrorText</c>).</summary>
    [Fact]
    public async Task Refusals_carry_a_code_and_fields_and_no_client_advice()
    {
        var fleet = Agent();
        await fleet.CreateAsync(Vserver("web1"), ct: _ct);
        await fleet.StartAsync("web1", ct: _ct);
        var recipe = Directory.CreateDirectory(Path.Combine(_root, "recipes", "busybox")).FullName;
        File.WriteAllText(Path.Combine(recipe, "build.sh"), "exit 1\n");

        var refusals = new List<FleetException>
        {
            await Should.ThrowAsync<FleetException>(() => fleet.StartAsync("web1", ct: _ct)),
            await Should.ThrowAsync<FleetException>(() => fleet.DestroyAsync("web1", force: false, _ct)),
            await Should.ThrowAsync<FleetException>(() => fleet.UnpublishPortAsync("web1", 8080, PortProtocol.Tcp, _ct)),
            Should.Throw<FleetException>(() => fleet.BuildImage("busybox")),
            Should.Throw<FleetException>(() => fleet.RemoveImage("nosuch")),
        };
        await fleet.PauseAsync("web1", _ct);
        refusals.Add(await Should.ThrowAsync<FleetException>(() => fleet.ExecAsync("web1", ["true"], false, 0, 0, null, null, _ct)));

        refusals.Select(r => (r.Kind, r.Code, string.Join(",", r.Fields.Select(f => $"{f.Key}={f.Value}")))).ShouldBe(
        [
            (FleetError.Conflict, ErrorCodes.AlreadyRunning, "guest=web1,state=running,operation=start"),
            (FleetError.Conflict, ErrorCodes.AlreadyRunning, "guest=web1,state=running,operation=destroy"),
            (FleetError.NotFound, ErrorCodes.NotFound, "guest=web1,port=8080,protocol=tcp"),
            (FleetError.Conflict, ErrorCodes.ImageExists, "image=busybox"),
            (FleetError.NotFound, ErrorCodes.NotFound, "image=nosuch"),
            (FleetError.Conflict, ErrorCodes.Paused, "guest=web1"),
        ]);
        refusals.Select(r => r.Message).ShouldBe(
        [
            "guest 'web1' is already running",
            "guest 'web1' is running; stop it first",
            "guest 'web1' publishes no host port 8080/tcp",
            "image 'busybox' already exists; images are read-only once built",
            "no image named 'nosuch'",
            "guest 'web1' is paused",
        ]);
    }

    [Fact]
    public async Task A_broken_guest_is_a_coded_refusal_and_its_problem_names_no_client()
    {
        var broken = Directory.CreateDirectory(Path.Combine(_root, "state", "guests", "old")).FullName;
        File.WriteAllText(Path.Combine(broken, "guest.json"), "{ nope");
        var fleet = Agent();
        fleet.Get("old").State.ShouldBe(GuestState.Broken);

        var refusal = await Should.ThrowAsync<FleetException>(() => fleet.DestroyAsync("old", force: false, _ct));
        refusal.Code.ShouldBe(ErrorCodes.Broken);
        refusal.Fields["guest"].ShouldBe("old");
        refusal.Fields["problem"].ShouldStartWith($"{Path.Combine(broken, "guest.json")}: invalid JSON at line 1");
        refusal.Message.ShouldBe($"guest 'old' is broken: {refusal.Fields["problem"]}");
        refusal.Message.ShouldNotContain("vsctl");
    }

    [Fact]
    public async Task A_guest_that_keeps_dying_is_restarted_with_a_growing_back_off_and_a_stop_ends_that()
    {
        var fleet = Agent();
        await fleet.CreateAsync(Vserver("flaky", restart: "always"), ct: _ct);
        await fleet.StartAsync("flaky", ct: _ct);

        foreach (var (delay, restarts) in new[] { (100, 2), (200, 3), (400, 4) })
        {
            var timers = _clock.Timers;
            _vservers.End("flaky", new GuestExit(1, null, DateTimeOffset.UtcNow));
            // Seen dead, and its restart's wait begun on the fake clock: only then does moving the clock mean anything.
            await UntilAsync(() => fleet.Get("flaky").State == GuestState.Stopped && _clock.Timers > timers, "seen dead, its restart waiting");
            fleet.Get("flaky").LastExit!.Code.ShouldBe(1);

            _clock.Advance(TimeSpan.FromMilliseconds(delay - 1));
            await Task.Delay(50, _ct);
            _vservers.Starts("flaky").ShouldBe(restarts - 1, $"restarted before its {delay} ms");
            _clock.Advance(TimeSpan.FromMilliseconds(1));
            await UntilAsync(() => _vservers.Starts("flaky") == restarts, $"restarted after {delay} ms");
            await UntilAsync(() => fleet.Get("flaky").State == GuestState.Running, "running again");
            fleet.Get("flaky").RestartCount.ShouldBe(restarts - 1);
        }

        // Dead again, and stopped by an operator before the restart is due: it stays down.
        _vservers.End("flaky", new GuestExit(1, null, DateTimeOffset.UtcNow));
        await UntilAsync(() => fleet.Get("flaky").State == GuestState.Stopped, "seen dead");
        await fleet.StopAsync("flaky", ct: _ct);
        _clock.Advance(TimeSpan.FromSeconds(30));
        await Task.Delay(50, _ct);
        _vservers.Starts("flaky").ShouldBe(4);
        fleet.Get("flaky").State.ShouldBe(GuestState.Stopped);
    }

    [Fact]
    public async Task The_next_agent_adopts_what_runs_collects_what_ended_meanwhile_and_restarts_it_by_policy()
    {
        var first = Agent();
        await first.CreateAsync(Vserver("web"), ct: _ct);
        await first.CreateAsync(Vserver("worker", restart: "on-failure"), ct: _ct);
        await first.CreateAsync(Vserver("batch"), ct: _ct);
        var webPid = (await first.StartAsync("web", ct: _ct)).InitPid;
        await first.StartAsync("worker", ct: _ct);
        await first.StartAsync("batch", ct: _ct);
        // The agent dies; guests run on without it. Meanwhile worker crashes and batch finishes.
        first.Dispose();
        _fleets.Remove(first);
        _vservers.EndWhileAway("worker", new GuestExit(3, null, DateTimeOffset.UtcNow));
        _vservers.EndWhileAway("batch", new GuestExit(0, null, DateTimeOffset.UtcNow));

        var next = Agent();

        var web = next.Get("web");
        web.State.ShouldBe(GuestState.Running);
        web.InitPid.ShouldBe(webPid);
        _log.ShouldContain($"adopted running vserver web (pid {webPid})");
        next.Get("batch").State.ShouldBe(GuestState.Stopped);
        next.Get("batch").LastExit!.Code.ShouldBe(0);
        // on-failure: the crash while no agent watched is answered with a start.
        await UntilAsync(() => _vservers.Starts("worker") == 2, "worker restarted");
        await UntilAsync(() => next.Get("worker").State == GuestState.Running, "worker running");
        _vservers.Starts("batch").ShouldBe(1);

        // The adopted run is watched like one this agent started: its end is seen.
        _vservers.End("web", new GuestExit(0, null, DateTimeOffset.UtcNow));
        await UntilAsync(() => next.Get("web").State == GuestState.Stopped, "web's end seen by the next agent");
    }

    [Fact]
    public async Task A_failed_start_leaves_the_guest_stopped_and_its_config_as_it_was()
    {
        var fleet = Agent();
        await fleet.CreateAsync(Vserver("web"), ct: _ct);
        _vservers.StartFailure = new FleetException(FleetError.Failed, "starting web failed: no room");

        var failed = await Should.ThrowAsync<FleetException>(() => fleet.StartAsync("web", ct: _ct));

        failed.Message.ShouldBe("starting web failed: no room");
        fleet.Get("web").State.ShouldBe(GuestState.Stopped);
        _vservers.StartFailure = null;
        (await fleet.StartAsync("web", ct: _ct)).State.ShouldBe(GuestState.Running);
    }

    [Fact]
    public async Task A_promotion_runs_its_plan_in_order_and_the_vserver_becomes_a_running_domain_of_the_same_address()
    {
        var fleet = Agent();
        var created = await fleet.CreateAsync(Vserver("web"), ct: _ct);
        await fleet.StartAsync("web", ct: _ct);

        var (plan, guest) = await fleet.PromoteAsync("web", new PromoteOptions(Copy: true), _ct);

        plan.Settings.ShouldContain(("address", $"{created.Config!.Network.Ipv4} (MAC {created.Config.Network.Mac})"));
        guest.ShouldNotBeNull().State.ShouldBe(GuestState.Running);
        guest.Config!.Kind.ShouldBe(GuestKind.Domain);
        guest.Config.Network.Ipv4.ShouldBe(created.Config.Network.Ipv4);
        guest.Config.Domain!.Root.ShouldBe(DomainRoot.Ext4);
        _conversion.Calls.ShouldBe(["copy-root web", "release-root-keep-layer web", "remove-vserver-network web", "tap web",
            "boot web", "wait-up web", "balloon web", "discard-layers web"]);
        _vservers.Calls.ShouldContain("stop web 10s");
        _domains.Starts("web").ShouldBe(1);
        ReadConfig("web").Kind.ShouldBe(GuestKind.Domain);
        File.Exists(Path.Combine(_root, "state", "guests", "web", "intent.json")).ShouldBeFalse("a finished promotion leaves no journal");

        // The domain's run is watched like any other: its end is seen.
        _domains.End("web", new GuestExit(0, null, DateTimeOffset.UtcNow));
        await UntilAsync(() => fleet.Get("web").State == GuestState.Stopped, "the domain's end seen");
    }

    [Fact]
    public async Task A_promotion_whose_third_step_fails_is_undone_newest_first_and_the_vserver_runs_again()
    {
        var fleet = Agent();
        await fleet.CreateAsync(Vserver("web"), ct: _ct);
        await fleet.StartAsync("web", ct: _ct);
        var before = ReadConfig("web");
        _conversion.FailAt = "tap";

        var failed = await Should.ThrowAsync<FleetException>(() => fleet.PromoteAsync("web", new PromoteOptions(Copy: true), _ct));

        // Steps: stop the vserver, copy the root, move the address (fails while making the tap).
        failed.Message.ShouldStartWith("promoting 'web' failed at step 'move the address to the domain': tap failed (the test's fault); ");
        failed.Message.ShouldEndWith("rolled back: 'web' is a vserver again and runs, with its files and address");
        _conversion.Calls.ShouldBe([
            "copy-root web", "release-root-keep-layer web", "remove-vserver-network web", "tap web",
            // undone newest first: the address back, then the copy gone (the stopped vserver's layer released with it)
            "remove-tap web", "vserver-network web", "release-root web",
        ]);
        File.Exists(Path.Combine(_root, "state", "guests", "web", "disk.ext4")).ShouldBeFalse("the copy is deleted");
        _domains.Starts("web").ShouldBe(0);
        _vservers.Starts("web").ShouldBe(2, "the rollback ends with the vserver started again");
        var web = fleet.Get("web");
        web.State.ShouldBe(GuestState.Running);
        web.Config!.Kind.ShouldBe(GuestKind.Vserver);
        ReadConfig("web").ShouldBeEquivalentTo(before);
        File.Exists(Path.Combine(_root, "state", "guests", "web", "intent.json")).ShouldBeFalse("a rolled-back promotion leaves no journal");
    }

    [Fact]
    public async Task A_domain_whose_kernel_never_comes_up_beside_the_vserver_is_ended_and_the_vserver_never_stops()
    {
        var fleet = Agent();
        await fleet.CreateAsync(Vserver("web"), ct: _ct);
        var pid = (await fleet.StartAsync("web", ct: _ct)).InitPid;
        _conversion.KernelNeverUp = true;

        var failed = await Should.ThrowAsync<FleetException>(() => fleet.PromoteAsync("web", new PromoteOptions(), _ct));

        failed.Message.ShouldStartWith("promoting 'web' failed at step 'wait for the domain's kernel': ");
        failed.Message.ShouldEndWith("rolled back: 'web' is still the vserver it was and never stopped serving");
        _conversion.Calls.ShouldBe([
            "share-root web", "boot-held web", "connect-hold web", "wait-kernel web",
            // undone newest first: the domain ended (its root released, the vserver's layer kept: it serves), then the share
            "kill-domain web", "release-root-keep-layer web", "remove-tap web", "release-root-keep-layer web",
        ]);
        _domains.IsRunning("web").ShouldBeFalse();
        _vservers.Calls.ShouldNotContain(c => c.StartsWith("stop web", StringComparison.Ordinal));
        var web = fleet.Get("web");
        web.State.ShouldBe(GuestState.Running);
        web.InitPid.ShouldBe(pid);
        web.Config!.Kind.ShouldBe(GuestKind.Vserver);
    }

    [Fact]
    public async Task A_demotion_of_a_copied_domain_copies_its_files_out_and_the_vserver_runs_with_its_address()
    {
        var fleet = Agent();
        var created = await fleet.CreateAsync(Vserver("web"), ct: _ct);
        await fleet.StartAsync("web", ct: _ct);
        await fleet.PromoteAsync("web", new PromoteOptions(Copy: true), _ct);
        var promoted = _conversion.Calls.Count;

        var (_, guest) = await fleet.DemoteAsync("web", dryRun: false, _ct);

        guest.ShouldNotBeNull().State.ShouldBe(GuestState.Running);
        guest.Config!.Kind.ShouldBe(GuestKind.Vserver);
        guest.Config.Network.Ipv4.ShouldBe(created.Config!.Network.Ipv4);
        guest.Config.Limits.Cpus.ShouldBe(1);
        _conversion.Calls.Skip(promoted).ShouldBe(["copy-out web", "remove-tap web", "vserver-network web"]);
        _domains.IsRunning("web").ShouldBeFalse();
        _vservers.Starts("web").ShouldBe(2);
        ReadConfig("web").Kind.ShouldBe(GuestKind.Vserver);
        File.Exists(Path.Combine(_root, "state", "guests", "web", "disk.ext4")).ShouldBeFalse("the domain's disk goes");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_next_agent_undoes_a_demotion_its_predecessor_died_in_before_any_step_and_the_domain_runs_on(bool legacyJournal)
    {
        var first = Agent();
        await first.CreateAsync(Vserver("web"), ct: _ct);
        await first.StartAsync("web", ct: _ct);
        await first.PromoteAsync("web", new PromoteOptions(Copy: true), _ct);
        var domainPid = first.Get("web").InitPid;
        // The agent dies right after journaling a demotion: no step begun (a journal of an older agent names none at all,
        // so every step is undone).
        first.Dispose();
        _fleets.Remove(first);
        new GuestStore(first.Options).BeginIntent("web", new GuestIntent
        {
            Operation = "demote", Began = DateTimeOffset.UtcNow, WasRunning = true, Begun = legacyJournal ? null : [],
        });
        var before = _conversion.Calls.Count;

        var next = Agent();

        var web = next.Get("web");
        web.State.ShouldBe(GuestState.Running);
        web.InitPid.ShouldBe(domainPid, "the adopted domain is not stopped by the undo of a vserver's start");
        web.Config!.Kind.ShouldBe(GuestKind.Domain);
        _domains.IsRunning("web").ShouldBeTrue();
        _vservers.IsRunning("web").ShouldBeFalse();
        _conversion.Calls.Skip(before).ShouldBe(legacyJournal
            ? ["remove-vserver-network web", "release-cgroup web", "tap web", "discard-layers web"]
            : []);
        _log.ShouldContain(l => l.StartsWith("demote of web was interrupted by the agent's death: rolled back: 'web' is a domain again and runs", StringComparison.Ordinal));
        File.Exists(Path.Combine(_root, "state", "guests", "web", "intent.json")).ShouldBeFalse();
    }

    private string ConfigPath(string name) => Path.Combine(_root, "state", "guests", name, "guest.json");

    /// <summary>The agent dies; meanwhile someone edits a guest's config by hand; the next agent starts.</summary>
    private HybridHypervisor.Fleet NextAgentAfterEditing(HybridHypervisor.Fleet first, string name, Func<string, string> edit)
    {
        first.Dispose();
        _fleets.Remove(first);
        File.WriteAllText(ConfigPath(name), edit(File.ReadAllText(ConfigPath(name))));
        return Agent();
    }

    [Fact]
    public async Task A_config_edited_to_another_guests_address_is_broken_and_its_real_address_stays_taken()
    {
        var first = Agent();
        await first.CreateAsync(Vserver("web1"), ct: _ct);
        await first.CreateAsync(Vserver("web2"), ct: _ct);
        _vservers.RealAddresses["web1"] = "10.250.0.2";
        _vservers.RealAddresses["web2"] = "10.250.0.3";

        var next = NextAgentAfterEditing(first, "web2", json => json.Replace("\"10.250.0.3\"", "\"10.250.0.2\"", StringComparison.Ordinal));

        var web2 = next.Get("web2");
        web2.State.ShouldBe(GuestState.Broken);
        web2.Problem.ShouldBe("its config says address 10.250.0.2, but its network namespace has 10.250.0.3; put 10.250.0.3 back in its config, or destroy it");
        next.Get("web1").State.ShouldBe(GuestState.Stopped);
        (await Should.ThrowAsync<FleetException>(() => next.StartAsync("web2", ct: _ct))).Code.ShouldBe(global::Vserver.Api.ErrorCodes.Broken);
        _vservers.Starts("web2").ShouldBe(0);
        // Neither address is free: the new guest gets the next one, and asking for either is refused.
        (await next.CreateAsync(Vserver("web3"), ct: _ct)).Config!.Network.Ipv4.ShouldBe("10.250.0.4");
        foreach (var (address, owner) in new[] { ("10.250.0.3", "web2"), ("10.250.0.2", "web1") })
        {
            var taken = await Should.ThrowAsync<FleetException>(() => next.CreateAsync(Vserver("web4") with { Ipv4 = address }, ct: _ct));
            taken.Code.ShouldBe(global::Vserver.Api.ErrorCodes.AddressTaken);
            taken.Fields["owner"].ShouldBe(owner);
        }
        next.List().Select(g => g.Name).ShouldBe(["web1", "web2", "web3"]);
    }

    [Fact]
    public async Task Of_two_guests_with_one_id_range_the_later_is_broken_and_the_earlier_starts()
    {
        var first = Agent();
        var web1 = await first.CreateAsync(Vserver("web1"), ct: _ct);
        var web2 = await first.CreateAsync(Vserver("web2"), ct: _ct);
        var ids1 = web1.Config!.Security.IdMap!;
        var ids2 = web2.Config!.Security.IdMap!;

        var next = NextAgentAfterEditing(first, "web2",
            json => json.Replace($"\"hostBase\": {ids2.HostBase}", $"\"hostBase\": {ids1.HostBase + 1000}", StringComparison.Ordinal));

        next.Get("web2").State.ShouldBe(GuestState.Broken);
        next.Get("web2").Problem.ShouldStartWith($"host ids {ids1.HostBase + 1000}..{ids1.HostBase + 1000 + ids1.Count - 1} overlap those of guest 'web1'");
        (await next.StartAsync("web1", ct: _ct)).State.ShouldBe(GuestState.Running);
        await Should.ThrowAsync<FleetException>(() => next.StartAsync("web2", ct: _ct));
    }

    [Theory]
    [InlineData("{ not json")]
    [InlineData("{\"name\": \"web1\", \"limits\": 5, \"network\": {\"ipv4\": \"10.250.0.2\"}, \"security\": {\"idMap\": {\"hostBase\": IDS, \"count\": 65536}}}")]
    public async Task A_guest_whose_config_cannot_be_read_keeps_its_address_and_ids_from_new_guests(string config)
    {
        var first = Agent();
        var web1 = await first.CreateAsync(Vserver("web1"), ct: _ct);
        var ids = web1.Config!.Security.IdMap!;
        // What the host still shows of it even when its file says nothing.
        _vservers.RealAddresses["web1"] = "10.250.0.2";
        var readable = !config.StartsWith("{ not", StringComparison.Ordinal);

        var next = NextAgentAfterEditing(first, "web1", _ => config.Replace("IDS", ids.HostBase.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));

        next.Get("web1").State.ShouldBe(GuestState.Broken);
        var web2 = await next.CreateAsync(Vserver("web2"), ct: _ct);
        web2.Config!.Network.Ipv4.ShouldBe("10.250.0.3");
        if (readable) web2.Config.Security.IdMap!.HostBase.ShouldNotBe(ids.HostBase, "the id range its config still names stays its own");
        (await Should.ThrowAsync<FleetException>(() => next.CreateAsync(Vserver("web3") with { Ipv4 = "10.250.0.2" }, ct: _ct)))
            .Fields["owner"].ShouldBe("web1");
    }

    [Fact]
    public async Task Of_two_guests_publishing_one_host_port_the_later_is_broken_and_the_port_stays_the_earliers()
    {
        var first = Agent();
        await first.CreateAsync(Vserver("web1"), ct: _ct);
        await first.CreateAsync(Vserver("web2"), ct: _ct);
        await first.PublishPortAsync("web1", new global::Vserver.Api.PortInfo { HostPort = 18080, GuestPort = 80, Protocol = "tcp" }, _ct);
        var withPort = File.ReadAllText(ConfigPath("web1"));
        var ports = withPort[withPort.IndexOf("\"ports\"", StringComparison.Ordinal)..];
        ports = ports[..(ports.IndexOf(']', StringComparison.Ordinal) + 1)];

        var next = NextAgentAfterEditing(first, "web2", json => json.Replace("\"ports\": []", ports, StringComparison.Ordinal));

        next.Get("web2").State.ShouldBe(GuestState.Broken);
        next.Get("web2").Problem.ShouldStartWith("host port 18080/tcp is published for guest 'web1'");
        _network.Forwards.Select(f => f.HostPort).ShouldBe([18080], "the port table has the earlier guest's port once");
    }

    [Fact]
    public void Outbound_nat_is_on_by_default_and_an_operators_off_is_kept_by_the_next_agent()
    {
        var first = Agent();
        first.Nat.ShouldBeTrue();
        _network.Nat.ShouldBeTrue("the agent's table is written with the masquerade at its start");

        first.SetNetwork(new HostSettingsRequest { Nat = false });
        _network.Nat.ShouldBeFalse();
        File.ReadAllText(Path.Combine(_root, "state", "network.json")).ShouldContain("\"nat\": false");
        first.Dispose();
        _fleets.Remove(first);

        var next = Agent();
        next.Nat.ShouldBeFalse();
        _network.Nat.ShouldBeFalse("the next agent rebuilds its table from the setting");
        next.SetNetwork(new HostSettingsRequest { Nat = true });
        _network.Nat.ShouldBeTrue();
    }

    [Fact]
    public async Task A_routed_range_lets_guests_hold_its_addresses_routed_and_cannot_be_taken_away_while_one_does()
    {
        var fleet = Agent();
        // Without a range an address outside the subnet is refused, naming what would allow it.
        var outside = await Should.ThrowAsync<FleetException>(() => fleet.CreateAsync(Vserver("pub1") with { Ipv4 = "203.0.113.17" }, ct: _ct));
        outside.Message.ShouldContain("outside this host's guest subnet");

        Should.Throw<FleetException>(() => fleet.SetNetwork(new HostSettingsRequest { Routed = "203.0.113.17/28", Uplink = "eth0" }))
            .Message.ShouldContain("write 203.0.113.16/28");
        Should.Throw<FleetException>(() => fleet.SetNetwork(new HostSettingsRequest { Routed = "203.0.113.16/28" }))
            .Message.ShouldContain("needs the uplink");
        _network.RoutedRefusal = new RoutedRefusal("no interface 'eth9' on this host", OfUplink: true);
        Should.Throw<FleetException>(() => fleet.SetNetwork(new HostSettingsRequest { Routed = "203.0.113.16/28", Uplink = "eth9" }))
            .Message.ShouldBe("cannot route 203.0.113.16/28 to guests through eth9: no interface 'eth9' on this host");
        fleet.NetworkSettings.Routed.ShouldBeNull("a refused change changes nothing");
        _network.RoutedRefusal = null;

        fleet.SetNetwork(new HostSettingsRequest { Routed = "203.0.113.16/28", Uplink = "eth0" });
        await fleet.CreateAsync(Vserver("pub1") with { Ipv4 = "203.0.113.17" }, ct: _ct);
        _network.Rules!.RoutedGuests!.Select(a => a.ToString()).ShouldBe(["203.0.113.17"]);
        _network.Rules.Uplink.ShouldBe("eth0");
        fleet.IsRouted("203.0.113.17").ShouldBeTrue();

        var inUse = Should.Throw<FleetException>(() => fleet.SetNetwork(new HostSettingsRequest { Routed = "" }));
        inUse.Message.ShouldBe("pub1 holds an address of the routed range 203.0.113.16/28; destroy it first");
        await fleet.DestroyAsync("pub1", force: false, _ct);
        _network.Rules!.RoutedGuests.ShouldBeEmpty("a destroyed guest's route goes");
        fleet.SetNetwork(new HostSettingsRequest { Routed = "" });
        fleet.NetworkSettings.Routed.ShouldBeNull();
        fleet.NetworkSettings.Uplink.ShouldBeNull();
    }

    [Fact]
    public async Task A_guest_gets_the_bridge_resolver_by_default_its_own_servers_or_none()
    {
        var fleet = Agent();
        await fleet.CreateAsync(Vserver("a"), ct: _ct);
        await fleet.CreateAsync(Vserver("b") with { Dns = ["192.0.2.53"] }, ct: _ct);
        await fleet.CreateAsync(Vserver("c") with { Dns = [] }, ct: _ct);
        fleet.SetNetwork(new HostSettingsRequest { DnsDomain = "guests.example" });
        var gateway = fleet.Options.Subnet.Gateway.ToString();
        fleet.ResolvFor(ReadConfig("a"))!.Render().ShouldContain($"nameserver {gateway}\nsearch guests.example\n");
        fleet.ResolvFor(ReadConfig("b"))!.Servers.Select(s => s.ToString()).ShouldBe(["192.0.2.53"]);
        fleet.ResolvFor(ReadConfig("c")).ShouldBeNull("--dns none: the guest keeps its own file");
        (await Should.ThrowAsync<FleetException>(() => fleet.CreateAsync(Vserver("d") with { Dns = ["resolver.example"] }, ct: _ct)))
            .Message.ShouldBe("invalid name server 'resolver.example': write it as A.B.C.D, or none");
        Should.Throw<FleetException>(() => fleet.SetNetwork(new HostSettingsRequest { DnsDomain = "Bad_Suffix" }))
            .Message.ShouldStartWith("invalid name suffix 'Bad_Suffix'");
    }

    private GuestConfig ReadConfig(string name) =>
        JsonSerializer.Deserialize(File.ReadAllText(Path.Combine(_root, "state", "guests", name, "guest.json")), ConfigJson.Default.GuestConfig)!;
}

/// <summary>A fake clock that counts the timers made on it: a restart's back-off is a timer, so a test knows when one waits.</summary>
internal sealed class TimerCountingClock : FakeTimeProvider
{
    private int _timers;

    public int Timers => Volatile.Read(ref _timers);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        // Counted once made: the timer's due time is the clock's now when it is made, so a test that moved the clock
        // between a count taken before and the making would push its due time along.
        var timer = base.CreateTimer(callback, state, dueTime, period);
        Interlocked.Increment(ref _timers);
        return timer;
    }
}
