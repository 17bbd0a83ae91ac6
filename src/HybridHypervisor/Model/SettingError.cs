using Vserver.Api;

namespace HybridHypervisor.Model;

/// <summary>
/// Why the validator refuses one value: the field (as <see cref="GuestSpec"/> names it), the value as given, a reason
/// of <see cref="ErrorCodes.Reasons"/>, what bounds it broke (<see cref="Details"/>: minimum, maximum, subnet, built)
/// and one plain line saying so. It reads as that line wherever a message is wanted.
/// </summary>
public sealed record SettingError(string Field, string? Value, string Reason, string Message)
{
    public IReadOnlyDictionary<string, string> Details { get; init; } = new Dictionary<string, string>();

    public SettingError With(string key, long value) => With(key, value.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public SettingError With(string key, string value) =>
        this with { Details = new Dictionary<string, string>(Details, StringComparer.Ordinal) { [key] = value } };

    public override string ToString() => Message;
}
