namespace HybridHypervisor;

public enum FleetError { Invalid, NotFound, Conflict, Failed }

/// <summary>An operation the fleet refused or could not do; the message is for the operator, one line.</summary>
public sealed class FleetException(FleetError kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public FleetError Kind { get; } = kind;

    public static FleetException Invalid(string message) => new(FleetError.Invalid, message);
    public static FleetException NotFound(string message) => new(FleetError.NotFound, message);
    public static FleetException Conflict(string message) => new(FleetError.Conflict, message);
}
