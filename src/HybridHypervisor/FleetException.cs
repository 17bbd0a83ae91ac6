using HybridHypervisor.Model;
using Vserver.Api;

namespace HybridHypervisor;

public enum FleetError { Invalid, NotFound, Conflict, Failed }

/// <summary>
/// An operation the fleet refused or could not do. The message is one plain line for the operator, without advice on
/// how any client spells the fix; <see cref="Code"/> and <see cref="Fields"/> say what went wrong for a program (one
/// of <see cref="ErrorCodes"/>), so that a client (vsctl) can give that advice in its own terms.
/// </summary>
public sealed class FleetException : Exception
{
    private static readonly IReadOnlyDictionary<string, string> NoFields = new Dictionary<string, string>();

    /// <summary>A refusal with the generic code of its kind.</summary>
    public FleetException(FleetError kind, string message, Exception? inner = null)
        : this(kind, GenericCode(kind), NoFields, message, inner)
    {
    }

    public FleetException(FleetError kind, string code, IReadOnlyDictionary<string, string> fields, string message, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        Code = code;
        Fields = fields;
    }

    public FleetError Kind { get; }
    /// <summary>One of <see cref="ErrorCodes"/>.</summary>
    public string Code { get; }
    public IReadOnlyDictionary<string, string> Fields { get; }

    public static FleetException Invalid(string message) => new(FleetError.Invalid, message);
    public static FleetException NotFound(string message) => new(FleetError.NotFound, message);
    public static FleetException Conflict(string message) => new(FleetError.Conflict, message);

    /// <summary>A value the validator refused, with its field, value and reason.</summary>
    public static FleetException Invalid(SettingError error)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["field"] = error.Field,
            ["value"] = error.Value ?? "",
            ["reason"] = error.Reason,
        };
        foreach (var (key, value) in error.Details) fields[key] = value;
        return new FleetException(FleetError.Invalid, ErrorCodes.InvalidValue, fields, error.Message);
    }

    /// <summary>A create option the guest's kind does not have (<paramref name="option"/>: its <see cref="GuestSpec"/> field).</summary>
    public static FleetException OptionNotForKind(string option, GuestKind kind)
    {
        var kindName = kind == GuestKind.Vserver ? GuestKinds.Vserver : GuestKinds.Domain;
        var other = kind == GuestKind.Vserver ? "domains" : "vservers";
        return new(FleetError.Invalid, ErrorCodes.OptionNotForKind, FieldsOf(("option", option), ("kind", kindName)),
            $"{option} is for {other}, and this guest is a {kindName}");
    }

    public static FleetException NameTaken(string name) =>
        new(FleetError.Conflict, ErrorCodes.NameTaken, FieldsOf(("name", name)), $"a guest named '{name}' already exists");

    public static FleetException AddressTaken(string address, string owner) =>
        new(FleetError.Conflict, ErrorCodes.AddressTaken, FieldsOf(("address", address), ("owner", owner)),
            $"address {address} is already taken by guest '{owner}'");

    public static FleetException GuestNotFound(string name) =>
        new(FleetError.NotFound, ErrorCodes.NotFound, FieldsOf(("guest", name)), $"no guest named '{name}'");

    public static FleetException NotRunning(string name) =>
        new(FleetError.Conflict, ErrorCodes.NotRunning, FieldsOf(("guest", name)), $"guest '{name}' is not running");

    /// <summary>A refusal with its own code (one of <see cref="ErrorCodes"/>) and the fields that code documents.</summary>
    public static FleetException Coded(FleetError kind, string code, string message, params (string Key, string Value)[] fields) =>
        new(kind, code, FieldsOf(fields), message);

    /// <summary>The guest runs (or is paused: <paramref name="state"/>) and <paramref name="operation"/> (start or
    /// destroy) needs it stopped.</summary>
    public static FleetException AlreadyRunning(string name, string state, string operation) =>
        Coded(FleetError.Conflict, ErrorCodes.AlreadyRunning,
            operation == "start" ? $"guest '{name}' is already {state}" : $"guest '{name}' is {state}; stop it first",
            ("guest", name), ("state", state), ("operation", operation));

    public static FleetException Paused(string name) =>
        Coded(FleetError.Conflict, ErrorCodes.Paused, $"guest '{name}' is paused", ("guest", name));

    /// <summary>A guest the agent holds as broken: <paramref name="problem"/> says why.</summary>
    public static FleetException Broken(string name, string problem) =>
        Coded(FleetError.Conflict, ErrorCodes.Broken, $"guest '{name}' is broken: {problem}", ("guest", name), ("problem", problem));

    /// <summary>The image <paramref name="guest"/> is made from is not built (any more).</summary>
    public static FleetException ImageMissing(string image, string guest) =>
        Coded(FleetError.Conflict, ErrorCodes.ImageMissing, $"image '{image}' of guest '{guest}' is gone", ("image", image), ("guest", guest));

    /// <summary>A kernel that is not built; <paramref name="built"/>: those that are.</summary>
    public static FleetException KernelMissing(FleetError kind, string kernel, IEnumerable<string> built)
    {
        var names = string.Join(", ", built);
        return Coded(kind, ErrorCodes.KernelMissing, $"unknown kernel '{kernel}'; built kernels: {(names.Length > 0 ? names : "none")}",
            ("kernel", kernel), ("built", names.Replace(", ", ",", StringComparison.Ordinal)));
    }

    private static Dictionary<string, string> FieldsOf(params (string Key, string Value)[] fields) =>
        fields.ToDictionary(f => f.Key, f => f.Value, StringComparer.Ordinal);

    private static string GenericCode(FleetError kind) => kind switch
    {
        FleetError.Invalid => ErrorCodes.Invalid,
        FleetError.NotFound => ErrorCodes.NotFound,
        FleetError.Conflict => ErrorCodes.Conflict,
        _ => ErrorCodes.Failed,
    };
}
