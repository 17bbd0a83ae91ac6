using HybridHypervisor.Guests;
using System.Text;
using Vserver.Isolation.Guests;

namespace HybridHypervisor.Domains;

/// <summary>A command the guest could not start (no such program, not executable): it "ran" like a shell's failed exec,
/// with the reason on stderr and 127 or 126 as its exit code, the same as in a vserver.</summary>
internal sealed class RefusedGuestProcess(string message, int exitCode) : IGuestProcess
{
    public Stream Stdin { get; } = Stream.Null;
    public Stream Stdout { get; } = new MemoryStream([], writable: false);
    public Stream? Stderr { get; } = new MemoryStream(Encoding.UTF8.GetBytes(message.TrimEnd('\n') + "\n"), writable: false);
    public Task<int> ExitCode { get; } = Task.FromResult(exitCode);

    public void Hangup()
    {
    }

    public void Resize(int rows, int cols)
    {
    }

    public void Dispose()
    {
        Stdout.Dispose();
        Stderr?.Dispose();
    }
}
