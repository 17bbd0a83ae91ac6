using System.Buffers.Binary;
using System.Text;

namespace HybridHypervisor.Domains.GuestAgent;

/// <summary>
/// The wire protocol between <see cref="GuestAgentClient"/> and vsguest (images/kernel/vsguest.c), the agent the
/// domain initramfs starts inside the guest on the virtio-serial port <c>org.vserver.agent.0</c>.
/// <para>
/// Binary frames, integers little-endian: <c>[u8 type][u32 session][u32 length][payload]</c>, length at most
/// <see cref="MaxPayload"/> (64 KiB); a larger length is a protocol error. Session 0 is the connection; the host picks
/// the ids of the sessions it opens. Strings are UTF-8.
/// </para>
/// <para>Host to guest:</para>
/// <list type="bullet">
/// <item>PING (session 0, empty): answered with HELLO.</item>
/// <item>OPEN: <c>[u8 flags: bit 0 tty][u16 rows][u16 cols][u16 argc][u16 envc]</c>, then NUL-terminated strings:
/// cwd (empty = "/"), argc argv words, envc "KEY=VALUE" entries. Answered with STARTED or ERROR. The guest adds
/// PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin, HOME=/root and (with a tty) TERM=xterm unless
/// given, and looks argv[0] up in PATH. The command runs as root in a new session with default signal handling.</item>
/// <item>STDIN: data for the command's stdin; an empty payload is end of file (with a tty: the EOF character).</item>
/// <item>SIGNAL <c>[u32 signo]</c>: to the command's process group. RESIZE <c>[u16 rows][u16 cols]</c>: the tty.</item>
/// <item>HANGUP <c>[u32 grace ms]</c> (version 2): the client went away. SIGHUP and SIGCONT to every process of the
/// command's session, SIGKILL to what is left of it after the grace; EXIT follows as usual.</item>
/// <item>ACK <c>[u32 n]</c>: the host consumed n bytes of the session's STDOUT/STDERR.</item>
/// </list>
/// <para>Guest to host:</para>
/// <list type="bullet">
/// <item>HELLO (session 0) <c>[u16 version][u64 instance][kernel release]</c>: when the agent starts, when a host
/// connects, and for every PING. The instance is random per agent start: a new one means the guest rebooted.</item>
/// <item>STARTED <c>[u32 guest pid]</c>. ERROR <c>[i32 exit code][message]</c>: the command could not start (127: not
/// found, 126: not executable or bad cwd, 255: bad request); the session is over.</item>
/// <item>STDOUT, STDERR: output (with a tty everything is STDOUT). EXIT <c>[i32 code]</c> (128+N for signal N) after the
/// session's last output. INACK <c>[u32 n]</c>: n bytes of STDIN were written to the command.</item>
/// </list>
/// <para>
/// Flow control: per session at most <see cref="Window"/> bytes of output are in flight without an ACK, and at most
/// <see cref="Window"/> bytes of stdin without an INACK, so one slow command or reader stalls only its own session.
/// When the host disconnects, the agent hangs up that host's sessions as by HANGUP with a grace of 5 s.
/// </para>
/// </summary>
public static class GuestAgentProtocol
{
    public const int HeaderSize = 9;
    public const int MaxPayload = 64 * 1024;
    /// <summary>2 added HANGUP; a version 1 agent (a kernel built before) gets SIGNAL SIGHUP instead.</summary>
    public const int Version = 2;
    public const int Window = 256 * 1024;
    public const string PortName = "org.vserver.agent.0";

