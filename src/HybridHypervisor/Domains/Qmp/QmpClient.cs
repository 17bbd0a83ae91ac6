using System.Buffers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace HybridHypervisor.Domains.Qmp;

/// <summary>
/// An asynchronous client for QEMU's machine protocol (QMP) over a unix socket.
/// <para>
/// <see cref="ConnectAsync(string, TimeSpan, CancellationToken)"/> connects (retrying until the socket exists and
/// accepts), reads the greeting, and negotiates capabilities (no "oob"). Then one reader task parses the
/// newline-delimited JSON that QEMU sends: replies are matched to their command by "id" (every command gets a fresh
/// numeric id, so commands may be issued concurrently from any thread), and events go to <see cref="Events"/>.
/// </para>
/// <para>
/// Events: <see cref="Events"/> is an unbounded channel with a single logical consumer in mind (each event is
/// delivered to one reader). It buffers every event from capabilities negotiation on until read, and completes
/// when the connection closes, so <c>await foreach (var e in client.Events.ReadAllAsync(ct))</c> ends when QEMU
/// exits. Events and replies keep QEMU's order: an event QEMU sent before a reply is written to the channel before
/// that reply's command completes (e.g. STOP is in the channel by the time <see cref="StopAsync"/> returns).
/// </para>
/// <para>
/// End of connection (EOF, socket error, something that is not QMP, or <see cref="DisposeAsync"/>): every command
/// still waiting fails with <see cref="QmpConnectionClosedException"/>, later commands fail the same way at once,
/// <see cref="Events"/> completes and <see cref="Completion"/> completes. <see cref="Completion"/> never faults; the
/// reason, if any, is in <see cref="CloseReason"/>.
/// </para>
/// <para>
/// Cancelling a command's token abandons the wait (OperationCanceledException); QEMU may still execute the command
/// and its late reply is discarded.
/// </para>
/// </summary>
public sealed class QmpClient : IAsyncDisposable
{
    private readonly Socket? _socket;
    private readonly Stream _stream;
    private readonly QmpLineReader _lines;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Lock _gate = new();
    private readonly Dictionary<long, Pending> _pending = [];
    private readonly Channel<QmpEvent> _events = Channel.CreateUnbounded<QmpEvent>(
        new UnboundedChannelOptions { SingleWriter = false, SingleReader = false });
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _disposeCts = new();
    private readonly string _description;
    private long _nextId;
    private bool _closed;
    private string? _closeMessage;
    private Task _readLoop = Task.CompletedTask;
    private int _disposed;

    private sealed record Pending(string Command, TaskCompletionSource<JsonNode?> Reply);

    private QmpClient(Socket? socket, Stream stream, string description)
    {
        _socket = socket;
        _stream = stream;
        _description = description;
        _lines = new QmpLineReader(stream);
    }

    /// <summary>QEMU's version from the greeting.</summary>
    public QmpVersion Version { get; private set; } = new(0, 0, 0, "");

    /// <summary>The capabilities QEMU offered in the greeting (QEMU 7.2: ["oob"]). None are enabled.</summary>
    public IReadOnlyList<string> OfferedCapabilities { get; private set; } = [];

    /// <summary>QEMU's events, in order; completes when the connection closes. See the class remarks.</summary>
    public ChannelReader<QmpEvent> Events => _events.Reader;

    /// <summary>Completes (never faults) once the connection has closed and every pending command has failed.</summary>
    public Task Completion => _completion.Task;

    /// <summary>False once the connection has closed.</summary>
    public bool IsConnected { get { lock (_gate) return !_closed; } }

    /// <summary>Why the connection closed ("end of stream", "connection reset", another socket error, a protocol
    /// violation, "disposed"),
    /// or null while it is open.</summary>
    public string? CloseReason { get { lock (_gate) return _closeMessage; } }

