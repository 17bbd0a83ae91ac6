using FsCheck;
using FsCheck.Fluent;
using HybridHypervisor.Model;
using Xunit;

namespace Vserver.Tests.Properties;

/// <summary>Guest names become directory names, cgroup names and part of veth names, so the DNS-label rule is what keeps
/// '/', '.', NUL and friends out of paths. NameError returns a message for a bad name and must never throw.</summary>
public sealed class GuestNameProperties
{
    /// <summary>The rule, written without a regex: 1-63 of a-z, 0-9 and '-', first and last not '-'.</summary>
    internal static bool IsDnsLabel(string? s) =>
        s is { Length: >= 1 and <= 63 }
        && s.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-')
        && s[0] != '-' && s[^1] != '-';

    private static readonly Gen<string?> Names = Gen.Frequency(
        (4, Generators.HostileString.Select(s => (string?)s)),
        (3, Generators.ValidLabel.SelectMany(l => Generators.Mutate(l, Generators.HostileChar)).Select(s => (string?)s)),
        (2, Generators.ValidLabel.Select(s => (string?)s)),
        (1, Gen.Constant<string?>(null)));

    [Fact]
    public void Name_check_never_throws_and_accepts_exactly_the_dns_labels()
    {
        PropertyRun.Check(Prop.ForAll(Names.Arb(), name =>
        {
            var error = GuestConfigValidator.NameError(name)?.Message;
            var accepted = error is null;
            var label = $"name {PropertyRun.Show(name)}: {(accepted ? "accepted" : "refused")}";
            if (!accepted) return (!IsDnsLabel(name) && error!.StartsWith("invalid name", StringComparison.Ordinal)).Label(label);
            return (IsDnsLabel(name) && name!.Length <= 63 && !name.Contains('/') && !name.Contains('.') && !name.Contains('\0')
                && !name.Any(char.IsControl)).Label(label);
        }));
    }

    [Fact]
    public void Every_dns_label_is_accepted()
    {
        PropertyRun.Check(Prop.ForAll(Generators.ValidLabel.Arb(), name =>
            (IsDnsLabel(name) && GuestConfigValidator.NameError(name) is null).Label($"name {PropertyRun.Show(name)}")));
    }
}