    /// <summary>Writes one frame into a new array: header and payload.</summary>
    public static byte[] Encode(GuestFrameType type, uint session, ReadOnlySpan<byte> payload)
    {
        if (payload.Length > MaxPayload)
            throw new ArgumentException($"a guest agent frame carries at most {MaxPayload} bytes, not {payload.Length}", nameof(payload));
        var frame = new byte[HeaderSize + payload.Length];
        frame[0] = (byte)type;
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(1), session);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(5), (uint)payload.Length);
        payload.CopyTo(frame.AsSpan(HeaderSize));
        return frame;
    }

    public static byte[] Encode(GuestFrameType type, uint session, uint value)
    {
        Span<byte> payload = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(payload, value);
        return Encode(type, session, payload);
    }

    /// <summary>
    /// The header of the first frame in <paramref name="buffer"/>, if the whole frame is there (false: read more).
    /// A length over <see cref="MaxPayload"/> throws <see cref="GuestAgentProtocolException"/>: the stream cannot be
    /// trusted past it.
    /// </summary>
    public static bool TryReadFrame(ReadOnlySpan<byte> buffer, out GuestFrameHeader header)
    {
        header = default;
        if (buffer.Length < HeaderSize) return false;
        var length = BinaryPrimitives.ReadUInt32LittleEndian(buffer[5..]);
        if (length > MaxPayload)
            throw new GuestAgentProtocolException(
                $"guest agent frame (type 0x{buffer[0]:x2}, session {BinaryPrimitives.ReadUInt32LittleEndian(buffer[1..])}) claims {length} bytes; at most {MaxPayload} are allowed");
        if (buffer.Length < HeaderSize + (int)length) return false;
        header = new GuestFrameHeader((GuestFrameType)buffer[0], BinaryPrimitives.ReadUInt32LittleEndian(buffer[1..]), (int)length);
        return true;
    }

    /// <summary>The OPEN payload for <paramref name="command"/>; throws ArgumentException for what the guest could not
    /// represent (no argv, NUL in a string, '=' in an env key, more than 64 KiB in all).</summary>
    public static byte[] EncodeOpen(GuestCommand command)
    {
        ArgumentNullException.ThrowIfNull(command);
        if (command.Argv.Count == 0 || string.IsNullOrEmpty(command.Argv[0]))
            throw new ArgumentException("a guest command needs at least a program name", nameof(command));
        var env = command.Env ?? new Dictionary<string, string>();
        if (command.Argv.Count > ushort.MaxValue || env.Count > ushort.MaxValue)
            throw new ArgumentException("a guest command has at most 65535 arguments and environment entries", nameof(command));
        var strings = new List<string>(1 + command.Argv.Count + env.Count) { command.Cwd ?? "" };
        strings.AddRange(command.Argv);
        foreach (var (key, value) in env)
        {
            if (key.Length == 0 || key.Contains('=', StringComparison.Ordinal))
                throw new ArgumentException($"environment variable name '{key}' is empty or contains '='", nameof(command));
            strings.Add($"{key}={value}");
        }
        foreach (var s in strings)
            if (s.Contains('\0', StringComparison.Ordinal))
                throw new ArgumentException("a guest command's arguments, environment and cwd cannot contain NUL", nameof(command));

        var size = 9 + strings.Sum(s => Encoding.UTF8.GetByteCount(s) + 1);
        if (size > MaxPayload)
            throw new ArgumentException($"the command line, environment and cwd take {size} bytes; the guest agent takes at most {MaxPayload}", nameof(command));
        var payload = new byte[size];
        payload[0] = (byte)(command.Tty ? 1 : 0);
        BinaryPrimitives.WriteUInt16LittleEndian(payload.AsSpan(1), ClampU16(command.Rows));
        BinaryPrimitives.WriteUInt16LittleEndian(payload.AsSpan(3), ClampU16(command.Cols));
        BinaryPrimitives.WriteUInt16LittleEndian(payload.AsSpan(5), (ushort)command.Argv.Count);
        BinaryPrimitives.WriteUInt16LittleEndian(payload.AsSpan(7), (ushort)env.Count);
        var at = 9;
        foreach (var s in strings)
        {
            at += Encoding.UTF8.GetBytes(s, payload.AsSpan(at));
            payload[at++] = 0;
        }
        return payload;
    }

    /// <summary>The inverse of <see cref="EncodeOpen"/>, as the guest reads it (for tests and diagnostics).</summary>
    public static GuestCommand DecodeOpen(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 9) throw new GuestAgentProtocolException($"OPEN payload of {payload.Length} bytes is shorter than its 9-byte head");
        var argc = BinaryPrimitives.ReadUInt16LittleEndian(payload[5..]);
        var envc = BinaryPrimitives.ReadUInt16LittleEndian(payload[7..]);
        var strings = new List<string>();
        var rest = payload[9..];
        for (var i = 0; i < 1 + argc + envc; i++)
        {
            var end = rest.IndexOf((byte)0);
            if (end < 0) throw new GuestAgentProtocolException($"OPEN payload ends after {i} of {1 + argc + envc} strings");
            strings.Add(Encoding.UTF8.GetString(rest[..end]));
            rest = rest[(end + 1)..];
        }
        var env = strings.Skip(1 + argc).Select(e => e.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv.Length > 1 ? kv[1] : "");
        return new GuestCommand(strings.Skip(1).Take(argc).ToList(), env, strings[0].Length == 0 ? null : strings[0],
            (payload[0] & 1) != 0, BinaryPrimitives.ReadUInt16LittleEndian(payload[1..]), BinaryPrimitives.ReadUInt16LittleEndian(payload[3..]));
    }

    public static byte[] EncodeResize(int rows, int cols)
    {
        var payload = new byte[4];
        BinaryPrimitives.WriteUInt16LittleEndian(payload, ClampU16(rows));
        BinaryPrimitives.WriteUInt16LittleEndian(payload.AsSpan(2), ClampU16(cols));
        return payload;
    }

    public static GuestHello DecodeHello(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 10) throw new GuestAgentProtocolException($"HELLO payload of {payload.Length} bytes is shorter than its 10-byte head");
        return new GuestHello(BinaryPrimitives.ReadUInt16LittleEndian(payload), BinaryPrimitives.ReadUInt64LittleEndian(payload[2..]),
            Encoding.UTF8.GetString(payload[10..]));
    }

    public static byte[] EncodeHello(GuestHello hello)
    {
        var release = Encoding.UTF8.GetBytes(hello.KernelRelease);
        var payload = new byte[10 + release.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(payload, (ushort)hello.Version);
        BinaryPrimitives.WriteUInt64LittleEndian(payload.AsSpan(2), hello.Instance);
        release.CopyTo(payload, 10);
        return payload;
    }

    /// <summary>ERROR: the shell-style exit code and the guest's one-line message.</summary>
    public static (int Code, string Message) DecodeError(ReadOnlySpan<byte> payload)
    {
        if (payload.Length < 4) throw new GuestAgentProtocolException($"ERROR payload of {payload.Length} bytes has no exit code");
        return (BinaryPrimitives.ReadInt32LittleEndian(payload), Encoding.UTF8.GetString(payload[4..]));
    }

    /// <summary>A u32 payload (STARTED, EXIT, ACK, INACK, SIGNAL).</summary>
    public static uint DecodeU32(GuestFrameType type, ReadOnlySpan<byte> payload) =>
        payload.Length >= 4
            ? BinaryPrimitives.ReadUInt32LittleEndian(payload)
            : throw new GuestAgentProtocolException($"{type} payload of {payload.Length} bytes has no 4-byte value");

    private static ushort ClampU16(int v) => (ushort)Math.Clamp(v, 0, ushort.MaxValue);
}

public enum GuestFrameType : byte
{
    Ping = 0x01,
    Open = 0x02,
    Stdin = 0x03,
    Signal = 0x04,
    Resize = 0x05,
    Ack = 0x06,
    Hangup = 0x07,
    Hello = 0x81,
    Started = 0x82,
    Error = 0x83,
    Stdout = 0x84,
    Stderr = 0x85,
    Exit = 0x86,
    InputAck = 0x87,
}

/// <summary>A frame's header: the payload follows at <see cref="GuestAgentProtocol.HeaderSize"/>.</summary>
public readonly record struct GuestFrameHeader(GuestFrameType Type, uint Session, int Length)
{
    public int FrameSize => GuestAgentProtocol.HeaderSize + Length;
}

/// <summary>What the guest agent says when it starts and for every PING.</summary>
public sealed record GuestHello(int Version, ulong Instance, string KernelRelease);

/// <summary>A command to run inside the guest. Env entries override the guest's defaults (PATH, HOME, TERM).</summary>
public sealed record GuestCommand(
    IReadOnlyList<string> Argv,
    IReadOnlyDictionary<string, string>? Env = null,
    string? Cwd = null,
    bool Tty = false,
    int Rows = 0,
    int Cols = 0);