    /// <summary>
    /// Connects to QEMU's QMP unix socket at <paramref name="socketPath"/>, retrying while it does not exist or refuses
    /// (QEMU is still starting), reads the greeting and sends qmp_capabilities. <paramref name="timeout"/> bounds the
    /// whole handshake; on expiry a <see cref="TimeoutException"/> says which step did not finish (QEMU serves one
    /// QMP client per monitor, so a second client connects but never gets a greeting).
    /// </summary>
    public static async Task<QmpClient> ConnectAsync(string socketPath, TimeSpan timeout, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(socketPath);
        using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeoutCts.CancelAfter(timeout);
        var endpoint = new UnixDomainSocketEndPoint(socketPath);
        Exception? lastError = null;
        var delay = TimeSpan.FromMilliseconds(10);
        Socket socket;
        while (true)
        {
            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(endpoint, timeoutCts.Token).ConfigureAwait(false);
                break;
            }
            catch (SocketException e)
            {
                socket.Dispose();
                lastError = e;
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                socket.Dispose();
                throw new TimeoutException(
                    $"QMP socket {socketPath} did not accept a connection within {timeout.TotalSeconds:0.###} s ({lastError?.Message ?? "no attempt finished"})", lastError);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
            try
            {
                await Task.Delay(delay, timeoutCts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TimeoutException(
                    $"QMP socket {socketPath} did not accept a connection within {timeout.TotalSeconds:0.###} s ({lastError.Message})", lastError);
            }
            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 100));
        }

