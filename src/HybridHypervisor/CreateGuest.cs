using HybridHypervisor.Model;

namespace HybridHypervisor;

/// <summary>What a caller asks for when creating a guest; sizes already in bytes.</summary>
public sealed record CreateGuest(string Name, string? Image, GuestLimits Limits, string? Ipv4, string? Restart, IReadOnlyList<string>? Command,
    bool Privileged = false, IReadOnlyList<string>? AllowSyscalls = null, GuestKind Kind = GuestKind.Vserver, string? Kernel = null,
    int? Vcpus = null, long? DiskBytes = null, bool Autostart = false);
