using HybridHypervisor;
using HybridHypervisor.Model;
using Microsoft.AspNetCore.Mvc;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>REST routes: each parses the request, calls the fleet, and maps the answer. No logic of their own.</summary>
internal static class Endpoints
{
    public static void Map(WebApplication app, Fleet fleet)
    {
        var v1 = app.MapGroup("/v1");
        v1.MapGet("/host", () => HostAsync(fleet));
        v1.MapPatch("/host", (HostSettingsRequest request) =>
        {
            var pool = request is not { ReserveBytes: null, Overcommit: null, MinFreeBytes: null, Ksm: null };
            // The pool's part is checked before the network's is made, so a refusal of either changes nothing.
            if (pool) fleet.CheckedPoolSettings(request.ReserveBytes, request.Overcommit, request.MinFreeBytes, request.Ksm);
            fleet.SetNetwork(request);
            if (pool) fleet.SetPool(request.ReserveBytes, request.Overcommit, request.MinFreeBytes, request.Ksm);
            return HostAsync(fleet);
        });
        v1.MapPost("/host/teardown", async (IHostApplicationLifetime lifetime, CancellationToken ct) =>
        {
            var removed = await fleet.TeardownNetworkAsync(ct);
            // The answer goes out first; then the agent ends as it does on SIGTERM.
            _ = Task.Delay(200, CancellationToken.None).ContinueWith(_ => lifetime.StopApplication(), TaskScheduler.Default);
            return new HostTeardownReport { Removed = removed };
        });
        v1.MapPost("/host/check", async (HostCheckRequest request, CancellationToken ct) => ContractMapping.ToReport(await fleet.CheckHostAsync(request.Repair, ct)));
        v1.MapPost("/debug/failpoints", (FailpointRequest request) =>
        {
            if (!Failpoints.Armable) return Results.NotFound(new ErrorResponse { Error = "crash points are off: the agent was not started with VSERVER_FAILPOINTS=armable", Code = ErrorCodes.NotFound });
            var reached = Failpoints.Reached;
            Failpoints.ArmAfter(request.After);
            return Results.Ok(new FailpointResult { Reached = reached });
        });
        v1.MapGet("/stat", async (string[]? name, CancellationToken ct) => ContractMapping.ToStat(await fleet.StatAsync(name ?? [], ct)));
        v1.MapGet("/guests", () => new GuestList
        {
            Guests = fleet.List().Select(ContractMapping.ToInfo).ToList(),
            Warnings = fleet.Warnings(),
        });
        v1.MapGet("/guests/{name}", (string name) => ContractMapping.ToInfo(fleet.Get(name)));
        v1.MapPost("/guests", async (GuestSpec spec, [FromQuery(Name = "dry_run")] bool? dryRun, CancellationToken ct) =>
        {
            // A dry run answers 200 with the guest it would make; a create 201 with the guest made.
            var view = await fleet.CreateAsync(spec, dryRun ?? false, ct);
            return dryRun == true ? Results.Ok(ContractMapping.ToInfo(view)) : Results.Created($"/v1/guests/{view.Name}", ContractMapping.ToInfo(view));
        });
        v1.MapPost("/plans/check", (PlanCheckRequest plan) => new PlanCheckReport
        {
            // A list or a section left out arrives as null from the source-generated reader (dotnet/runtime#84484).
            Guests = fleet.CheckPlan([.. (plan.Guests ?? []).Select(g => new PlannedGuest(g.Name, g.Create, g.Ports ?? []))])
                .Select(c => new PlannedGuestResult
                {
                    Name = c.Name,
                    Would = c.Would is { } would ? ContractMapping.ToInfo(would) : null,
                    Refusal = c.Refusal is { } refusal ? ApiErrors.Body(refusal) : null,
                }).ToList(),
        });
        v1.MapDelete("/guests/{name}", async (string name, bool? force, CancellationToken ct) =>
        {
            await fleet.DestroyAsync(name, force ?? false, ct);
            return Results.NoContent();
        });
        v1.MapPost("/guests/{name}/start", async (string name, bool? wait, CancellationToken ct) =>
            ContractMapping.ToInfo(await fleet.StartAsync(name, wait ?? false, ct)));
        v1.MapPost("/guests/{name}/stop", async (string name, int? timeout, CancellationToken ct) =>
        {
            if (TimeoutError("timeout", timeout, 0) is { } invalid) throw invalid;
            return ContractMapping.ToInfo(await fleet.StopAsync(name, timeout is { } t ? TimeSpan.FromSeconds(t) : null, ct));
        });
        v1.MapPost("/guests/{name}/restart", async (string name, CancellationToken ct) => ContractMapping.ToInfo(await fleet.RestartAsync(name, ct)));
        v1.MapPost("/guests/{name}/pause", async (string name, CancellationToken ct) => ContractMapping.ToInfo(await fleet.PauseAsync(name, ct)));
        v1.MapPost("/guests/{name}/resume", async (string name, CancellationToken ct) => ContractMapping.ToInfo(await fleet.ResumeAsync(name, ct)));
        v1.MapPost("/guests/{name}/wait", async (string name, CancellationToken ct) => ContractMapping.ToInfo(await fleet.WaitAsync(name, ct)));
        v1.MapPatch("/guests/{name}/limits", async (string name, SetLimitsRequest request, CancellationToken ct) =>
            ContractMapping.ToInfo(await fleet.SetLimitsAsync(name,
                new GuestLimits
                {
                    MemoryBytes = request.MemoryBytes, MemoryMinBytes = request.MemoryMinBytes, Cpus = request.Cpus, Pids = request.Pids,
                    DiskBytes = request.DiskBytes,
                },
                ContractMapping.ParseRestart(request.Restart), request.Autostart, ct)));
        v1.Map("/guests/{name}/exec", (HttpContext context, string name) => ExecRelay.RunAsync(context, fleet, name));
        v1.Map("/guests/{name}/console", (HttpContext context, string name) => ConsoleRelay.RunAsync(context, fleet, name));
        v1.MapPost("/guests/{name}/save", async (string name, SaveFileRequest request, CancellationToken ct) =>
        {
            await fleet.SaveAsync(name, request.File, ct);
            return new SaveResult { File = request.File, SizeBytes = new FileInfo(request.File).Length };
        });
        v1.MapPost("/guests/{name}/promote", async (string name, PromoteRequest request, CancellationToken ct) =>
        {
            if (TimeoutError("timeoutSeconds", request.TimeoutSeconds, 1) is { } invalid) throw invalid;
            var (plan, view) = await fleet.PromoteAsync(name, new PromoteOptions(request.Kernel, request.Vcpus, request.MemoryBytes, request.Copy,
                request.DiskBytes, request.DryRun, request.TimeoutSeconds is { } t ? TimeSpan.FromSeconds(t) : null), ct);
            return ContractMapping.ToResult(plan, view);
        });
        v1.MapPost("/guests/{name}/demote", async (string name, DemoteRequest request, CancellationToken ct) =>
        {
            var (plan, view) = await fleet.DemoteAsync(name, request.DryRun, ct);
            return ContractMapping.ToResult(plan, view);
        });
        PortEndpoints.Map(v1, fleet);
        v1.MapPost("/restore", async (SaveFileRequest request, CancellationToken ct) =>
        {
            var view = await fleet.RestoreAsync(request.File, ct);
            return Results.Created($"/v1/guests/{view.Name}", ContractMapping.ToInfo(view));
        });

        v1.MapGet("/kernels", () => (IReadOnlyList<KernelInfo>)fleet.Kernels.List().Select(ContractMapping.ToInfo).ToList());
        v1.MapPost("/kernels", (BuildRequest request) =>
        {
            var kernel = fleet.BuildKernel(request.Name);
            return Results.Created($"/v1/kernels/{kernel.Name}", ContractMapping.ToInfo(kernel));
        });
        v1.MapDelete("/kernels/{name}", (string name) =>
        {
            fleet.RemoveKernel(name);
            return Results.NoContent();
        });

        v1.MapGet("/images", () => fleet.ListImages());
        v1.MapPost("/images", (BuildRequest request) =>
        {
            var image = fleet.BuildImage(request.Name);
            return Results.Created($"/v1/images/{image.Name}", image);
        });
        v1.MapDelete("/images/{name}", (string name) =>
        {
            fleet.RemoveImage(name);
            return Results.NoContent();
        });
        // The body is the archive itself (any length, streamed); source says where it came from, tag picks an OCI image.
        v1.MapPost("/images/{name}/import", async (HttpContext context, string name, string? source, string? tag) =>
        {
            StreamedBody.Allow(context);
            var image = await Task.Run(() => fleet.ImportImage(name, context.Request.Body, source, tag));
            return Results.Created($"/v1/images/{image.Name}", image);
        }).WithMetadata(new StreamedBody());
        v1.MapGet("/images/{name}/export", async (HttpContext context, string name, string? compression) =>
        {
            var format = Fleet.ExportCompression(compression);
            fleet.RequireImage(name);
            StreamedBody.Allow(context);
            context.Response.ContentType = "application/x-tar";
            try
            {
                await Task.Run(() => fleet.ExportImage(name, context.Response.Body, format));
            }
            catch (Exception e) when (context.Response.HasStarted && e is not OperationCanceledException)
            {
                // Half an archive went out: the connection is cut, so the client sees a broken stream, never a short tar
                // that ends cleanly.
                Console.Error.WriteLine($"vserverd: exporting image {name} failed after the first bytes: {ApiErrors.Failure(e)}");
                context.Abort();
            }
        });
    }

