using HybridHypervisor.Guests;
using System.Net.Sockets;
using System.Security.Cryptography;
using Vserver.Isolation.Guests;

namespace HybridHypervisor.Domains.GuestAgent;

/// <summary>
/// The host end of a domain's guest agent (see <see cref="GuestAgentProtocol"/>): QEMU's
/// <c>-chardev socket,id=agent,path=SOCK,server=on,wait=off</c> behind
/// <c>-device virtserialport,chardev=agent,name=org.vserver.agent.0</c>.
/// <para>
/// QEMU serves one client per socket chardev, so one client per running domain carries every exec session. Frames
/// are written whole under one lock, from any thread; one reader task dispatches what the guest sends. When the
/// connection ends (QEMU exited, <see cref="DisposeAsync"/>), or the guest agent says HELLO with a new instance (the
/// guest rebooted), open sessions end with exit code 255 and a line on their stderr; they never hang.
/// </para>
/// </summary>
public sealed class GuestAgentClient : IAsyncDisposable
{
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan PingInterval = TimeSpan.FromMilliseconds(500);

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly string _socketPath;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Lock _gate = new();
    private readonly Dictionary<uint, GuestAgentProcess> _sessions = [];
    private readonly CancellationTokenSource _disposeCts = new();
    private TaskCompletionSource<GuestHello> _nextHello = NewHelloSource();
    private Task _readLoop = Task.CompletedTask;
    private uint _nextSession = (uint)RandomNumberGenerator.GetInt32(1, int.MaxValue);
    private string? _closeReason;
    private int _disposed;