        return await HandshakeOrDisposeAsync(new QmpClient(socket, new NetworkStream(socket, ownsSocket: true), socketPath),
            timeout, timeoutCts.Token, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Speaks QMP over an already connected stream (e.g. one end of a socketpair whose other end QEMU got as
    /// <c>-chardev socket,id=qmp,fd=N</c>). The client owns the stream. Same handshake and timeout as the path overload.
    /// </summary>
    public static async Task<QmpClient> ConnectAsync(Stream stream, TimeSpan timeout, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        using var timeoutCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeoutCts.CancelAfter(timeout);
        return await HandshakeOrDisposeAsync(new QmpClient(null, stream, "stream"), timeout, timeoutCts.Token, ct).ConfigureAwait(false);
    }

    /// <summary>A client whose handshake fails is closed, never handed out.</summary>
    private static async Task<QmpClient> HandshakeOrDisposeAsync(QmpClient client, TimeSpan timeout, CancellationToken timeoutToken,
        CancellationToken callerToken)
    {
        try
        {
            await client.HandshakeAsync(timeout, timeoutToken, callerToken).ConfigureAwait(false);
            return client;
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task HandshakeAsync(TimeSpan timeout, CancellationToken timeoutToken, CancellationToken callerToken)
    {
        ReadOnlyMemory<byte>? line;
        try
        {
            do line = await _lines.ReadLineAsync(timeoutToken).ConfigureAwait(false);
            while (line is { } l && IsBlank(l.Span));
        }
        catch (OperationCanceledException) when (!callerToken.IsCancellationRequested)
        {
            throw new TimeoutException(
                $"no QMP greeting from {_description} within {timeout.TotalSeconds:0.###} s (is another client connected to this monitor?)");
        }
        if (line is not { } greetingLine)
            throw new QmpProtocolException($"QMP connection {_description} closed before the greeting");
        ParseGreeting(greetingLine.Span);

        _readLoop = Task.Run(ReadLoopAsync, CancellationToken.None);
        try
        {
            await ExecuteAsync("qmp_capabilities", null, timeoutToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!callerToken.IsCancellationRequested)
        {
            throw new TimeoutException($"QEMU did not answer qmp_capabilities within {timeout.TotalSeconds:0.###} s");
        }
    }

    private void ParseGreeting(ReadOnlySpan<byte> line)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(line);
        }
        catch (JsonException e)
        {
            throw new QmpProtocolException($"QMP greeting is not JSON: {Preview(line)}", e);
        }
        if (node?["QMP"] is not JsonObject qmp)
            throw new QmpProtocolException($"expected a QMP greeting, got: {Preview(line)}");
        try
        {
            var v = qmp["version"]?["qemu"];
            Version = new QmpVersion(
                v?["major"]?.GetValue<int>() ?? 0, v?["minor"]?.GetValue<int>() ?? 0, v?["micro"]?.GetValue<int>() ?? 0,
                qmp["version"]?["package"]?.GetValue<string>() ?? "");
            OfferedCapabilities = qmp["capabilities"] is JsonArray caps
                ? [.. caps.Select(c => c?.GetValue<string>() ?? "")]
                : [];
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new QmpProtocolException($"malformed QMP greeting: {Preview(line)}", e);
        }
    }

    /// <summary>
    /// Sends <c>{"execute": command, "arguments": arguments, "id": n}</c> and returns the reply's "return" value
    /// (detached from the reply, so the caller may keep or re-parent it). <paramref name="arguments"/> is serialized,
    /// not adopted, so the caller may reuse it. Throws <see cref="QmpException"/> on an error reply and
    /// <see cref="QmpConnectionClosedException"/> if the connection is or becomes closed before the reply.
    /// </summary>
    public async Task<JsonNode?> ExecuteAsync(string command, JsonObject? arguments = null, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(command);
        ct.ThrowIfCancellationRequested();
        var id = Interlocked.Increment(ref _nextId);
        var reply = new TaskCompletionSource<JsonNode?>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (_closed) throw ClosedException(command, beforeSending: true);
            _pending.Add(id, new Pending(command, reply));
        }

        var message = Serialize(command, arguments, id);
        using (ct.UnsafeRegister(static (state, token) =>
               {
                   var (self, id) = ((QmpClient, long))state!;
                   self.Abandon(id, token);
               }, (this, id)))
        {
            try
            {
                await _writeLock.WaitAsync(ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                Abandon(id, ct);
                throw;
            }
            try
            {
                // Not cancellable: a half-written command would corrupt the stream for every other caller.
                await _stream.WriteAsync(message, CancellationToken.None).ConfigureAwait(false);
                await _stream.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or SocketException)
            {
                Close($"writing to QMP failed: {e.Message}");
            }
            finally
            {
                _writeLock.Release();
            }
            return await reply.Task.ConfigureAwait(false);
        }
    }

    private void Abandon(long id, CancellationToken token)
    {
        Pending? p;
        lock (_gate)
        {
            if (!_pending.Remove(id, out p)) return;
        }
        p.Reply.TrySetCanceled(token);
    }

    private static byte[] Serialize(string command, JsonObject? arguments, long id)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("execute", command);
            if (arguments is not null)
            {
                w.WritePropertyName("arguments");
                arguments.WriteTo(w);
            }
            w.WriteNumber("id", id);
            w.WriteEndObject();
        }
        var bytes = new byte[buffer.WrittenCount + 1];
        buffer.WrittenSpan.CopyTo(bytes);
        bytes[^1] = (byte)'\n';
        return bytes;
    }

    private async Task ReadLoopAsync()
    {
        var reason = "end of stream";
        try
        {
            while (true)
            {
                var line = await _lines.ReadLineAsync(_disposeCts.Token).ConfigureAwait(false);
                if (line is not { } l) break;
                if (IsBlank(l.Span)) continue;
                Dispatch(l.Span);
            }
        }
        catch (OperationCanceledException) when (_disposeCts.IsCancellationRequested)
        {
            reason = "disposed";
        }
        catch (ObjectDisposedException) when (_disposeCts.IsCancellationRequested)
        {
            reason = "disposed";
        }
        catch (Exception e) when (IsConnectionReset(e))
        {
            // QEMU 7.2 exiting after an exec: migration resets the socket instead of closing it: still just a close.
            reason = "connection reset";
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            reason = e is QmpProtocolException ? e.Message : $"read failed: {e.Message}";
        }
        Close(reason);
    }

    private static bool IsConnectionReset(Exception e) =>
        (e as SocketException ?? e.InnerException as SocketException)?.SocketErrorCode == SocketError.ConnectionReset;

    private void Dispatch(ReadOnlySpan<byte> line)
    {
        JsonObject? msg;
        try
        {
            msg = JsonNode.Parse(line) as JsonObject;
        }
        catch (JsonException e)
        {
            throw new QmpProtocolException($"QMP sent something that is not JSON: {Preview(line)}", e);
        }
        if (msg is null) throw new QmpProtocolException($"QMP sent something that is not a JSON object: {Preview(line)}");

        if (msg["event"] is JsonValue ev && ev.TryGetValue<string>(out var name))
        {
            _events.Writer.TryWrite(new QmpEvent(name, Detach(msg, "data") as JsonObject, ParseTimestamp(msg["timestamp"])));
            return;
        }

        var isReturn = msg.ContainsKey("return");
        var isError = msg["error"] is JsonObject;
        if (!isReturn && !isError) return; // neither reply nor event: nothing QMP 7.2 sends; ignore.
        // An error without an id answers a message QEMU could not parse (never one we sent); nothing waits for it.
        if (msg["id"] is not JsonValue idValue || !idValue.TryGetValue<long>(out var id)) return;

        Pending? p;
        lock (_gate)
        {
            if (!_pending.Remove(id, out p)) return; // abandoned by cancellation
        }
        if (isError)
        {
            var error = (JsonObject)msg["error"]!;
            p.Reply.TrySetException(new QmpException(p.Command, StringOr(error["class"], "UnknownError"), StringOr(error["desc"], "(no description)")));
        }
        else
        {
            p.Reply.TrySetResult(Detach(msg, "return"));
        }
    }

    private static JsonNode? Detach(JsonObject parent, string member)
    {
        parent.Remove(member, out var node);
        return node;
    }

    private static string StringOr(JsonNode? node, string fallback) =>
        node is JsonValue v && v.TryGetValue<string>(out var s) ? s : fallback;

    private static DateTimeOffset ParseTimestamp(JsonNode? ts)
    {
        if (ts is JsonObject o
            && o["seconds"] is JsonValue sv && sv.TryGetValue<long>(out var seconds)
            && o["microseconds"] is JsonValue uv && uv.TryGetValue<long>(out var micros)
            && seconds >= 0 && micros >= 0 && seconds < 253402300799L)
            return DateTimeOffset.FromUnixTimeSeconds(seconds).AddTicks(micros * 10);
        return DateTimeOffset.UnixEpoch; // QEMU sends -1/-1 when it could not read the clock
    }

    private void Close(string reason)
    {
        List<Pending> failed;
        lock (_gate)
        {
            if (_closed) return;
            _closed = true;
            _closeMessage = reason;
            failed = [.. _pending.Values];
            _pending.Clear();
        }
        try { _socket?.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        foreach (var p in failed) p.Reply.TrySetException(ClosedException(p.Command, beforeSending: false));
        _events.Writer.TryComplete();
        _completion.TrySetResult();
    }

    private QmpConnectionClosedException ClosedException(string command, bool beforeSending)
    {
        string reason;
        lock (_gate) reason = _closeMessage ?? "closed";
        var what = reason == "disposed"
            ? "the QMP client was disposed"
            : $"QEMU's QMP connection closed (QEMU exited?; {reason})";
        return new QmpConnectionClosedException(beforeSending
            ? $"{what}; cannot send {command}"
            : $"{what} while waiting for {command}") { Command = command };
    }

    private static bool IsBlank(ReadOnlySpan<byte> line) => line.Trim(" \t\r"u8).IsEmpty;

    private static string Preview(ReadOnlySpan<byte> line)
    {
        var text = Encoding.UTF8.GetString(line[..Math.Min(line.Length, 200)]).TrimEnd('\r');
        return line.Length > 200 ? text + "..." : text;
    }

    /// <summary>Closes the connection (pending commands fail with <see cref="QmpConnectionClosedException"/>, the
    /// event channel completes) and waits for the reader to stop. Does not stop QEMU.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        lock (_gate) _closeMessage ??= "disposed";
        await _disposeCts.CancelAsync().ConfigureAwait(false);
        Close("disposed");
        await _stream.DisposeAsync().ConfigureAwait(false);
        try { await _readLoop.ConfigureAwait(false); } catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException) { }
        _socket?.Dispose();
        _disposeCts.Dispose();
        _writeLock.Dispose();
    }

