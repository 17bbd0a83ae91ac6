namespace Vserver.Api;

/// <summary>Nothing answers on the agent's socket.</summary>
public sealed class AgentUnavailableException(string socketPath, string reason)
    : Exception($"no agent answers on {socketPath}: {reason}")
{
    public string SocketPath { get; } = socketPath;
}
