using System.Text;

namespace Vserver.Isolation.Naming;

/// <summary>
/// The one rule for names that become paths, interface hashes and cgroup names: guests and images alike. A DNS label
/// has no '/', '.', NUL, uppercase or non-ASCII character and is at most 63 characters, so a valid name is always a
/// single, ordinary path component under the state root.
/// </summary>
public static class DnsLabel
{
    public const int MaxLength = Vserver.Api.Names.MaxLength;

    /// <summary>The contract's rule (<see cref="Vserver.Api.Names"/>), the one vsctl checks too.</summary>
    public static bool IsValid(string? name) => Vserver.Api.Names.IsValid(name);

    /// <summary>Why <paramref name="name"/> is no valid name for a <paramref name="kind"/> (guest, image), or null.</summary>
    public static string? Error(string? name, string kind) =>
        IsValid(name) ? null : $"invalid name '{Shown(name)}': {Vserver.Api.Names.Rule(kind)}";

    /// <summary>A name as it may be echoed in a one-line message: control and invisible formatting characters escaped,
    /// and cut short when longer than any valid name could be.</summary>
    public static string Shown(string? name)
    {
        if (name is null) return "";
        var cut = name.Length > MaxLength + 1;
        var length = cut ? MaxLength + 1 : name.Length;
        if (cut && char.IsHighSurrogate(name[length - 1])) length--;
        var text = new StringBuilder(length + 8);
        foreach (var ch in name.AsSpan(0, length))
        {
            if (char.IsControl(ch) || char.GetUnicodeCategory(ch) is System.Globalization.UnicodeCategory.Format
                    or System.Globalization.UnicodeCategory.LineSeparator or System.Globalization.UnicodeCategory.ParagraphSeparator)
                text.Append($"\\u{(int)ch:x4}");
            else
                text.Append(ch);
        }
        if (cut) text.Append($"... ({name.Length} characters)");
        return text.ToString();
    }
}
