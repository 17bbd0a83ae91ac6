using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Images;

/// <summary>
/// Unpacks tar entries into a directory that becomes an image root, as root, without ever writing outside it or
/// through a link: every entry's directory is opened beneath the root with no symbolic link followed (openat2
/// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), and the entry itself is made with the *at calls relative to that
/// descriptor, O_EXCL | O_NOFOLLOW where a file is opened, AT_SYMLINK_NOFOLLOW where one is changed. An entry that
/// lies beneath a link the archive made (the classic symlink-then-write escape) is refused, as is a name with '..' or an
/// absolute one. What an entry replaces is removed first (never written into), so a hard link the archive made cannot
/// carry a later write to another file. Owners are the archive's numeric ids, unshifted: images are stored as root
/// sees them and idmapped into each unprivileged vserver at mount time.
/// Character and block devices under /dev are skipped (a vserver's /dev is made by the host at every start, so an
/// image's own nodes would never be seen); anywhere else they are refused: a node in an image would be a door to a host
/// device for a privileged guest. FIFOs are kept.
/// With whiteouts on (an OCI layer), <c>.wh.NAME</c> removes NAME of the layers below and <c>.wh..wh..opq</c> empties
/// a directory of what the layers below put there.
/// </summary>
internal sealed class RootfsWriter : IDisposable
{
    private const ulong Beneath = Libc.RESOLVE_BENEATH | Libc.RESOLVE_NO_SYMLINKS | Libc.RESOLVE_NO_MAGICLINKS;
    private const int GuestIds = 65536;

    private readonly string _root;
    private readonly SafeFileHandle _rootHandle;
    private readonly int _rootFd;
    private readonly HashSet<string> _layer = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (long Seconds, int Nanoseconds)> _dirTimes = new(StringComparer.Ordinal);
    private readonly List<string> _skippedDevices = [];
    private string? _cachedDir;
    private int _cachedFd = -1;
    private bool _whiteouts;
    private bool _rootSeen;
    private int _droppedXattrs, _highIds, _entries;

