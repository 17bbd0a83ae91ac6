using System.Net;

namespace Vserver.Isolation.Network;

/// <summary>
/// What a guest's /etc/resolv.conf says: its name servers in order and the search domain (the host resolver's suffix,
/// so a bare guest name resolves). A guest given none (null where this is asked for) keeps its own file.
/// </summary>
public sealed record ResolvConf(IReadOnlyList<IPAddress> Servers, string? Search)
{
    /// <summary>The file's text, as vsinit writes it into a vserver's root and the initramfs into a domain's.</summary>
    public string Render()
    {
        var text = new System.Text.StringBuilder("# written by vserver at each start; create the guest with --dns none to keep your own\n");
        foreach (var server in Servers) text.Append("nameserver ").Append(server).Append('\n');
        if (Search is not null) text.Append("search ").Append(Search).Append('\n');
        return text.ToString();
    }
}
