using Vserver.Cli;

namespace Vserver.Tests.Cli;

internal sealed class FixedClock(DateTimeOffset now) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() => now;

    public override TimeZoneInfo LocalTimeZone => TimeZoneInfo.Utc;
}

internal sealed class FakeTerminal : ITerminal
{
    public bool StdinIsTerminal { get; set; }
    public bool StdoutIsTerminal { get; set; }
    public (int Rows, int Cols)? WindowSize { get; set; }
    public int RawModeEntered { get; private set; }
    public int RawModeRestored { get; private set; }

    public bool IsTerminal(int fd) => fd switch { 0 => StdinIsTerminal, 1 => StdoutIsTerminal, _ => false };

    public (int Rows, int Cols)? Size() => WindowSize;

    public IDisposable EnterRawMode()
    {
        RawModeEntered++;
        return new Restore(this);
    }

    private sealed class Restore(FakeTerminal terminal) : IDisposable
    {
        public void Dispose() => terminal.RawModeRestored++;
    }
}

/// <summary>Runs vsctl in-process with captured output, against a socket of the test's choosing.</summary>
internal sealed class CliHarness
{
    public static readonly DateTimeOffset Now = new(2025, 3, 1, 12, 0, 0, TimeSpan.Zero);

    public StringWriter Out { get; } = new();
    public StringWriter Err { get; } = new();
    public Stream Stdin { get; set; } = new MemoryStream();
    public MemoryStream Stdout { get; } = new();
    public MemoryStream Stderr { get; } = new();
    public FakeTerminal Terminal { get; } = new();
    public Func<string, AutoStart?> AutoStartFor { get; set; } = _ => null;

    public CliContext Context => new()
    {
        Out = Out,
        Err = Err,
        OpenStdin = () => Stdin,
        OpenStdout = () => Stdout,
        OpenStderr = () => Stderr,
        Terminal = Terminal,
        Clock = new FixedClock(Now),
        AutoStartFor = AutoStartFor,
    };

    public string[] ErrLines => Err.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public string[] OutLines => Out.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();

    public Task<int> RunAsync(string socketPath, params string[] args) => Vsctl.RunAsync(["--socket", socketPath, .. args], Context);
}
