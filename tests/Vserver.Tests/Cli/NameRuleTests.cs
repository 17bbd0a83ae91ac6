using FsCheck;
using FsCheck.Fluent;
using Vserver.Api;
using Vserver.Isolation.Naming;
using Vserver.Tests.Properties;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>vsctl refuses an image or kernel name by the contract's <see cref="Names"/>; the agent by DnsLabel. They must agree.</summary>
public sealed class NameRuleTests
{
    [Fact]
    public void The_contract_s_name_rule_is_the_agent_s()
    {
        var names = Gen.Frequency((3, Generators.HostileString),
            (1, Gen.Elements("web1", "a", "0", "a-b", new string('a', 63), new string('a', 64), "-a", "a-", "A", "a.b", "web1\n", "")));
        PropertyRun.Check(Prop.ForAll(names.Arb(), name =>
            (Names.IsValid(name) == DnsLabel.IsValid(name)).Label($"{PropertyRun.Show(name)}: contract {Names.IsValid(name)}, agent {DnsLabel.IsValid(name)}")));
    }

    [Fact]
    public void The_rule_s_words_are_the_agent_s()
    {
        Assert.Equal(DnsLabel.Error("Bad..Name", "image"), $"invalid name 'Bad..Name': {Names.Rule("image")}");
    }
}
