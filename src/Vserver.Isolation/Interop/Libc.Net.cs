using System.Runtime.InteropServices;

namespace Vserver.Isolation.Interop;

/// <summary>Sockets, namespaces and the tun device: what talking rtnetlink to the kernel (<see cref="Network.Netlink"/>),
/// a network namespace bound to a file (<see cref="Network.NetNamespace"/>) and a domain's tap need.</summary>
internal static partial class Libc
{
    public const int AF_NETLINK = 16, SOCK_RAW = 3, SOCK_CLOEXEC = 0x80000, NETLINK_ROUTE = 0;
    public const int SOL_NETLINK = 270, NETLINK_CAP_ACK = 10, NETLINK_EXT_ACK = 11;
    public const int MSG_TRUNC = 0x20;
    public const int CLONE_NEWNET = 0x40000000;
    public const ulong MS_BIND = 0x1000;

    /// <summary>struct sockaddr_nl (12 bytes); port id 0 is the kernel.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct SockaddrNl
    {
        public ushort Family;
        public ushort Pad;
        public uint PortId;
        public uint Groups;
    }

    [LibraryImport(LibcName, EntryPoint = "socket", SetLastError = true)]
    public static partial int Socket(int domain, int type, int protocol);

    [LibraryImport(LibcName, EntryPoint = "bind", SetLastError = true)]
    public static unsafe partial int Bind(int fd, SockaddrNl* address, int length);

    [LibraryImport(LibcName, EntryPoint = "setsockopt", SetLastError = true)]
    public static unsafe partial int Setsockopt(int fd, int level, int name, void* value, int length);

    [LibraryImport(LibcName, EntryPoint = "sendto", SetLastError = true)]
    public static unsafe partial nint Sendto(int fd, byte* buffer, nint length, int flags, SockaddrNl* address, int addressLength);

    [LibraryImport(LibcName, EntryPoint = "recv", SetLastError = true)]
    public static unsafe partial nint Recv(int fd, byte* buffer, nint length, int flags);

    [LibraryImport(LibcName, EntryPoint = "setns", SetLastError = true)]
    public static partial int Setns(int fd, int nstype);

    [LibraryImport(LibcName, EntryPoint = "unshare", SetLastError = true)]
    public static partial int Unshare(int flags);

    [LibraryImport(LibcName, EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mount(string? source, string target, string? fstype, ulong flags, nint data);

    // The tun driver: a tap is made by naming it on an open /dev/net/tun (TUNSETIFF) and kept after close (TUNSETPERSIST).
    public const nuint TUNSETIFF = 0x400454ca, TUNSETPERSIST = 0x400454cb;
    public const short IFF_TAP = 0x0002, IFF_NO_PI = 0x1000, IFF_VNET_HDR = 0x4000;
    public const int IFNAMSIZ = 16;

    /// <summary>struct ifreq (40 bytes on x86-64) with the name and the flags member of its union.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 40)]
    public unsafe struct IfReq
    {
        [FieldOffset(0)] public fixed byte Name[IFNAMSIZ];
        [FieldOffset(16)] public short Flags;
    }
}
