namespace Vserver.Isolation.Processes;

/// <summary>A host tool failed (or could not run, or timed out: exit code -1). <see cref="Guests.VsinitException"/> is vsinit's.</summary>
public class HostProgramException(string message, int exitCode, string stderr) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
    public string Stderr { get; } = stderr;
}
