using SharedMemoryAccounting;
using Shouldly;
using Xunit;

namespace Vserver.Tests.Memory;

public sealed class PoolPolicyTests
{
    private const long M = 1L << 20, G = 1L << 30;
    private static readonly Pool Pool = new PoolSettings { ReserveBytes = 2 * G, Overcommit = 1.5 }.For(10 * G);

    [Fact]
    public void Capacity_is_the_host_minus_the_reserve_and_defaults_scale_with_the_host()
    {
        Pool.Capacity.ShouldBe(8 * G);
        Pool.LimitsCap.ShouldBe(12 * G);
        var defaults = new PoolSettings().For(24 * G);
        defaults.Reserve.ShouldBe(24 * G / 20);
        defaults.MinFree.ShouldBe(defaults.Capacity / 50);
        new PoolSettings().For(2 * G).Reserve.ShouldBe(512 * M);
    }

    [Fact]
    public void Guarantees_must_fit_the_capacity_and_the_refusal_gives_the_numbers()
    {
        Commitment[] others = [new("a", 3 * G, 4 * G), new("b", 4 * G, null)];
        Admission.Refusal(Pool, others, new Commitment("c", 1 * G, 1 * G), "create").ShouldBeNull();
        var refusal = Admission.Refusal(Pool, others, new Commitment("c", 1 * G + 1, 1 * G + 1), "create");
        refusal.ShouldNotBeNull();
        refusal.ShouldContain("cannot create 'c'");
        refusal.ShouldContain("7.0G of 8.0G is committed");
        refusal.ShouldContain("1.0G is free");
        refusal.ShouldNotContain("--memory-min", Case.Sensitive, "what to change is the client's to say");
        Admission.Check(Pool, others, new Commitment("c", 1 * G + 1, 1 * G + 1), "create")
            .ShouldBe(new PoolRefusal(refusal, PoolBound.Guarantees, "c", 1 * G + 1, 7 * G, 8 * G));
    }

    [Fact]
    public void Limits_may_overcommit_up_to_the_ratio_and_unlimited_guests_are_not_counted()
    {
        Commitment[] others = [new("a", 0, 6 * G), new("b", 0, null)];
        Admission.Refusal(Pool, others, new Commitment("c", 0, 6 * G), "create").ShouldBeNull();
        var refusal = Admission.Refusal(Pool, others, new Commitment("c", 0, 6 * G + M), "start");
        refusal.ShouldNotBeNull();
        refusal.ShouldContain("cannot start 'c'");
        refusal.ShouldContain("overcommit 1.5");
        Admission.Check(Pool, others, new Commitment("c", 0, 6 * G + M), "start")!.Bound.ShouldBe(PoolBound.Limits);
    }

    [Fact]
    public void A_guests_own_old_commitment_does_not_count_against_its_change() =>
        Admission.Refusal(Pool, [new("a", 8 * G, null)], new Commitment("a", 8 * G, null), "change the memory of").ShouldBeNull();

    [Fact]
    public void New_settings_must_still_hold_what_guests_were_promised()
    {
        var held = Commitments.Of([new("a", 3 * G, 4 * G), new("b", 4 * G, null)]);
        held.ShouldBe(new Commitments(7 * G, 4 * G));
        Admission.CheckSettings(Pool, held).ShouldBeNull();
        var guarantees = Admission.CheckSettings(new PoolSettings { ReserveBytes = 4 * G }.For(10 * G), held)!;
        guarantees.Message.ShouldContain("already guaranteed");
        guarantees.Bound.ShouldBe(PoolBound.Guarantees);
        guarantees.Guest.ShouldBeNull();
        var limits = Admission.CheckSettings(new PoolSettings { ReserveBytes = 2 * G, Overcommit = 1 }.For(10 * G), new Commitments(0, 9 * G))!;
        limits.Message.ShouldContain("x overcommit 1)");
        limits.Bound.ShouldBe(PoolBound.Limits);
    }

    [Theory]
    [InlineData(-1L, 2.0, null)]
    [InlineData(10L << 30, 2.0, null)]
    [InlineData(null, 0.5, null)]
    [InlineData(null, double.NaN, null)]
    [InlineData(null, 2.0, -5L)]
    public void Bad_settings_are_refused(long? reserve, double overcommit, long? minFree) =>
        new PoolSettings { ReserveBytes = reserve, Overcommit = overcommit, MinFreeBytes = minFree }.Error(10 * G).ShouldNotBeNull();

    [Fact]
    public void Under_pressure_domains_shrink_toward_their_guarantee_largest_surplus_first()
    {
        BalloonedDomain[] domains = [new("small", 200 * M, 256 * M, 256 * M), new("big", 512 * M, 2 * G, 2 * G)];
        var d = Pressure.Decide(free: 100 * M, minFree: 400 * M, domains, [new VserverCharge("web", 300 * M, 100 * M), new VserverCharge("ok", 50 * M, 100 * M)]);
        d.UnderPressure.ShouldBeTrue();
        d.Balloons["big"].ShouldBe(2 * G - 300 * M, "only what is missing is taken");
        d.Balloons["small"].ShouldBe(256 * M);
        d.Notes.ShouldContain(n => n.Contains("vserver web is 200M over its guarantee"));
        d.Actions.ShouldBe(["domain big shrunk to 1.7G (guarantee 512M, set 2.0G)"]);
        d.Notes.ShouldContain("domain big held at 1.7G of 2.0G (guarantee 512M)");
        d.Notes.ShouldNotContain(n => n.Contains("vserver ok"));

        var deeper = Pressure.Decide(free: 0, minFree: 4 * G, domains, []);
        deeper.Balloons["big"].ShouldBe(512 * M);
        deeper.Balloons["small"].ShouldBe(200 * M, "never below the guarantee");
    }

    [Fact]
    public void Memory_goes_back_only_as_far_as_it_fits_above_the_threshold_and_margin()
    {
        BalloonedDomain[] shrunk = [new("a", 200 * M, 1 * G, 200 * M)];
        Pressure.Decide(free: 450 * M, minFree: 400 * M, shrunk, []).Balloons["a"].ShouldBe(200 * M, "within the margin: hold");
        var back = Pressure.Decide(free: 400 * M + Pressure.Margin(400 * M) + 300 * M, minFree: 400 * M, shrunk, []);
        back.UnderPressure.ShouldBeFalse();
        back.Balloons["a"].ShouldBe(500 * M);
        back.Actions.ShouldBe(["domain a given back 300M, now 500M of 1.0G"]);
        Pressure.Decide(free: 100 * G, minFree: 400 * M, shrunk, []).Balloons["a"].ShouldBe(1 * G, "never above what the operator set");
    }
}
