namespace Vserver.Api;

/// <summary>The kinds of guest as the contract names them (<see cref="GuestSpec.Kind"/>, <see cref="GuestInfo.Kind"/>).</summary>
public static class GuestKinds
{
    /// <summary>Shares the host's kernel: namespaces, cgroups, a copy-on-write root.</summary>
    public const string Vserver = "vserver";
    /// <summary>A virtual machine under QEMU with its own kernel.</summary>
    public const string Domain = "domain";

    public static bool IsDomain(GuestInfo guest) => guest.Kind == Domain;
}
