namespace Vserver.IntegrationTests;

/// <summary>One agent and image for all tests of a class; each test uses its own guest names.</summary>
public sealed class SharedHost : IAsyncLifetime
{
    public TestHost Host { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Host = await TestHost.StartAsync();

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}

/// <summary>One agent with the busybox image and the default domain kernel, built with vsctl as an operator would, for a
/// class that boots domains.</summary>
public sealed class DomainHost : IAsyncLifetime
{
    public TestHost Host { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Host = await TestHost.StartAsync();
        try
        {
            Host.Vsctl("kernel", "build", "default").ShouldSucceed();
        }
        catch
        {
            await Host.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync() => await Host.DisposeAsync();
}
