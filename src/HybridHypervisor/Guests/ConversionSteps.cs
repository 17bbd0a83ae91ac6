using System.Diagnostics;
using System.Globalization;

namespace HybridHypervisor.Guests;

/// <summary>One step of a conversion and its undo (null where there is nothing to undo, or where the plan's rollback end
/// puts it right: a stopped guest is started again there, after every step's undo).</summary>
/// <param name="Undo">Must cope with a step that ran only partly (a failure or an agent's death in its middle) and with
/// being run twice.</param>
internal sealed record ConversionStep(string Name, Func<CancellationToken, Task> Run, Func<Task>? Undo = null);

/// <summary>A conversion that failed at <see cref="Step"/> and was rolled back (<see cref="Outcome"/> says to what).</summary>
internal sealed class ConversionFailedException(string step, Exception cause, string outcome) : Exception(cause.Message, cause)
{
    public string Step { get; } = step;
    public Exception Cause { get; } = cause;
    public string Outcome { get; } = outcome;
}

/// <summary>
/// A conversion (promotion, demotion; later a move between hosts) as a plan: steps in order, each with its undo, and what
/// a rollback ends with (the guest running again as what it was, if it ran). This one executor runs every plan: each
/// step's name goes to the caller's journal before the step begins, and a step that fails makes the executor undo the
/// steps begun, newest first, then end the rollback. After an agent's death the next agent builds the same plan and
/// undoes the steps its journal names (<see cref="RollBackAsync"/>), with the same code.
/// </summary>
internal sealed class ConversionSteps(IReadOnlyList<ConversionStep> steps, Func<Task<string>> rollbackEnd)
{
    private readonly Stopwatch _clock = new();
    private readonly List<(string Step, TimeSpan Took)> _done = [];

    public IReadOnlyList<ConversionStep> Steps { get; } = steps;

    /// <summary>Runs the steps in order; <paramref name="begin"/> records each step's name before it begins. On a failure
    /// the begun steps are undone and a <see cref="ConversionFailedException"/> says where it failed and what it is now;
    /// <paramref name="rollbackFailed"/> words the outcome when undoing fails too.</summary>
    public async Task RunAsync(Action<IReadOnlyList<string>> begin, Func<Exception, string> rollbackFailed, CancellationToken ct)
    {
        var begun = new List<string>();
        _clock.Start();
        foreach (var step in Steps)
        {
            begun.Add(step.Name);
            var began = _clock.Elapsed;
            try
            {
                begin(begun);
                await step.Run(ct);
            }
            catch (Exception e)
            {
                string outcome;
                try
                {
                    outcome = await RollBackAsync(begun);
                }
                catch (Exception undo)
                {
                    outcome = rollbackFailed(undo);
                }
                throw new ConversionFailedException(step.Name, e, outcome);
            }
            _done.Add((step.Name, _clock.Elapsed - began));
        }
    }

    /// <summary>Undoes the steps named (all of them when null: a journal from before steps were journaled), newest first,
    /// then ends the rollback; returns what the guest is now. Throws when an undo fails.</summary>
    public async Task<string> RollBackAsync(IReadOnlyCollection<string>? begun)
    {
        foreach (var step in Steps.Reverse())
        {
            if (begun is not null && !begun.Contains(step.Name)) continue;
            if (step.Undo is { } undo) await undo();
        }
        return await rollbackEnd();
    }

    /// <summary>How long the whole took and each step, for the agent's log.</summary>
    public string Summary()
    {
        static string S(TimeSpan t) => t.TotalSeconds.ToString("0.00", CultureInfo.InvariantCulture);
        return $"in {S(_clock.Elapsed)} s ({string.Join(", ", _done.Select(d => $"{d.Step} {S(d.Took)} s"))})";
    }
}
