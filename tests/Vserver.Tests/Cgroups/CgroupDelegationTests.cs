using Shouldly;
using Vserver.Isolation.Cgroups;
using Xunit;

namespace Vserver.Tests.Cgroups;

/// <summary>Where a command run in a guest whose init keeps its own cgroup tree lands: the init's cgroup, never one
/// outside the guest's own.</summary>
public sealed class CgroupDelegationTests
{
    private const string V1Init = """
        12:pids:/vserver/web1
        5:name=systemd:/vserver/web1/init.scope
        4:memory:/vserver/web1
        0::/vserver/web1/init.scope
        """;

    [Fact]
    public void Proc_cgroup_is_read_per_hierarchy()
    {
        var map = CgroupDelegation.ParseProcCgroup(V1Init);
        map["name=systemd"].ShouldBe("/vserver/web1/init.scope");
        map[""].ShouldBe("/vserver/web1/init.scope");
        map["memory"].ShouldBe("/vserver/web1");
    }

    [Fact]
    public void A_command_joins_the_init_s_cgroup_inside_the_guest_s_tree()
    {
        CgroupDelegation.InitCgroup("vserver/web1", "/vserver/web1/init.scope").ShouldBe("/vserver/web1/init.scope");
        CgroupDelegation.InitCgroup("vserver/web1", "/vserver/web1").ShouldBe("/vserver/web1");
    }

    [Theory]
    [InlineData("/vserver/web10/init.scope")]
    [InlineData("/vserver")]
    [InlineData("/vserver/web1/../web2")]
    [InlineData("/")]
    [InlineData(null)]
    public void Anything_outside_the_guest_s_own_cgroup_or_unknown_gives_the_guest_s_own(string? init) =>
        CgroupDelegation.InitCgroup("vserver/web1", init).ShouldBe("/vserver/web1");
}
