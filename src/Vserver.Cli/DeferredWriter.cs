using System.Text;

namespace Vserver.Cli;

/// <summary>A <see cref="TextWriter"/> that creates the real one on first use.</summary>
internal sealed class DeferredWriter(Func<TextWriter> create) : TextWriter
{
    private TextWriter? _inner;

    private TextWriter Inner => _inner ??= create();

    public override Encoding Encoding => Inner.Encoding;

    public override void Write(char value) => Inner.Write(value);

    public override void Write(string? value) => Inner.Write(value);

    public override void Write(char[] buffer, int index, int count) => Inner.Write(buffer, index, count);

    public override void Write(ReadOnlySpan<char> buffer) => Inner.Write(buffer);

    public override void WriteLine(string? value) => Inner.WriteLine(value);

    public override void WriteLine() => Inner.WriteLine();

    public override void Flush() => _inner?.Flush();
}
