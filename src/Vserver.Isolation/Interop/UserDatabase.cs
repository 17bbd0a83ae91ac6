using System.Runtime.InteropServices;

namespace Vserver.Isolation.Interop;

/// <summary>
/// Users and groups as the system's databases have them (/etc/passwd and /etc/group, or whatever nsswitch.conf adds),
/// through getpwnam_r(3) and getgrnam_r(3): the agent socket's group, the user and group dnsmasq drops to.
/// </summary>
public static unsafe partial class UserDatabase
{
    /// <summary>The uid of user <paramref name="name"/>; null when there is no such user.</summary>
    public static uint? LookupUser(string name) => Lookup<Passwd>(name, "user", (b, size, entry, result) => GetPwNamR(name, entry, b, size, result), p => p.Uid);

    /// <summary>The gid of group <paramref name="name"/>; null when there is no such group.</summary>
    public static uint? LookupGroup(string name) => Lookup<Group>(name, "group", (b, size, entry, result) => GetGrNamR(name, entry, b, size, result), g => g.Gid);

    private delegate int Call<T>(byte* buffer, nuint size, T* entry, T** result) where T : unmanaged;

    private static uint? Lookup<T>(string name, string kind, Call<T> call, Func<T, uint> id) where T : unmanaged
    {
        const int ERANGE = 34;
        for (var size = 1024; ; size *= 2)
        {
            var buffer = new byte[size];
            T entry = default;
            T* result = null;
            int rc;
            fixed (byte* b = buffer) rc = call(b, (nuint)size, &entry, &result);
            if (rc == ERANGE && size < 1 << 20) continue;
            // getpwnam_r(3), getgrnam_r(3): 0, ENOENT, ESRCH, EBADF or EPERM with no result all mean "no such entry".
            if (result is null && rc is 0 or 1 or 2 or 3 or 9) return null;
            if (rc != 0) throw new IOException($"cannot look up {kind} {name}: {Marshal.GetPInvokeErrorMessage(rc)}");
            return id(entry);
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Passwd
    {
        public nint Name;
        public nint Password;
        public uint Uid;
        public uint Gid;
        public nint Gecos;
        public nint Dir;
        public nint Shell;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Group
    {
        public nint Name;
        public nint Password;
        public uint Gid;
        public nint Members;
    }

    [LibraryImport("libc", EntryPoint = "getpwnam_r", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int GetPwNamR(string name, Passwd* passwd, byte* buffer, nuint length, Passwd** result);

    [LibraryImport("libc", EntryPoint = "getgrnam_r", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int GetGrNamR(string name, Group* group, byte* buffer, nuint length, Group** result);
}
