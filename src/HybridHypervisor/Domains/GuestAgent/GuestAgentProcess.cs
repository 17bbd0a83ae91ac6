using HybridHypervisor.Guests;
using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Vserver.Isolation.Guests;

namespace HybridHypervisor.Domains.GuestAgent;

/// <summary>
/// One exec session of a <see cref="GuestAgentClient"/>: a command running inside a domain.
/// <para>
/// Output goes from the client's reader loop into a <see cref="Pipe"/> per stream without ever waiting: the guest sends
/// at most <see cref="GuestAgentProtocol.Window"/> bytes before the reader of <see cref="Stdout"/>/<see cref="Stderr"/>
/// has consumed (and so ACKed) them, which bounds each pipe. <see cref="Stdin"/> likewise sends at most a window ahead
/// of the guest's INACKs, so a command that does not read its stdin stalls only its writer.
/// </para>
/// </summary>
public sealed class GuestAgentProcess : IGuestProcess
{
    private const int AckBatch = 32 * 1024;

    private readonly GuestAgentClient _client;
    private readonly Pipe _stdout = NewPipe();
    private readonly Pipe? _stderr;
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<int> _exit = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _gate = new();
    private int _stdinCredit = GuestAgentProtocol.Window;
    private TaskCompletionSource? _creditWaiter;
    private int _consumedUnacked;
    private bool _disposed;
    private bool _ended;
    private bool _hungUp;

    internal GuestAgentProcess(GuestAgentClient client, uint session, bool tty)
    {
        _client = client;
        Session = session;
        if (!tty) _stderr = NewPipe();
        Stdin = new GuestStdinStream(this);
        Stdout = new GuestOutputStream(this, _stdout.Reader);
        Stderr = _stderr is null ? null : new GuestOutputStream(this, _stderr.Reader);
    }

    /// <summary>The protocol's session id.</summary>
    public uint Session { get; }

    /// <summary>The command's pid inside the guest (0 until started).</summary>
    public int GuestPid { get; private set; }

    public Stream Stdin { get; }
    public Stream Stdout { get; }
    public Stream? Stderr { get; }
    public Task<int> ExitCode => _exit.Task;

    internal Task Started => _started.Task;

    public void Hangup()
    {
        lock (_gate)
        {
            if (_hungUp) return;
            _hungUp = true;
        }
        if (HasExited) return;
        if (_client.LastHello is { Version: >= 2 })
            _client.Post(GuestAgentProtocol.Encode(GuestFrameType.Hangup, Session, (uint)IGuestProcess.HangupGrace.TotalMilliseconds));
        else
            Signal(1); // all a version 1 guest agent can do: SIGHUP to the command's process group, no SIGKILL after
    }

    /// <summary>Sends signal <paramref name="signo"/> to the command's process group in the guest.</summary>
    public void Signal(int signo)
    {
        if (!HasExited) _client.Post(GuestAgentProtocol.Encode(GuestFrameType.Signal, Session, (uint)signo));
    }

    public void Resize(int rows, int cols)
    {
        if (!HasExited) _client.Post(GuestAgentProtocol.Encode(GuestFrameType.Resize, Session, GuestAgentProtocol.EncodeResize(rows, cols)));
    }

    private bool HasExited => _exit.Task.IsCompleted;

