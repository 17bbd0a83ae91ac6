using System.Runtime.InteropServices;
using System.Text;
using Vserver.Isolation.Interop;

namespace Vserver.Isolation.Images;

/// <summary>What an image's <c>/sbin/init</c> is: it decides how a guest is asked to stop (systemd halts on SIGRTMIN+3,
/// busybox init on SIGUSR1/SIGTERM, a script on SIGTERM).</summary>
public enum InitKind
{
    /// <summary>No init: missing, a dangling link, a link out of the image, not an executable regular file.</summary>
    None,
    /// <summary>systemd (…/lib/systemd/systemd).</summary>
    Systemd,
    /// <summary>busybox's init applet.</summary>
    Busybox,
    /// <summary>A shell script (#! of sh, bash, dash, ash).</summary>
    ShellScript,
    /// <summary>A script of another interpreter.</summary>
    Script,
    /// <summary>Another executable (sysvinit, openrc-init, runit, tini, ...).</summary>
    Executable,
}

/// <summary>An image's init: its <see cref="Kind"/>, the path inside the image it resolves to, and how a person would
/// name it ("systemd", "busybox", "shell script", "none").</summary>
public sealed record ImageInit(InitKind Kind, string? Path, string Display)
{
    public const string DefaultPath = "/sbin/init";
    private const int HeadBytes = 256;

    /// <summary>
    /// Resolves <paramref name="initPath"/> inside <paramref name="rootfs"/> as the guest would (chroot semantics: an
    /// absolute link target and '..' stay inside the image; the kernel enforces it with openat2 RESOLVE_IN_ROOT, and no
    /// /proc magic link is followed) and classifies what it finds. Nothing outside the image is looked at, and nothing
    /// but a regular file is opened.
    /// </summary>
    public static ImageInit Detect(string rootfs, string initPath = DefaultPath)
    {
        var root = Libc.Open(rootfs, Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC, 0);
        if (root < 0) return new ImageInit(InitKind.None, null, $"none (cannot open the image root: {Errno.Name(Marshal.GetLastPInvokeError())})");
        try
        {
            var fd = Libc.Openat2(root, initPath.TrimStart('/'), new Libc.OpenHow
            {
                Flags = (ulong)(Libc.O_PATH | Libc.O_CLOEXEC),
                Resolve = Libc.RESOLVE_IN_ROOT | Libc.RESOLVE_NO_MAGICLINKS,
            });
            if (fd < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                return new ImageInit(InitKind.None, null, errno switch
                {
                    Errno.ENOENT => $"none ({initPath} is missing or a dangling link)",
                    Errno.ELOOP => $"none ({initPath} is a loop of links)",
                    _ => $"none ({initPath}: {Errno.Name(errno)})",
                });
            }
            try
            {
                if (Libc.Fstat(fd, out var stat) != 0) return new ImageInit(InitKind.None, null, $"none ({initPath}: fstat failed)");
                var resolved = ResolvedPath(fd, root);
                if ((stat.Mode & Libc.S_IFMT) != Libc.S_IFREG) return new ImageInit(InitKind.None, resolved, $"none ({resolved ?? initPath} is not a regular file)");
                if ((stat.Mode & 0x49 /* 0111 */) == 0) return new ImageInit(InitKind.None, resolved, $"none ({resolved ?? initPath} is not executable)");
                return Classify(resolved ?? initPath, ReadHead(fd));
            }
            finally
            {
                Libc.Close(fd);
            }
        }
        finally
        {
            Libc.Close(root);
        }
    }

    /// <summary>The init an executable at <paramref name="path"/> (inside the image) that starts with
    /// <paramref name="head"/> is. Pure: by the path's name and the file's first bytes.</summary>
    public static ImageInit Classify(string path, ReadOnlySpan<byte> head)
    {
        var name = System.IO.Path.GetFileName(path);
        if (name == "systemd" && path.Contains("/systemd/", StringComparison.Ordinal)) return new ImageInit(InitKind.Systemd, path, "systemd");
        if (name.StartsWith("busybox", StringComparison.Ordinal)) return new ImageInit(InitKind.Busybox, path, "busybox");
        if (head.StartsWith("#!"u8))
        {
            var line = head[2..];
            var end = line.IndexOf((byte)'\n');
            var words = Encoding.UTF8.GetString(end < 0 ? line : line[..end]).Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            var interpreter = words.Length == 0 ? "" : words[0];
            // "#!/usr/bin/env bash" names its interpreter in the next word.
            var program = System.IO.Path.GetFileName(interpreter) == "env" && words.Length > 1 ? words[1] : System.IO.Path.GetFileName(interpreter);
            return program is "sh" or "bash" or "dash" or "ash" or "ksh" or "mksh" or "zsh"
                ? new ImageInit(InitKind.ShellScript, path, "shell script")
                : new ImageInit(InitKind.Script, path, $"script ({(interpreter.Length == 0 ? "no interpreter" : interpreter)})");
        }
        var known = name switch
        {
            "openrc-init" => "openrc",
            "runit-init" or "runit" => "runit",
            "s6-svscan" or "s6-linux-init" => "s6",
            "tini" or "dumb-init" or "catatonit" => name,
            "init" when head.StartsWith("\u007fELF"u8) => "sysvinit or another executable",
            _ => null,
        };
        return new ImageInit(InitKind.Executable, path, known ?? $"executable ({name})");
    }

    /// <summary>Where <paramref name="fd"/> lies inside the image: its /proc/self/fd link less the root's own path.</summary>
    private static string? ResolvedPath(int fd, int root)
    {
        try
        {
            var target = new FileInfo($"/proc/self/fd/{fd}").LinkTarget;
            var rootPath = new FileInfo($"/proc/self/fd/{root}").LinkTarget;
            if (target is null || rootPath is null) return null;
            if (target == rootPath) return "/";
            return target.StartsWith(rootPath + "/", StringComparison.Ordinal) ? target[rootPath.Length..] : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>The first bytes of the regular file <paramref name="fd"/> (O_PATH) names, opened anew for reading.</summary>
    private static byte[] ReadHead(int fd)
    {
        var file = Libc.Open($"/proc/self/fd/{fd}", Libc.O_RDONLY | Libc.O_NONBLOCK | Libc.O_NOCTTY | Libc.O_CLOEXEC, 0);
        if (file < 0) return [];
        using var handle = new Microsoft.Win32.SafeHandles.SafeFileHandle(file, ownsHandle: true);
        var buffer = new byte[HeadBytes];
        var n = RandomAccess.Read(handle, buffer, 0);
        return buffer[..n];
    }
}
