using System.Buffers.Binary;
using System.Text;
using HybridHypervisor.Domains.GuestAgent;
using Shouldly;
using Xunit;

namespace Vserver.Tests.Domains;

/// <summary>The guest agent framing and payloads, byte for byte as images/kernel/vsguest.c reads and writes them.</summary>
public sealed class GuestAgentProtocolTests
{
    [Fact]
    public void A_frame_is_type_session_length_little_endian_then_the_payload()
    {
        var frame = GuestAgentProtocol.Encode(GuestFrameType.Stdin, 0x01020304, "hi"u8);
        frame.ShouldBe(new byte[] { 0x03, 0x04, 0x03, 0x02, 0x01, 0x02, 0x00, 0x00, 0x00, (byte)'h', (byte)'i' });
    }

    [Fact]
    public void Frames_round_trip_back_to_back_in_one_buffer()
    {
        var big = new byte[GuestAgentProtocol.MaxPayload];
        Random.Shared.NextBytes(big);
        var stream = GuestAgentProtocol.Encode(GuestFrameType.Stdout, 7, big)
            .Concat(GuestAgentProtocol.Encode(GuestFrameType.Exit, 7, 3u))
            .Concat(GuestAgentProtocol.Encode(GuestFrameType.Ping, 0, [])).ToArray();

        var seen = new List<(GuestFrameHeader Header, byte[] Payload)>();
        var at = 0;
        while (GuestAgentProtocol.TryReadFrame(stream.AsSpan(at), out var header))
        {
            seen.Add((header, stream.AsSpan(at + GuestAgentProtocol.HeaderSize, header.Length).ToArray()));
            at += header.FrameSize;
        }

        at.ShouldBe(stream.Length);
        seen.Select(s => (s.Header.Type, s.Header.Session)).ShouldBe([(GuestFrameType.Stdout, 7u), (GuestFrameType.Exit, 7u), (GuestFrameType.Ping, 0u)]);
        seen[0].Payload.ShouldBe(big);
        GuestAgentProtocol.DecodeU32(GuestFrameType.Exit, seen[1].Payload).ShouldBe(3u);
        seen[2].Payload.ShouldBeEmpty();
    }

    [Fact]
    public void A_truncated_frame_asks_for_more_bytes_at_every_cut()
    {
        var frame = GuestAgentProtocol.Encode(GuestFrameType.Stderr, 9, "partial output"u8);
        for (var cut = 0; cut < frame.Length; cut++)
            GuestAgentProtocol.TryReadFrame(frame.AsSpan(0, cut), out _).ShouldBeFalse($"cut at {cut} of {frame.Length}");
        GuestAgentProtocol.TryReadFrame(frame, out var header).ShouldBeTrue();
        header.ShouldBe(new GuestFrameHeader(GuestFrameType.Stderr, 9, 14));
    }

