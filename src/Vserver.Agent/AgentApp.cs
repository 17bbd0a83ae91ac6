using HybridHypervisor;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>The agent's HTTP side over a fleet: Kestrel on a unix socket and the pipeline every request passes
/// (ApiErrors, RequestGate, the routes). vserverd serves it; the unit tests serve it over a fleet of fakes.</summary>
internal static class AgentApp
{
    public static WebApplication Build(string[] args, Fleet fleet, string bindPath)
    {
        var builder = WebApplication.CreateSlimBuilder(args);
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = ApiLimits.MaxRequestBodyBytes;
            k.ListenUnixSocket(bindPath, listen => listen.Use(KestrelRefusals.Filter(k.Limits)));
        });
        // Binding failures (bad JSON, a query value of the wrong type) throw, so ApiErrors can say what was wrong instead of
        // an empty 400.
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.Services.ConfigureHttpJsonOptions(o => AgentJson.Configure(o.SerializerOptions));
        builder.Services.AddSingleton(fleet);

        var app = builder.Build();
        app.UseWebSockets();
        app.Use(ApiErrors.Middleware);
        app.Use(RequestGate.Middleware);
        Endpoints.Map(app, fleet);
        return app;
    }
}