    /// <summary>The caller is done: a command still running is hung up, and its later output is dropped (but ACKed,
    /// so the guest keeps going until it exits).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        Hangup();
        Stdin.Dispose();
    }

    // ---- from the client's reader loop ----

    internal void OnStarted(int pid)
    {
        GuestPid = pid;
        _started.TrySetResult();
    }

    internal void OnError(int code, string message)
    {
        _started.TrySetException(new GuestCommandException(message, code));
        End(code);
    }

    internal void OnOutput(bool stderr, ReadOnlySpan<byte> data)
    {
        var pipe = stderr && _stderr is not null ? _stderr : _stdout;
        bool dropped;
        // Under the lock: End (from another thread when the connection drops) must not complete the pipe mid-write.
        lock (_gate)
        {
            dropped = _disposed || _ended;
            if (!dropped)
            {
                pipe.Writer.Write(data);
                dropped = !Flush(pipe.Writer); // the reader completed: nobody reads any more
            }
        }
        if (dropped) _client.Post(GuestAgentProtocol.Encode(GuestFrameType.Ack, Session, (uint)data.Length));
    }

    internal void OnExit(int code) => End(code);

    internal void OnInputAck(int n)
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            _stdinCredit += n;
            waiter = _creditWaiter;
            _creditWaiter = null;
        }
        waiter?.TrySetResult();
    }

    /// <summary>The session is gone without an EXIT (connection closed, guest restarted): 255 and why, on stderr.</summary>
    internal void OnLost(string why)
    {
        _started.TrySetException(new GuestAgentException(why));
        _ = _started.Task.Exception;
        End(255, _started.Task.IsCompletedSuccessfully ? $"vserver: {why}\n" : null);
    }

    /// <summary>StartAsync gave up before STARTED: nothing will ever read this session.</summary>
    internal void Abandon()
    {
        _started.TrySetCanceled();
        _ = _started.Task.Exception;
        End(255);
    }

    private void End(int code, string? lastWords = null)
    {
        TaskCompletionSource? waiter;
        lock (_gate)
        {
            if (_ended) return;
            _ended = true;
            if (lastWords is not null && !_disposed)
            {
                var pipe = _stderr ?? _stdout;
                pipe.Writer.Write(Encoding.UTF8.GetBytes(lastWords));
                Flush(pipe.Writer);
            }
            _stdout.Writer.Complete();
            _stderr?.Writer.Complete();
            waiter = _creditWaiter;
            _creditWaiter = null;
        }
        waiter?.TrySetResult();
        _exit.TrySetResult(code);
    }

    // ---- from the streams ----

    /// <summary>The reader consumed <paramref name="n"/> bytes; ACK in batches, and at once when its pipe ran empty so
    /// that a window never stays closed on a reader that is waiting.</summary>
    internal void OnConsumed(int n, bool drained)
    {
        int ack;
        lock (_gate)
        {
            _consumedUnacked += n;
            if (_consumedUnacked < AckBatch && !drained) return;
            ack = _consumedUnacked;
            _consumedUnacked = 0;
        }
        if (ack > 0 && !HasExited) _client.Post(GuestAgentProtocol.Encode(GuestFrameType.Ack, Session, (uint)ack));
    }

    internal async Task WriteStdinAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        while (!data.IsEmpty)
        {
            if (HasExited) throw new IOException($"the command in the guest has exited (session {Session}); its stdin is closed");
            Task wait;
            int chunk;
            lock (_gate)
            {
                chunk = Math.Min(Math.Min(_stdinCredit, data.Length), GuestAgentProtocol.MaxPayload);
                if (chunk > 0)
                {
                    _stdinCredit -= chunk;
                    wait = Task.CompletedTask;
                }
                else
                {
                    _creditWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    wait = _creditWaiter.Task;
                }
            }
            if (chunk == 0)
            {
                await wait.WaitAsync(ct).ConfigureAwait(false);
                continue;
            }
            await _client.SendAsync(GuestAgentProtocol.Encode(GuestFrameType.Stdin, Session, data.Span[..chunk]), ct).ConfigureAwait(false);
            data = data[chunk..];
        }
    }

    internal void SendEof()
    {
        if (!HasExited) _client.Post(GuestAgentProtocol.Encode(GuestFrameType.Stdin, Session, []));
    }

    internal Task SendEofAsync() =>
        HasExited ? Task.CompletedTask : _client.SendAsync(GuestAgentProtocol.Encode(GuestFrameType.Stdin, Session, []), CancellationToken.None);

    /// <summary>False when the pipe's reader has completed. The pipes never pause (no threshold; the guest's window
    /// bounds them), so the flush completes at once and the reader loop never waits on one session.</summary>
    private static bool Flush(PipeWriter writer)
    {
        var flush = writer.FlushAsync();
        if (flush.IsCompleted) return !flush.Result.IsCompleted;
        _ = flush.AsTask();
        return true;
    }

    private static Pipe NewPipe() => new(new PipeOptions(pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false));
}

/// <summary>A command's stdout or stderr: reads end (0) after the guest's last output for the session.</summary>
internal sealed class GuestOutputStream(GuestAgentProcess process, PipeReader reader) : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty) return 0;
        ReadResult result;
        try
        {
            result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (InvalidOperationException)
        {
            return 0; // the process was disposed: the reader is completed
        }
        var available = result.Buffer;
        if (available.IsEmpty && result.IsCompleted)
        {
            reader.AdvanceTo(available.End);
            return 0;
        }
        var n = (int)Math.Min(available.Length, buffer.Length);
        var slice = available.Slice(0, n);
        slice.CopyTo(buffer.Span);
        reader.AdvanceTo(slice.End);
        process.OnConsumed(n, drained: n == available.Length);
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A command's stdin: writes wait for the guest's window; Dispose sends end of file.</summary>
internal sealed class GuestStdinStream(GuestAgentProcess process) : Stream
{
    private int _closed;

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _closed) != 0, this);
        return new ValueTask(process.WriteStdinAsync(buffer, cancellationToken));
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public override void Flush() { }

    protected override void Dispose(bool disposing)
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0) process.SendEof();
        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0) await process.SendEofAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
