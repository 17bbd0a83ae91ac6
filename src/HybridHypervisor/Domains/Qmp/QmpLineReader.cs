namespace HybridHypervisor.Domains.Qmp;

/// <summary>Splits a byte stream into '\n'-terminated lines (QEMU ends each message with "\r\n"; the '\r' is left in
/// and is JSON whitespace). A line longer than <see cref="MaxLineBytes"/> is a protocol violation.</summary>
internal sealed class QmpLineReader(Stream stream)
{
    /// <summary>query-qmp-schema is the largest reply QEMU sends (~200 KiB in 7.2); 64 MiB is far beyond any.</summary>
    public const int MaxLineBytes = 64 * 1024 * 1024;

    private byte[] _buffer = new byte[16 * 1024];
    private int _start;
    private int _end;

    /// <summary>The next line without its '\n', or null at end of stream. The memory is valid until the next call.
    /// A final fragment without '\n' at end of stream is dropped: QEMU always terminates its messages.</summary>
    public async ValueTask<ReadOnlyMemory<byte>?> ReadLineAsync(CancellationToken ct)
    {
        if (_start == _end) _start = _end = 0;
        var scanFrom = _start;
        while (true)
        {
            var nl = Array.IndexOf(_buffer, (byte)'\n', scanFrom, _end - scanFrom);
            if (nl >= 0)
            {
                var line = new ReadOnlyMemory<byte>(_buffer, _start, nl - _start);
                _start = nl + 1;
                return line;
            }
            scanFrom = _end;
            if (_end == _buffer.Length)
            {
                var used = _end - _start;
                if (_start > 0 && used < _buffer.Length / 2)
                {
                    Buffer.BlockCopy(_buffer, _start, _buffer, 0, used);
                }
                else
                {
                    if (_buffer.Length >= MaxLineBytes)
                        throw new QmpProtocolException($"QMP message longer than {MaxLineBytes} bytes without a newline");
                    var bigger = new byte[Math.Min(_buffer.Length * 2, MaxLineBytes)];
                    Buffer.BlockCopy(_buffer, _start, bigger, 0, used);
                    _buffer = bigger;
                }
                scanFrom -= _start;
                _start = 0;
                _end = used;
            }
            var n = await stream.ReadAsync(_buffer.AsMemory(_end), ct).ConfigureAwait(false);
            if (n == 0) return null;
            _end += n;
        }
    }
}
