using HybridHypervisor.Guests;
using Vserver.Isolation.Guests;

namespace HybridHypervisor.Vservers;

/// <summary>A command in a vserver (a <c>vsinit exec</c> child of the agent) as the fleet hands out every guest command.</summary>
internal sealed class VserverProcess(ExecProcess exec) : IGuestProcess
{
    public Stream Stdin => exec.Stdin;
    public Stream Stdout => exec.Stdout;
    public Stream? Stderr => exec.Stderr;
    public Task<int> ExitCode => exec.ExitCode;
    public void Hangup() => exec.Hangup();
    public void Resize(int rows, int cols) => exec.Resize(rows, cols);
    public void Dispose() => exec.Dispose();
}
