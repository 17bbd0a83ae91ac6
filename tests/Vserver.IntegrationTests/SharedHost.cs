namespace Vserver.IntegrationTests;

/// <summary>One agent and image for all tests of a class; each test uses its own guest names.</summary>
public sealed class SharedHost : IAsyncLifetime
{
    public TestHost Host { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Host = await TestHost.StartAsync();

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}