    /// <summary>The longest a client may ask the agent to wait (a stop, a promotion's boot): a day.</summary>
    internal const int MaxTimeoutSeconds = 86_400;

    /// <summary>A timeout in seconds outside <paramref name="minimum"/>..<see cref="MaxTimeoutSeconds"/>, refused with its range.</summary>
    internal static FleetException? TimeoutError(string field, int? seconds, int minimum) =>
        seconds is { } s && (s < minimum || s > MaxTimeoutSeconds)
            ? FleetException.Invalid(new SettingError(field, s.ToString(System.Globalization.CultureInfo.InvariantCulture), ErrorCodes.Reasons.OutOfRange,
                    $"invalid {field} {s}: give {minimum} to {MaxTimeoutSeconds} seconds")
                .With("minimum", minimum).With("maximum", MaxTimeoutSeconds))
            : null;

    private static async Task<HostInfo> HostAsync(Fleet fleet) => new HostInfo
    {
        Accelerator = fleet.AcceleratorAsync() is { } probe
            ? (await probe).Display
            : "unknown: no domain kernel is built to probe with (vsctl kernel build default)",
        Cpus = Environment.ProcessorCount,
        MemoryBytes = HostMemory.TotalBytes,
        Version = typeof(Endpoints).Assembly.GetName().Version?.ToString() ?? "0",
        CgroupVersion = fleet.CgroupVersion,
        Bridge = fleet.Options.BridgeName,
        Subnet = fleet.Options.Subnet.ToString(),
        StateRoot = fleet.Options.StateRoot,
        RunRoot = fleet.Options.RunRoot,
        AgentPid = Environment.ProcessId,
        Pool = ContractMapping.ToInfo(fleet.PoolInfo()),
        Nat = fleet.Nat,
        IpForwarding = fleet.IpForwarding,
        Routed = fleet.NetworkSettings.Routed,
        Uplink = fleet.NetworkSettings.Uplink,
        Resolver = fleet.ResolverInfo(),
    };
}
