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
