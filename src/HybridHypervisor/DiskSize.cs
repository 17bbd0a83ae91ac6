namespace HybridHypervisor;

/// <summary>
/// The name the lifecycle files (Fleet.Disk.cs, Domains/DomainDisk.cs) still call disk sizes by in their messages; the
/// one implementation is <see cref="Vserver.Api.ByteSize.FormatExact"/>. It goes when those files call that directly
/// (left to the merge with the guest-driver restructuring, which moves them).
/// </summary>
internal static class DiskSize
{
    public static string Format(long bytes) => Vserver.Api.ByteSize.FormatExact(bytes);
}
