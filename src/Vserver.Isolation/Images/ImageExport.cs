using System.Diagnostics;
using Microsoft.Win32.SafeHandles;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Images;

/// <summary>
/// An image root written out as a tarball that imports again to the same files: every entry with its numeric owner,
/// mode, time and file capability, hard links kept as links, names relative to the root ("./etc/passwd", as
/// tar -C ROOT -c . names them) in a stable order. Compressed by the host's own tool as a filter when asked.
/// </summary>
internal static class ImageExport
{
    private const int AT_FDCWD = -100;

    public static void Write(string rootfs, Stream output, ArchiveCompression compression)
    {
        if (compression == ArchiveCompression.None)
        {
            using var buffered = new BufferedStream(output, 1 << 16);
            WriteTar(rootfs, buffered);
            buffered.Flush();
            return;
        }
        var (program, args) = ArchiveFormat.Filter(compression, compress: true);
        var psi = new ProcessStartInfo(program) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["LC_ALL"] = "C";
        using var filter = Process.Start(psi) ?? throw new IOException($"{program}: could not start");
        var stderr = filter.StandardError.ReadToEndAsync();
        var feeder = Task.Factory.StartNew(() =>
        {
            using var stdin = new BufferedStream(filter.StandardInput.BaseStream, 1 << 16);
            WriteTar(rootfs, stdin);
        }, TaskCreationOptions.LongRunning);
        try
        {
            filter.StandardOutput.BaseStream.CopyTo(output, 1 << 16);
            feeder.GetAwaiter().GetResult();
        }
        catch
        {
            if (!filter.HasExited) filter.Kill();
            throw;
        }
        filter.WaitForExit();
        if (filter.ExitCode != 0) throw new IOException($"{program} {string.Join(' ', args)} failed writing the archive: {stderr.Result.Trim()}");
    }

    private static void WriteTar(string rootfs, Stream output)
    {
        var writer = new TarArchiveWriter(output);
        var links = new Dictionary<(ulong Dev, ulong Ino), string>();
        if (Libc.Fstatat(AT_FDCWD, rootfs, out var root, Libc.AT_SYMLINK_NOFOLLOW) != 0) throw SystemCallException.FromLastError($"stat {rootfs}");
        writer.Write(Entry("./", TarEntryKind.Directory, root), null);
        WriteDirectory(writer, rootfs, "", links);
        writer.Finish();
    }

    private static void WriteDirectory(TarArchiveWriter writer, string rootfs, string dir, Dictionary<(ulong, ulong), string> links)
    {
        var full = dir.Length == 0 ? rootfs : Path.Combine(rootfs, dir);
        var names = Directory.EnumerateFileSystemEntries(full, "*", new EnumerationOptions { AttributesToSkip = 0, RecurseSubdirectories = false })
            .Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList();
        foreach (var name in names)
        {
            var path = ArchivePath.Join(dir, name);
            var abs = Path.Combine(rootfs, path);
            if (Libc.Fstatat(AT_FDCWD, abs, out var stat, Libc.AT_SYMLINK_NOFOLLOW) != 0) throw SystemCallException.FromLastError($"stat {abs}");
            var archived = "./" + path;
            switch (stat.Mode & Libc.S_IFMT)
            {
                case Libc.S_IFDIR:
                    writer.Write(Entry(archived + "/", TarEntryKind.Directory, stat), null);
                    WriteDirectory(writer, rootfs, path, links);
                    break;
                case Libc.S_IFREG when stat.Nlink > 1 && links.TryGetValue((stat.Dev, stat.Ino), out var first):
                    writer.Write(Entry(archived, TarEntryKind.HardLink, stat) with { LinkName = first }, null);
                    break;
                case Libc.S_IFREG:
                    if (stat.Nlink > 1) links[(stat.Dev, stat.Ino)] = archived;
                    WriteFile(writer, abs, archived, stat);
                    break;
                case Libc.S_IFLNK:
                    writer.Write(Entry(archived, TarEntryKind.Symlink, stat) with { LinkName = new FileInfo(abs).LinkTarget ?? "" }, null);
                    break;
                case Libc.S_IFCHR or Libc.S_IFBLK:
                    writer.Write(Entry(archived, (stat.Mode & Libc.S_IFMT) == Libc.S_IFCHR ? TarEntryKind.CharDevice : TarEntryKind.BlockDevice, stat) with
                    {
                        DevMajor = (uint)(((stat.Rdev >> 8) & 0xfff) | ((stat.Rdev >> 32) & ~0xfffUL)),
                        DevMinor = (uint)((stat.Rdev & 0xff) | ((stat.Rdev >> 12) & ~0xffUL)),
                    }, null);
                    break;
                case Libc.S_IFIFO:
                    writer.Write(Entry(archived, TarEntryKind.Fifo, stat), null);
                    break;
                // A socket cannot be archived; it is made by whoever listens on it.
            }
        }
    }

    private static void WriteFile(TarArchiveWriter writer, string abs, string archived, Libc.TreeStat stat)
    {
        var fd = Libc.Open(abs, Libc.O_RDONLY | Libc.O_NOFOLLOW | Libc.O_NONBLOCK | Libc.O_CLOEXEC, 0);
        if (fd < 0) throw SystemCallException.FromLastError($"open {abs}");
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        var xattrs = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        if (Capability(fd) is { } capability) xattrs["security.capability"] = capability;
        using var data = new FileStream(handle, FileAccess.Read, bufferSize: 0);
        writer.Write(Entry(archived, TarEntryKind.File, stat) with { Size = stat.Size, Xattrs = xattrs }, data);
    }

    private static unsafe byte[]? Capability(int fd)
    {
        var buffer = new byte[64];
        fixed (byte* p = buffer)
        {
            var n = Libc.Fgetxattr(fd, "security.capability", p, buffer.Length);
            return n > 0 ? buffer[..(int)n] : null;
        }
    }

    private static TarArchiveEntry Entry(string name, TarEntryKind kind, Libc.TreeStat stat) => new()
    {
        Name = name,
        Kind = kind,
        Mode = stat.Mode & 0xFFF,
        Uid = stat.Uid,
        Gid = stat.Gid,
        MtimeSeconds = stat.MtimeSeconds,
        MtimeNanoseconds = (int)stat.MtimeNanoseconds,
    };
}
