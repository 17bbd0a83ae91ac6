using HybridHypervisor.Guests;
using Shouldly;
using Xunit;

namespace Vserver.Tests.FleetParts;

/// <summary>The one executor of conversions (promotion, demotion): steps in order with the journal told first, and on a
/// failure every begun step undone newest first, then the rollback's end; after an agent's death the same undo, driven
/// by the journal.</summary>
public sealed class ConversionStepsTests
{
    private readonly List<string> _did = [];
    private readonly List<IReadOnlyList<string>> _journal = [];

    private ConversionSteps Plan(string? failing = null, string? failingUndo = null) =>
        new(new[] { "stop the vserver", "move the address", "boot the domain", "wait until it is up", "record the domain" }
            .Select(name => new ConversionStep(name, _ =>
            {
                _did.Add($"run {name}");
                if (name == failing) throw new InvalidOperationException($"{name} broke");
                return Task.CompletedTask;
            }, name == "wait until it is up" ? null : () =>
            {
                _did.Add($"undo {name}");
                if (name == failingUndo) throw new IOException($"undoing {name} broke");
                return Task.CompletedTask;
            })).ToList(),
            () =>
            {
                _did.Add("end: the vserver runs again");
                return Task.FromResult("rolled back: a vserver again");
            });

    [Fact]
    public async Task A_plan_that_succeeds_runs_every_step_in_order_and_journals_each_before_it_begins()
    {
        var plan = Plan();

        await plan.RunAsync(begun => _journal.Add([.. begun]), _ => "", TestContext.Current.CancellationToken);

        _did.ShouldBe(["run stop the vserver", "run move the address", "run boot the domain", "run wait until it is up", "run record the domain"]);
        _journal.Select(j => j.Count).ShouldBe([1, 2, 3, 4, 5]);
        _journal[2].ShouldBe(["stop the vserver", "move the address", "boot the domain"]);
        plan.Summary().ShouldContain("boot the domain");
    }

    [Fact]
    public async Task When_the_third_step_fails_it_and_the_two_before_it_are_undone_newest_first_and_the_error_names_it()
    {
        var failed = await Should.ThrowAsync<ConversionFailedException>(() =>
            Plan(failing: "boot the domain").RunAsync(begun => _journal.Add([.. begun]), _ => "", TestContext.Current.CancellationToken));

        failed.Step.ShouldBe("boot the domain");
        failed.Cause.Message.ShouldBe("boot the domain broke");
        failed.Outcome.ShouldBe("rolled back: a vserver again");
        _did.ShouldBe(["run stop the vserver", "run move the address", "run boot the domain",
            "undo boot the domain", "undo move the address", "undo stop the vserver", "end: the vserver runs again"]);
        // The failed step was journaled before it began: an agent dying in it would undo it too.
        _journal.Last().ShouldBe(["stop the vserver", "move the address", "boot the domain"]);
    }

    [Fact]
    public async Task A_rollback_that_fails_too_is_told_as_such_and_does_not_hide_the_first_failure()
    {
        var failed = await Should.ThrowAsync<ConversionFailedException>(() =>
            Plan(failing: "record the domain", failingUndo: "move the address")
                .RunAsync(_ => { }, e => $"rolling back failed too ({e.Message})", TestContext.Current.CancellationToken));

        failed.Step.ShouldBe("record the domain");
        failed.Outcome.ShouldBe("rolling back failed too (undoing move the address broke)");
        _did.ShouldNotContain("end: the vserver runs again");
    }

    [Fact]
    public async Task After_an_agents_death_the_steps_the_journal_names_are_undone_and_only_those()
    {
        var outcome = await Plan().RollBackAsync(["stop the vserver", "move the address"]);

        outcome.ShouldBe("rolled back: a vserver again");
        _did.ShouldBe(["undo move the address", "undo stop the vserver", "end: the vserver runs again"]);
    }

    [Fact]
    public async Task A_journal_from_before_steps_were_recorded_undoes_them_all()
    {
        await Plan().RollBackAsync(null);

        _did.ShouldBe(["undo record the domain", "undo boot the domain", "undo move the address", "undo stop the vserver", "end: the vserver runs again"]);
    }
}