    // ---- typed helpers -------------------------------------------------------------------------------------------

    /// <summary>query-status: the VM's run state ("running", "paused", "prelaunch", "shutdown", ...).</summary>
    public async Task<QmpStatus> QueryStatusAsync(CancellationToken ct = default)
    {
        var r = await ExecuteAsync("query-status", null, ct).ConfigureAwait(false) as JsonObject
                ?? throw new QmpProtocolException("query-status returned no object");
        var status = StringOr(r["status"], "");
        var running = r["running"] is JsonValue v && v.TryGetValue<bool>(out var b) && b;
        return new QmpStatus(QmpStatus.ParseRunState(status), status, running);
    }

    /// <summary>stop: pause the vCPUs (emits STOP).</summary>
    public Task StopAsync(CancellationToken ct = default) => ExecuteAsync("stop", null, ct);

    /// <summary>cont: resume the vCPUs (emits RESUME); also starts a VM launched with -S.</summary>
    public Task ContAsync(CancellationToken ct = default) => ExecuteAsync("cont", null, ct);

    /// <summary>system_powerdown: press the ACPI power button (emits POWERDOWN); the guest decides whether to shut down.</summary>
    public Task SystemPowerdownAsync(CancellationToken ct = default) => ExecuteAsync("system_powerdown", null, ct);

    /// <summary>system_reset: hard reset (emits RESET).</summary>
    public Task SystemResetAsync(CancellationToken ct = default) => ExecuteAsync("system_reset", null, ct);