    private GuestAgentClient(Socket socket, string socketPath)
    {
        _socket = socket;
        _socketPath = socketPath;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    /// <summary>The last HELLO the guest agent sent, or null before the first.</summary>
    public GuestHello? LastHello { get; private set; }

    /// <summary>False once the connection has closed; <see cref="CloseReason"/> says why.</summary>
    public bool IsConnected { get { lock (_gate) return _closeReason is null; } }

    public string? CloseReason { get { lock (_gate) return _closeReason; } }

    /// <summary>Connects to QEMU's agent chardev socket, retrying for up to 10 s while it does not exist yet or refuses
    /// (QEMU is starting). Connecting does not need the guest to be up: see <see cref="WaitReadyAsync"/>.</summary>
    public static async Task<GuestAgentClient> ConnectAsync(string socketPath, CancellationToken ct)
    {
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(ConnectTimeout);
        var endpoint = new UnixDomainSocketEndPoint(socketPath);
        SocketException? last = null;
        while (true)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(endpoint, timeout.Token).ConfigureAwait(false);
                var client = new GuestAgentClient(socket, socketPath);
                client._readLoop = Task.Run(client.ReadLoopAsync, CancellationToken.None);
                return client;
            }
            catch (SocketException e)
            {
                socket.Dispose();
                last = e;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                socket.Dispose();
                throw new GuestAgentException(
                    $"connect to the guest agent socket {socketPath}: {last?.Message ?? "timed out"} (QEMU did not create it within {ConnectTimeout.TotalSeconds:0} s)", last);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            try
            {
                await Task.Delay(50, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new GuestAgentException(
                    $"connect to the guest agent socket {socketPath}: {last.Message} (QEMU did not create it within {ConnectTimeout.TotalSeconds:0} s)", last);
            }
        }
    }

    /// <summary>
    /// PINGs until the guest agent answers HELLO, and returns the guest's kernel release. Before the guest has booted
    /// this simply waits; after <paramref name="timeout"/> it throws a <see cref="TimeoutException"/> saying so.
    /// </summary>
    public async Task<string> WaitReadyAsync(TimeSpan timeout, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        try
        {
            while (true)
            {
                Task<GuestHello> hello;
                lock (_gate)
                {
                    ThrowIfClosed();
                    hello = _nextHello.Task;
                }
                await SendAsync(GuestAgentProtocol.Encode(GuestFrameType.Ping, 0, []), deadline.Token).ConfigureAwait(false);
                try
                {
                    return (await hello.WaitAsync(PingInterval, deadline.Token).ConfigureAwait(false)).KernelRelease;
                }
                catch (TimeoutException)
                {
                }
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException(
                $"the guest agent did not answer within {timeout.TotalSeconds:0.#} s on {_socketPath} (the guest is not booted yet, " +
                $"or it does not run vsguest: it needs the vserver initramfs and QEMU's virtserialport name={GuestAgentProtocol.PortName})");
        }
    }

    /// <summary>Starts a command in the guest. The guest's refusal (not found, not executable, bad cwd) throws
    /// <see cref="GuestCommandException"/> with its message and shell-style exit code.</summary>
    public async Task<IGuestProcess> StartAsync(GuestCommand command, CancellationToken ct)
    {
        var open = GuestAgentProtocol.EncodeOpen(command);
        GuestAgentProcess process;
        lock (_gate)
        {
            ThrowIfClosed();
            do _nextSession = _nextSession == uint.MaxValue ? 1 : _nextSession + 1;
            while (_sessions.ContainsKey(_nextSession));
            process = new GuestAgentProcess(this, _nextSession, command.Tty);
            _sessions.Add(process.Session, process);
        }
        try
        {
            await SendAsync(GuestAgentProtocol.Encode(GuestFrameType.Open, process.Session, open), ct).ConfigureAwait(false);
            await process.Started.WaitAsync(ct).ConfigureAwait(false);
            return process;
        }
        catch
        {
            // Not started, or the caller stopped waiting: a late STARTED must not leave an orphan running.
            if (process.Started.IsCompletedSuccessfully) process.Dispose();
            else
            {
                Forget(process.Session);
                process.Abandon();
            }
            throw;
        }
    }

    internal async Task SendAsync(byte[] frame, CancellationToken ct)
    {
        await _writeLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            lock (_gate) ThrowIfClosed();
            await _stream.WriteAsync(frame, _disposeCts.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException || (e is OperationCanceledException && _disposeCts.IsCancellationRequested))
        {
            if (e is GuestAgentException) throw;
            Close($"write failed: {e.Message}");
            throw new GuestAgentException($"guest agent connection {_socketPath} closed: {e.Message}", e);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>A frame nobody waits for (ACK, SIGNAL, RESIZE, EOF): a closed connection has nothing left to tell.</summary>
    internal void Post(byte[] frame) => _ = PostAsync(frame);

    private async Task PostAsync(byte[] frame)
    {
        try
        {
            await SendAsync(frame, CancellationToken.None).ConfigureAwait(false);
        }
        catch (GuestAgentException)
        {
        }
    }

    internal void Forget(uint session)
    {
        lock (_gate) _sessions.Remove(session);
    }

    private void ThrowIfClosed()
    {
        if (_closeReason is not null) throw new GuestAgentException($"guest agent connection {_socketPath} is closed: {_closeReason}");
    }

    private async Task ReadLoopAsync()
    {
        // Room for two whole frames, so a frame never has to wait for the buffer to be compacted twice.
        var buffer = new byte[2 * (GuestAgentProtocol.HeaderSize + GuestAgentProtocol.MaxPayload)];
        var filled = 0;
        var reason = "end of stream (QEMU exited or closed the socket)";
        try
        {
            while (true)
            {
                var n = await _stream.ReadAsync(buffer.AsMemory(filled), _disposeCts.Token).ConfigureAwait(false);
                if (n == 0) break;
                filled += n;
                var at = 0;
                while (GuestAgentProtocol.TryReadFrame(buffer.AsSpan(at, filled - at), out var header))
                {
                    Dispatch(header, buffer.AsSpan(at + GuestAgentProtocol.HeaderSize, header.Length));
                    at += header.FrameSize;
                }
                if (at > 0)
                {
                    buffer.AsSpan(at, filled - at).CopyTo(buffer);
                    filled -= at;
                }
            }
        }
        catch (OperationCanceledException) when (_disposeCts.IsCancellationRequested)
        {
            reason = "disposed";
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            reason = e.Message;
        }
        Close(reason);
    }

    private void Dispatch(GuestFrameHeader header, ReadOnlySpan<byte> payload)
    {
        if (header.Type == GuestFrameType.Hello)
        {
            OnHello(GuestAgentProtocol.DecodeHello(payload));
            return;
        }
        GuestAgentProcess? process;
        lock (_gate) _sessions.TryGetValue(header.Session, out process);
        if (process is null) return; // a session this client forgot, or one of an earlier host connection
        switch (header.Type)
        {
            case GuestFrameType.Started:
                process.OnStarted((int)GuestAgentProtocol.DecodeU32(header.Type, payload));
                break;
            case GuestFrameType.Error:
                var (code, message) = GuestAgentProtocol.DecodeError(payload);
                Forget(header.Session);
                process.OnError(code, message);
                break;
            case GuestFrameType.Stdout:
            case GuestFrameType.Stderr:
                process.OnOutput(header.Type == GuestFrameType.Stderr, payload);
                break;
            case GuestFrameType.Exit:
                Forget(header.Session);
                process.OnExit((int)GuestAgentProtocol.DecodeU32(header.Type, payload));
                break;
            case GuestFrameType.InputAck:
                process.OnInputAck((int)Math.Min(GuestAgentProtocol.DecodeU32(header.Type, payload), int.MaxValue));
                break;
        }
    }

    private void OnHello(GuestHello hello)
    {
        TaskCompletionSource<GuestHello> waiters;
        List<GuestAgentProcess> lost = [];
        lock (_gate)
        {
            if (LastHello is { } previous && previous.Instance != hello.Instance)
            {
                lost.AddRange(_sessions.Values);
                _sessions.Clear();
            }
            LastHello = hello;
            waiters = _nextHello;
            _nextHello = NewHelloSource();
        }
        foreach (var p in lost) p.OnLost("the guest agent restarted (the guest rebooted?); the command's fate is unknown");
        waiters.TrySetResult(hello);
    }

    private void Close(string reason)
    {
        List<GuestAgentProcess> lost;
        TaskCompletionSource<GuestHello> waiters;
        lock (_gate)
        {
            if (_closeReason is not null) return;
            _closeReason = reason;
            lost = [.. _sessions.Values];
            _sessions.Clear();
            waiters = _nextHello;
        }
        foreach (var p in lost) p.OnLost($"the guest agent connection closed ({reason})");
        waiters.TrySetException(new GuestAgentException($"guest agent connection {_socketPath} closed: {reason}"));
        _ = waiters.Task.Exception; // observed: nobody may be waiting
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Close("disposed");
        await _disposeCts.CancelAsync().ConfigureAwait(false);
        try
        {
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
        }
        await _readLoop.ConfigureAwait(false);
        await _stream.DisposeAsync().ConfigureAwait(false);
        _disposeCts.Dispose();
    }

    private static TaskCompletionSource<GuestHello> NewHelloSource() => new(TaskCreationOptions.RunContinuationsAsynchronously);
}
