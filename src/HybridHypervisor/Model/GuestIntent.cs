namespace HybridHypervisor.Model;

/// <summary>
/// The intent journal of an operation that spans several side effects and cannot be read back from the guest's config
/// alone: written atomically (guests/NAME/intent.json) before its first side effect, removed once it has finished or
/// been rolled back. An agent that finds one at start-up finishes or undoes the operation it names. Create, destroy
/// and restore need none: their config's <see cref="GuestConfig.Phase"/> is their journal.
/// </summary>
public sealed record GuestIntent
{
    /// <summary>promote | demote | save</summary>
    public required string Operation { get; init; }
    public DateTimeOffset Began { get; init; }
    /// <summary>Whether the guest ran when the operation began: a rollback leaves it running again.</summary>
    public bool WasRunning { get; init; }
    /// <summary>Whether it was paused (a save resumes it on rollback only if it was not).</summary>
    public bool WasPaused { get; init; }
    /// <summary>Promote: whether the domain's root is a copy (the vserver's layers go once it is recorded).</summary>
    public bool Copy { get; init; }
    /// <summary>Promote: whether the domain booted beside the running vserver (which decides the plan's steps).</summary>
    public bool Beside { get; init; }
    /// <summary>Promote, demote: the steps of the plan begun so far, each recorded before it begins: what a rollback
    /// after the agent's death undoes. Null in a journal of an agent from before steps were recorded: undo them all.</summary>
    public IReadOnlyList<string>? Begun { get; init; }
    /// <summary>Save: the file asked for, and the hidden part file written first and renamed to it at the end.</summary>
    public string? File { get; init; }
    public string? PartFile { get; init; }
}
