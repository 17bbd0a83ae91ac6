using System.Runtime.InteropServices;

namespace Vserver.Isolation.Interop;

/// <summary>statfs(2) and the loop device's capacity ioctl: what a vserver's disk quota layer needs.</summary>
internal static partial class Libc
{
    /// <summary>struct statfs on x86-64 (glibc), 120 bytes.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct StatFs
    {
        public long Type;
        public long BlockSize;
        public ulong Blocks;
        public ulong BlocksFree;
        public ulong BlocksAvailable;
        public ulong Files;
        public ulong FilesFree;
        /// <summary>fsid_t: two ints; distinct per mounted filesystem (ext4 derives it from its UUID).</summary>
        public ulong FsId;
        public long NameLength;
        public long FragmentSize;
        public long Flags;
        public long Spare0, Spare1, Spare2, Spare3;
    }

    [LibraryImport(LibcName, EntryPoint = "statfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Statfs(string path, out StatFs buf);

    /// <summary>LOOP_SET_CAPACITY: the loop device re-reads its backing file's size (losetup -c).</summary>
    public const nuint LOOP_SET_CAPACITY = 0x4C07;
}
