using System.Text.RegularExpressions;

namespace Vserver.Api;

/// <summary>
/// The contract's rule for the names of guests, images and kernels: DNS labels (1-63 lowercase letters, digits and
/// '-', not starting or ending with '-'). The agent's Vserver.Isolation.Naming.DnsLabel is this rule; vsctl checks a name here before it announces work on it, so that
/// <c>vsctl kernel build ../evil</c> is refused before anything says "building".
/// </summary>
public static partial class Names
{
    public const int MaxLength = 63;

    // \z, not $: in .NET, $ also matches before a final "\n".
    [GeneratedRegex(@"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\z")]
    private static partial Regex Pattern();

    public static bool IsValid(string? name) => name is not null && Pattern().IsMatch(name);

    /// <summary>What the rule is, for a refusal: "image names are DNS labels (...)".</summary>
    public static string Rule(string kind) =>
        $"{kind} names are DNS labels (1-{MaxLength} lowercase letters, digits and '-', not starting or ending with '-')";
}
