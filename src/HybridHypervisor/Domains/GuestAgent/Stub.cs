namespace HybridHypervisor.Domains.GuestAgent;
// TEMPORARY stub until the guestagent branch is merged.
public sealed record GuestCommand(IReadOnlyList<string> Argv, IReadOnlyDictionary<string, string>? Env = null, string? Cwd = null, bool Tty = false, int Rows = 0, int Cols = 0);
public sealed class GuestAgentClient : IAsyncDisposable
{
    public static Task<GuestAgentClient> ConnectAsync(string socketPath, CancellationToken ct) => throw new NotImplementedException();
    public Task<string> WaitReadyAsync(TimeSpan timeout, CancellationToken ct) => throw new NotImplementedException();
    public Task<Vserver.Isolation.Guests.IGuestProcess> StartAsync(GuestCommand command, CancellationToken ct) => throw new NotImplementedException();
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
