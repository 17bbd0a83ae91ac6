using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Vserver.Cli;

/// <summary>
/// Reads a small text file the operator names (a hosting file): it must be a regular file, at most a given size and
/// UTF-8. A directory, a FIFO or a device is refused in one line before a byte is read: .NET's own reading says
/// "Access to the path is denied" for a directory, blocks for ever opening a FIFO, and reads /dev/zero until memory
/// runs out.
/// </summary>
internal static partial class InputFile
{
    /// <summary>The file's text; <see cref="IOException"/> with one plain line (the path first) for anything else.</summary>
    public static string ReadText(string path, int maxBytes)
    {
        // O_NONBLOCK: opening a FIFO then returns at once instead of waiting for a writer; it changes nothing for a
        // regular file. The type is then asked of the descriptor itself, so the path cannot change between the two.
        var fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            // A socket cannot be opened at all (ENXIO): say what it is, as for a FIFO or device that can.
            if (errno is not (ENOENT or ENOTDIR) && PathType(path) is { } type && type != S_IFREG)
                throw new IOException($"{path}: is {TypeName(type)}, not a regular file");
            throw new IOException($"{path}: {OpenError(errno)}");
        }
        using var handle = new SafeFileHandle(fd, ownsHandle: true);
        var mode = FileType(fd, path);
        if (mode != S_IFREG) throw new IOException($"{path}: is {TypeName(mode)}, not a regular file");

        using var stream = new FileStream(handle, FileAccess.Read, bufferSize: 0);
        var buffer = new byte[maxBytes + 1];
        var length = 0;
        int read;
        while (length < buffer.Length && (read = stream.Read(buffer, length, buffer.Length - length)) > 0) length += read;
        if (length > maxBytes) throw new IOException($"{path}: larger than {maxBytes / 1024} KiB, more than any hosting file needs");
        try
        {
            return new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(buffer, 0, length).TrimStart('\uFEFF');
        }
        catch (DecoderFallbackException e)
        {
            throw new IOException($"{path}: not UTF-8 text (byte {e.Index} and on)");
        }
    }

    private static string OpenError(int errno) => errno switch
    {
        ENOENT => "no such file",
        ENOTDIR => "no such file (a part of the path is not a directory)",
        EACCES or EPERM => "permission denied",
        ELOOP => "too many symbolic links",
        _ => $"cannot open it ({Marshal.GetPInvokeErrorMessage(errno)})",
    };

    private static string TypeName(int mode) => mode switch
    {
        S_IFDIR => "a directory",
        S_IFIFO => "a FIFO",
        S_IFCHR => "a character device",
        S_IFBLK => "a block device",
        S_IFSOCK => "a socket",
        _ => "not a plain file",
    };

    /// <summary>The S_IFMT bits of an open descriptor, by statx: its struct has one layout on every architecture, where
    /// struct stat's differs between x86-64 and arm64.</summary>
    private static unsafe int FileType(int fd, string path)
    {
        var statx = stackalloc byte[StatxSize];
        if (statx_fd(fd, "", AT_EMPTY_PATH, STATX_TYPE, statx) != 0)
            throw new IOException($"{path}: cannot tell what it is ({Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())})");
        return *(ushort*)(statx + StatxModeOffset) & S_IFMT;
    }

    /// <summary>The S_IFMT bits of what a path names (symbolic links followed), or null if that cannot be told.</summary>
    private static unsafe int? PathType(string path)
    {
        var statx = stackalloc byte[StatxSize];
        return statx_fd(AT_FDCWD, path, 0, STATX_TYPE, statx) == 0 ? *(ushort*)(statx + StatxModeOffset) & S_IFMT : null;
    }

    private const int AT_FDCWD = -100;
    private const int O_RDONLY = 0;
    private const int O_NOCTTY = 0x100;
    private const int O_NONBLOCK = 0x800;
    private const int O_CLOEXEC = 0x80000;
    private const int AT_EMPTY_PATH = 0x1000;
    private const uint STATX_TYPE = 0x1;
    private const int StatxSize = 256;
    private const int StatxModeOffset = 28;
    private const int S_IFMT = 0xF000;
    private const int S_IFSOCK = 0xC000;
    private const int S_IFREG = 0x8000;
    private const int S_IFBLK = 0x6000;
    private const int S_IFDIR = 0x4000;
    private const int S_IFCHR = 0x2000;
    private const int S_IFIFO = 0x1000;
    private const int EPERM = 1;
    private const int ENOENT = 2;
    private const int EACCES = 13;
    private const int ENOTDIR = 20;
    private const int ELOOP = 40;

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statx_fd(int dirfd, string path, int flags, uint mask, byte* statx);
}