    public RootfsWriter(string root)
    {
        _root = root;
        _rootFd = Libc.Open(root, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (_rootFd < 0) throw SystemCallException.FromLastError($"open {root}");
        _rootHandle = new SafeFileHandle(_rootFd, ownsHandle: true);
    }

    /// <summary>Entries made (whiteouts and skipped devices not counted).</summary>
    public int Entries => _entries;

    /// <summary>Starts a layer: whiteouts from here on apply to what earlier layers made, not to this layer's entries.</summary>
    public void BeginLayer(bool whiteouts)
    {
        _layer.Clear();
        _whiteouts = whiteouts;
    }

    /// <summary>Makes one entry, its data read from <paramref name="data"/>.</summary>
    public void Add(TarArchiveEntry entry, Stream data)
    {
        var path = ArchivePath.Normalize(entry.Name, out var error) ?? throw new ArchiveException(ArchiveReasons.UnsafePath, error!, entry.Name);
        if (_whiteouts)
        {
            var (kind, target) = LayerWhiteout.Classify(path);
            switch (kind)
            {
                case WhiteoutKind.Remove:
                    Whiteout(target, path);
                    return;
                case WhiteoutKind.Opaque:
                    Opaque(target, path);
                    return;
                case WhiteoutKind.Bookkeeping:
                    return;
            }
        }
        if (entry.Kind is TarEntryKind.CharDevice or TarEntryKind.BlockDevice)
        {
            if (path != "dev" && ArchivePath.IsWithin(path, "dev"))
            {
                _skippedDevices.Add(path);
                return;
            }
            throw new ArchiveException(ArchiveReasons.DeviceNode,
                $"entry '{Shown(path)}' is a {(entry.Kind == TarEntryKind.CharDevice ? "character" : "block")} device ({entry.DevMajor}:{entry.DevMinor}) outside /dev, " +
                "where an image may hold none (a privileged guest could open a host device through it); remove it from the archive", path);
        }
        if (entry.Uid is < 0 or > uint.MaxValue - 1 || entry.Gid is < 0 or > uint.MaxValue - 1)
            throw new ArchiveException(ArchiveReasons.Corrupt, $"entry '{Shown(path)}' has owner {entry.Uid}:{entry.Gid}, which is no user and group id", path);
        if (entry.Uid >= GuestIds || entry.Gid >= GuestIds) _highIds++;
        _entries++;
        if (path.Length == 0)
        {
            if (entry.Kind != TarEntryKind.Directory)
                throw new ArchiveException(ArchiveReasons.UnsafePath, $"the archive's root entry '{Shown(entry.Name)}' is not a directory", entry.Name);
            SetDirectory(_rootFd, ".", entry, "");
            _rootSeen = true;
            _layer.Add("");
            return;
        }
        var dir = ArchivePath.Parent(path);
        var leaf = ArchivePath.Leaf(path);
        var parent = DirectoryFd(dir, path);
        if (Libc.Fstatat(parent, leaf, out var existing, Libc.AT_SYMLINK_NOFOLLOW) == 0)
        {
            var isDir = (existing.Mode & Libc.S_IFMT) == Libc.S_IFDIR;
            if (entry.Kind == TarEntryKind.Directory && isDir)
            {
                SetDirectory(parent, leaf, entry, path);
                MarkLayer(path);
                return;
            }
            Remove(parent, leaf, path);
            parent = DirectoryFd(dir, path);
        }
        else if (Marshal.GetLastPInvokeError() != Errno.ENOENT)
        {
            throw Failed("fstatat", path);
        }
        switch (entry.Kind)
        {
            case TarEntryKind.Directory:
                if (Libc.Mkdirat(parent, leaf, 0x1C0 /* 0700 until its owner and mode are set */) != 0) throw Failed("mkdirat", path);
                SetDirectory(parent, leaf, entry, path);
                break;
            case TarEntryKind.File:
                WriteFile(parent, leaf, path, entry, data);
                break;
            case TarEntryKind.Symlink:
                if (entry.LinkName.Length == 0 || entry.LinkName.Contains('\0', StringComparison.Ordinal))
                    throw new ArchiveException(ArchiveReasons.Corrupt, $"symbolic link '{Shown(path)}' has an empty or malformed target", path);
                if (Libc.Symlinkat(entry.LinkName, parent, leaf) != 0) throw Failed("symlinkat", path);
                Own(parent, leaf, entry, path);
                break;
            case TarEntryKind.HardLink:
                HardLink(parent, leaf, path, entry);
                break;
            case TarEntryKind.Fifo:
                if (Libc.Mknodat(parent, leaf, Libc.S_IFIFO | 0x180, 0) != 0) throw Failed("mknodat", path);
                Own(parent, leaf, entry, path);
                if (Libc.Fchmodat(parent, leaf, entry.Mode, 0) != 0) throw Failed("fchmodat", path);
                break;
        }
        if (entry.Kind != TarEntryKind.Directory && entry.Kind != TarEntryKind.HardLink) SetTime(parent, leaf, entry.MtimeSeconds, entry.MtimeNanoseconds, path);
        MarkLayer(path);
    }

    /// <summary>Sets the directories' times (every entry made inside one changed it) and the root's default owner and
    /// mode when the archive had no entry for it.</summary>
    public void Finish()
    {
        if (!_rootSeen)
        {
            if (Libc.Fchown(_rootFd, 0, 0) != 0) throw Failed("fchown", "");
            if (Libc.Fchmod(_rootFd, 0x1ED /* 0755 */) != 0) throw Failed("fchmod", "");
        }
        foreach (var (path, (seconds, nanoseconds)) in _dirTimes.OrderByDescending(d => d.Key.Count(c => c == '/')).ThenByDescending(d => d.Key.Length))
        {
            if (path.Length == 0)
            {
                SetTime(_rootFd, ".", seconds, nanoseconds, path);
                continue;
            }
            var parent = DirectoryFd(ArchivePath.Parent(path), path, create: false);
            if (parent < 0) continue;
            if (Libc.Fstatat(parent, ArchivePath.Leaf(path), out var stat, Libc.AT_SYMLINK_NOFOLLOW) != 0 || (stat.Mode & Libc.S_IFMT) != Libc.S_IFDIR) continue;
            SetTime(parent, ArchivePath.Leaf(path), seconds, nanoseconds, path);
        }
    }

    /// <summary>What was skipped or changed, one line each.</summary>
    public IReadOnlyList<string> Notes()
    {
        var notes = new List<string>();
        if (_skippedDevices.Count > 0)
            notes.Add($"skipped {_skippedDevices.Count} device node{(_skippedDevices.Count == 1 ? "" : "s")} under /dev " +
                $"({string.Join(", ", _skippedDevices.Take(3).Select(d => "/" + d))}{(_skippedDevices.Count > 3 ? ", ..." : "")}): " +
                "a vserver's /dev is made by the host at every start");
        if (_droppedXattrs > 0)
            notes.Add($"dropped {_droppedXattrs} extended attribute{(_droppedXattrs == 1 ? "" : "s")} other than file capabilities (security.capability is kept)");
        if (_highIds > 0)
            notes.Add($"{_highIds} entr{(_highIds == 1 ? "y is" : "ies are")} owned by ids above {GuestIds - 1}: inside an unprivileged vserver (ids 0 to {GuestIds - 1}) they show as nobody");
        return notes;
    }

    private void WriteFile(int parent, string leaf, string path, TarArchiveEntry entry, Stream data)
    {
        var fd = Libc.Openat(parent, leaf, Libc.O_WRONLY | Libc.O_CREAT | Libc.O_EXCL | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0x180 /* 0600 */);
        if (fd < 0) throw Failed("create", path);
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        using var file = new FileStream(handle, FileAccess.Write, bufferSize: 0);
        data.CopyTo(file, 1 << 17);
        // Owner first: chown clears setuid, setgid and file capabilities.
        if (Libc.Fchown(fd, (uint)entry.Uid, (uint)entry.Gid) != 0) throw Failed("fchown", path);
        if (Libc.Fchmod(fd, entry.Mode) != 0) throw Failed("fchmod", path);
        foreach (var (name, value) in entry.Xattrs)
        {
            if (name != "security.capability")
            {
                _droppedXattrs++;
                continue;
            }
            unsafe
            {
                fixed (byte* p = value)
                    if (Libc.Fsetxattr(fd, name, p, value.Length, 0) != 0)
                        throw new ArchiveException(ArchiveReasons.Corrupt,
                            $"entry '{Shown(path)}' has a file capability the kernel refuses ({SystemCallException.Format("fsetxattr security.capability", Marshal.GetLastPInvokeError())})", path);
            }
        }
    }

    private void HardLink(int parent, string leaf, string path, TarArchiveEntry entry)
    {
        var target = ArchivePath.Normalize(entry.LinkName, out var error);
        if (target is null || target.Length == 0)
            throw new ArchiveException(ArchiveReasons.UnsafePath, $"hard link '{Shown(path)}' points at '{Shown(entry.LinkName)}': {error ?? "the root"}", path);
        var targetDir = DirectoryFd(ArchivePath.Parent(target), target, create: false, cache: false);
        if (targetDir < 0)
            throw new ArchiveException(ArchiveReasons.Corrupt, $"hard link '{Shown(path)}' points at '{Shown(target)}', which the archive has not made before it", path);
        try
        {
            var targetLeaf = ArchivePath.Leaf(target);
            if (Libc.Fstatat(targetDir, targetLeaf, out var stat, Libc.AT_SYMLINK_NOFOLLOW) != 0)
                throw new ArchiveException(ArchiveReasons.Corrupt, $"hard link '{Shown(path)}' points at '{Shown(target)}', which the archive has not made before it", path);
            if ((stat.Mode & Libc.S_IFMT) == Libc.S_IFDIR)
                throw new ArchiveException(ArchiveReasons.Corrupt, $"hard link '{Shown(path)}' points at directory '{Shown(target)}'", path);
            // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself, never what it points at.
            if (Libc.Linkat(targetDir, targetLeaf, parent, leaf, 0) != 0) throw Failed("linkat", path);
        }
        finally
        {
            if (targetDir != _rootFd) Libc.Close(targetDir);
        }
    }

    private void SetDirectory(int parent, string leaf, TarArchiveEntry entry, string path)
    {
        var fd = Libc.Openat(parent, leaf, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw Failed("open", path);
        try
        {
            if (Libc.Fchown(fd, (uint)entry.Uid, (uint)entry.Gid) != 0) throw Failed("fchown", path);
            if (Libc.Fchmod(fd, entry.Mode) != 0) throw Failed("fchmod", path);
        }
        finally
        {
            Libc.Close(fd);
        }
        _dirTimes[path] = (entry.MtimeSeconds, entry.MtimeNanoseconds);
    }

    private void Own(int parent, string leaf, TarArchiveEntry entry, string path)
    {
        if (Libc.Fchownat(parent, leaf, (uint)entry.Uid, (uint)entry.Gid, Libc.AT_SYMLINK_NOFOLLOW) != 0) throw Failed("fchownat", path);
    }

    private unsafe void SetTime(int parent, string leaf, long seconds, int nanoseconds, string path)
    {
        var times = stackalloc Libc.Timespec[2];
        times[0] = new Libc.Timespec { Seconds = seconds, Nanoseconds = nanoseconds };
        times[1] = times[0];
        if (Libc.Utimensat(parent, leaf, times, leaf == "." ? 0 : Libc.AT_SYMLINK_NOFOLLOW) != 0) throw Failed("utimensat", path);
    }

    /// <summary>Counts <paramref name="path"/> and every directory above it as this layer's: a layer that puts a file in
    /// a directory has that directory (as an overlay's upper layer would), even without an entry of its own for it.</summary>
    private void MarkLayer(string path)
    {
        while (_layer.Add(path) && path.Length > 0) path = ArchivePath.Parent(path);
    }

    /// <summary><c>.wh.NAME</c>: NAME of the layers below goes (unless this layer made it).</summary>
    private void Whiteout(string target, string entry)
    {
        if (_layer.Contains(target)) return;
        var parent = DirectoryFd(ArchivePath.Parent(target), entry, create: false);
        if (parent < 0) return;
        var leaf = ArchivePath.Leaf(target);
        if (Libc.Fstatat(parent, leaf, out _, Libc.AT_SYMLINK_NOFOLLOW) != 0) return;
        Remove(parent, leaf, target);
    }

    /// <summary><c>DIR/.wh..wh..opq</c>: DIR keeps only what this layer puts in it.</summary>
    private void Opaque(string dir, string entry)
    {
        var fd = DirectoryFd(dir, entry, create: false, cache: false);
        if (fd < 0) return;
        try
        {
            KeepOnlyLayer(fd, dir);
        }
        finally
        {
            if (fd != _rootFd) Libc.Close(fd);
        }
    }

    private void KeepOnlyLayer(int dirFd, string dir)
    {
        foreach (var name in Names(dirFd))
        {
            var path = ArchivePath.Join(dir, name);
            if (!_layer.Contains(path))
            {
                Remove(dirFd, name, path);
                continue;
            }
            if (Libc.Fstatat(dirFd, name, out var stat, Libc.AT_SYMLINK_NOFOLLOW) != 0 || (stat.Mode & Libc.S_IFMT) != Libc.S_IFDIR) continue;
            var child = Libc.Openat(dirFd, name, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
            if (child < 0) throw Failed("open", path);
            try
            {
                KeepOnlyLayer(child, path);
            }
            finally
            {
                Libc.Close(child);
            }
        }
    }

    /// <summary>Removes an entry and, for a directory, all beneath it, never following a link.</summary>
    private void Remove(int parent, string leaf, string path)
    {
        if (Libc.Fstatat(parent, leaf, out var stat, Libc.AT_SYMLINK_NOFOLLOW) != 0) throw Failed("fstatat", path);
        if ((stat.Mode & Libc.S_IFMT) != Libc.S_IFDIR)
        {
            if (Libc.Unlinkat(parent, leaf, 0) != 0) throw Failed("unlinkat", path);
            return;
        }
        if (_cachedDir is not null && ArchivePath.IsWithin(_cachedDir, path)) DropCache();
        var fd = Libc.Openat(parent, leaf, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw Failed("open", path);
        try
        {
            foreach (var name in Names(fd)) Remove(fd, name, ArchivePath.Join(path, name));
        }
        finally
        {
            Libc.Close(fd);
        }
        if (Libc.Unlinkat(parent, leaf, Libc.AT_REMOVEDIR) != 0) throw Failed("rmdir", path);
    }

    /// <summary>The names in a directory opened as <paramref name="fd"/> (read through its /proc/self/fd link, which
    /// names that very directory whatever its path).</summary>
    private static List<string> Names(int fd) =>
        Directory.EnumerateFileSystemEntries($"/proc/self/fd/{fd}", "*", new EnumerationOptions { AttributesToSkip = 0, RecurseSubdirectories = false })
            .Select(Path.GetFileName).OfType<string>().ToList();

    /// <summary>
    /// The directory <paramref name="dir"/> beneath the root, opened O_PATH: made (0755, root's) where missing when
    /// <paramref name="create"/>, else -1. A link or a file on the way is refused: nothing is made through a link.
    /// The last one opened is kept for the next entry (tar lists a directory's files together) unless
    /// <paramref name="cache"/> is false; then the caller closes it (unless it is the root).
    /// </summary>
    private int DirectoryFd(string dir, string entry, bool create = true, bool cache = true)
    {
        if (dir.Length == 0) return _rootFd;
        if (cache && _cachedDir == dir) return _cachedFd;
        var fd = Libc.Openat2(_rootFd, dir, new Libc.OpenHow { Flags = (ulong)(Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC), Resolve = Beneath });
        if (fd < 0) fd = Walk(dir, entry, create);
        if (fd < 0 || !cache) return fd;
        DropCache();
        _cachedDir = dir;
        _cachedFd = fd;
        return fd;
    }

    /// <summary>One component at a time: what openat2 refused, said precisely, or the missing directories made.</summary>
    private int Walk(string dir, string entry, bool create)
    {
        var fd = Libc.Openat(_rootFd, ".", Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw Failed("open", "");
        var walked = "";
        foreach (var part in dir.Split('/'))
        {
            walked = ArchivePath.Join(walked, part);
            var next = Libc.Openat(fd, part, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
            if (next < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.ENOENT && create)
                {
                    if (Libc.Mkdirat(fd, part, 0x1ED /* 0755 */) != 0) throw Failed("mkdirat", walked, fd);
                    next = Libc.Openat(fd, part, Libc.O_PATH | Libc.O_DIRECTORY | Libc.O_NOFOLLOW | Libc.O_CLOEXEC, 0);
                }
                else if (errno == Errno.ENOENT)
                {
                    Libc.Close(fd);
                    return -1;
                }
                else if (errno is Errno.ENOTDIR or Errno.ELOOP)
                {
                    var isLink = Libc.Fstatat(fd, part, out var stat, Libc.AT_SYMLINK_NOFOLLOW) == 0 && (stat.Mode & Libc.S_IFMT) == Libc.S_IFLNK;
                    Libc.Close(fd);
                    throw new ArchiveException(ArchiveReasons.UnsafePath, isLink
                        ? $"entry '{Shown(entry)}' lies beneath '{Shown(walked)}', which is a symbolic link in the image: nothing is unpacked through a link"
                        : $"entry '{Shown(entry)}' lies beneath '{Shown(walked)}', which is not a directory in the image", entry);
                }
                if (next < 0) throw Failed("open", walked, fd);
            }
            Libc.Close(fd);
            fd = next;
        }
        return fd;
    }

    private void DropCache()
    {
        if (_cachedFd >= 0) Libc.Close(_cachedFd);
        _cachedFd = -1;
        _cachedDir = null;
    }

    private SystemCallException Failed(string operation, string path, int closeFd = -1)
    {
        var e = SystemCallException.FromLastError($"{operation} {Path.Combine(_root, path)}");
        if (closeFd >= 0) Libc.Close(closeFd);
        return e;
    }

    private static string Shown(string path) => ArchivePath.Shown(path);

    public void Dispose()
    {
        DropCache();
        _rootHandle.Dispose();
    }
}