    /// <summary>
    /// quit: QEMU emits SHUTDOWN (reason "host-qmp-quit"), replies, and exits, closing the connection. A connection
    /// that closes before the reply counts as success. Await <see cref="Completion"/> to wait for the close itself
    /// (and reap the QEMU process separately).
    /// </summary>
    public async Task QuitAsync(CancellationToken ct = default)
    {
        try
        {
            await ExecuteAsync("quit", null, ct).ConfigureAwait(false);
        }
        catch (QmpConnectionClosedException) when (Volatile.Read(ref _disposed) == 0)
        {
            // QEMU went away before (or instead of) replying: that is what quit asks for.
        }
    }

    /// <summary>balloon: ask the balloon driver to bring the guest's memory to <paramref name="bytes"/>. Fails with
    /// DeviceNotActive when there is no virtio-balloon device.</summary>
    public Task BalloonAsync(long bytes, CancellationToken ct = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bytes);
        return ExecuteAsync("balloon", new JsonObject { ["value"] = bytes }, ct);
    }

    /// <summary>query-balloon: the guest's current memory in bytes ("actual").</summary>
    public async Task<long> QueryBalloonAsync(CancellationToken ct = default)
    {
        var r = await ExecuteAsync("query-balloon", null, ct).ConfigureAwait(false);
        return r?["actual"] is JsonValue v && v.TryGetValue<long>(out var actual)
            ? actual
            : throw new QmpProtocolException($"query-balloon returned no \"actual\": {r?.ToJsonString()}");
    }

    /// <summary>
    /// migrate: start an outgoing migration to <paramref name="uri"/> and return at once (QEMU migrates in the
    /// background; poll <see cref="QueryMigrateAsync"/>). To save to a file use <see cref="QmpMigrationUri.ToFile"/>
    /// (QEMU 7.2 has no "file:" URI). Pause the VM first (<see cref="StopAsync"/>) for a consistent snapshot that
    /// does not chase dirty pages; after completion QEMU is in "postmigrate".
    /// </summary>
    public Task MigrateAsync(string uri, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(uri);
        return ExecuteAsync("migrate", new JsonObject { ["uri"] = uri }, ct);
    }

    /// <summary>migrate_cancel: abort an outgoing migration.</summary>
    public Task MigrateCancelAsync(CancellationToken ct = default) => ExecuteAsync("migrate_cancel", null, ct);

    /// <summary>query-migrate: status and progress of the current (or last) migration.</summary>
    public async Task<QmpMigrationInfo> QueryMigrateAsync(CancellationToken ct = default)
    {
        var r = await ExecuteAsync("query-migrate", null, ct).ConfigureAwait(false) as JsonObject ?? [];
        var ram = r["ram"] as JsonObject;
        return new QmpMigrationInfo(
            r["status"] is JsonValue s && s.TryGetValue<string>(out var status) ? status : null,
            Long(ram?["total"]), Long(ram?["transferred"]), Long(ram?["remaining"]), Long(r["total-time"]),
            r["error-desc"] is JsonValue e && e.TryGetValue<string>(out var desc) ? desc : null,
            r);

        static long? Long(JsonNode? n) => n is JsonValue v && v.TryGetValue<long>(out var x) ? x : null;
    }

    /// <summary>
    /// migrate-set-parameters: set the migration bandwidth cap in bytes per second (QEMU's default is 128 MiB/s,
    /// which makes saving a large guest to a local file needlessly slow) and/or the maximum tolerated downtime in
    /// milliseconds. Parameters left null are not sent.
    /// </summary>
    public Task MigrateSetParametersAsync(long? maxBandwidthBytesPerSecond = null, long? downtimeLimitMs = null, CancellationToken ct = default)
    {
        var args = new JsonObject();
        if (maxBandwidthBytesPerSecond is { } bw)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(bw, nameof(maxBandwidthBytesPerSecond));
            args["max-bandwidth"] = bw;
        }
        if (downtimeLimitMs is { } dl)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(dl, nameof(downtimeLimitMs));
            args["downtime-limit"] = dl;
        }
        if (args.Count == 0) throw new ArgumentException("no migration parameter given");
        return ExecuteAsync("migrate-set-parameters", args, ct);
    }

    /// <summary>human-monitor-command: run an HMP command line (e.g. "info status") and return its text output.
    /// HMP errors come back as output text, not as a QMP error.</summary>
    public async Task<string> HumanMonitorCommandAsync(string commandLine, CancellationToken ct = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(commandLine);
        var r = await ExecuteAsync("human-monitor-command", new JsonObject { ["command-line"] = commandLine }, ct).ConfigureAwait(false);
        return r is JsonValue v && v.TryGetValue<string>(out var text) ? text : "";
    }
}