    [Fact]
    public void An_oversize_length_is_rejected_from_the_header_alone()
    {
        var header = new byte[GuestAgentProtocol.HeaderSize];
        header[0] = (byte)GuestFrameType.Stdout;
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(1), 5);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(5), GuestAgentProtocol.MaxPayload + 1);
        var e = Should.Throw<GuestAgentProtocolException>(() => GuestAgentProtocol.TryReadFrame(header, out _));
        e.Message.ShouldContain("claims 65537 bytes");

        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(5), GuestAgentProtocol.MaxPayload);
        GuestAgentProtocol.TryReadFrame(header, out _).ShouldBeFalse(); // the largest legal frame: wait for its payload

        Should.Throw<ArgumentException>(() => GuestAgentProtocol.Encode(GuestFrameType.Stdin, 1, new byte[GuestAgentProtocol.MaxPayload + 1]));
    }

    [Fact]
    public void Open_lays_out_flags_size_counts_then_nul_terminated_cwd_argv_env()
    {
        var payload = GuestAgentProtocol.EncodeOpen(new GuestCommand(["sh", "-c", "echo é"], new Dictionary<string, string> { ["A"] = "1=2" },
            "/tmp", Tty: true, Rows: 24, Cols: 300));
        var expected = new byte[] { 1, 24, 0, 44, 1, 3, 0, 1, 0 }
            .Concat(Encoding.UTF8.GetBytes("/tmp\0sh\0-c\0echo é\0A=1=2\0")).ToArray();
        payload.ShouldBe(expected);

        var back = GuestAgentProtocol.DecodeOpen(payload);
        back.Argv.ShouldBe(["sh", "-c", "echo é"]);
        back.Env!["A"].ShouldBe("1=2");
        (back.Cwd, back.Tty, back.Rows, back.Cols).ShouldBe(("/tmp", true, 24, 300));
    }

    [Fact]
    public void Open_without_cwd_sends_an_empty_string_so_the_guest_uses_its_root()
    {
        var payload = GuestAgentProtocol.EncodeOpen(new GuestCommand(["true"]));
        payload.ShouldBe(new byte[] { 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, (byte)'t', (byte)'r', (byte)'u', (byte)'e', 0 });
    }

    [Theory]
    [InlineData("no argv")]
    [InlineData("nul in argv")]
    [InlineData("= in env key")]
    [InlineData("too large")]
    public void Open_refuses_what_the_guest_could_not_read(string what)
    {
        var command = what switch
        {
            "no argv" => new GuestCommand([]),
            "nul in argv" => new GuestCommand(["echo", "a\0b"]),
            "= in env key" => new GuestCommand(["env"], new Dictionary<string, string> { ["A=B"] = "c" }),
            _ => new GuestCommand(["echo", new string('x', GuestAgentProtocol.MaxPayload)]),
        };
        Should.Throw<ArgumentException>(() => GuestAgentProtocol.EncodeOpen(command));
    }

    [Fact]
    public void A_truncated_open_is_a_protocol_error_not_a_crash()
    {
        var payload = GuestAgentProtocol.EncodeOpen(new GuestCommand(["ls", "-l"]));
        Should.Throw<GuestAgentProtocolException>(() => GuestAgentProtocol.DecodeOpen(payload.AsSpan(0, payload.Length - 1)))
            .Message.ShouldContain("ends after 2 of 3 strings");
    }

    [Fact]
    public void Hello_carries_version_instance_and_kernel_release()
    {
        var hello = new GuestHello(1, 0x1122334455667788, "6.1.0-56-cloud-amd64");
        var payload = GuestAgentProtocol.EncodeHello(hello);
        payload.AsSpan(0, 10).ToArray().ShouldBe(new byte[] { 1, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11 });
        GuestAgentProtocol.DecodeHello(payload).ShouldBe(hello);
        Should.Throw<GuestAgentProtocolException>(() => GuestAgentProtocol.DecodeHello(payload.AsSpan(0, 9)));
    }

    [Fact]
    public void Error_is_a_shell_code_and_a_message()
    {
        var payload = new byte[] { 127, 0, 0, 0 }.Concat("exec: foo: No such file or directory"u8.ToArray()).ToArray();
        GuestAgentProtocol.DecodeError(payload).ShouldBe((127, "exec: foo: No such file or directory"));
        Should.Throw<GuestAgentProtocolException>(() => GuestAgentProtocol.DecodeError([1, 0]));
        Should.Throw<GuestAgentProtocolException>(() => GuestAgentProtocol.DecodeU32(GuestFrameType.Exit, [1, 0, 0]));
    }

    [Fact]
    public void Resize_is_rows_then_cols()
    {
        GuestAgentProtocol.EncodeResize(50, 132).ShouldBe(new byte[] { 50, 0, 132, 0 });
        GuestAgentProtocol.EncodeResize(-1, 70000).ShouldBe(new byte[] { 0, 0, 0xff, 0xff });
    }
}
