using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text.Json.Serialization.Metadata;

namespace Vserver.Api;

/// <summary>The client of the whole agent: vserverd's REST API over its unix socket, typed.</summary>
public sealed class AgentClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly SocketsHttpHandler _handler;

    public AgentClient(string socketPath)
    {
        SocketPath = socketPath;
        _handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch (SocketException e)
                {
                    socket.Dispose();
                    throw new AgentUnavailableException(socketPath, e.SocketErrorCode switch
                    {
                        SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported => "the socket does not exist",
                        SocketError.ConnectionRefused => "connection refused (the agent is not running)",
                        _ => e.Message,
                    });
                }
            },
        };
        _http = new HttpClient(_handler) { BaseAddress = new Uri("http://vserverd/"), Timeout = Timeout.InfiniteTimeSpan };
    }

    public string SocketPath { get; }

    public static string DefaultSocketPath =>
        Path.Combine(Environment.GetEnvironmentVariable("VSERVER_RUN") is { Length: > 0 } run ? run : "/run/vserver", "agent.sock");

    public Task<HostInfo> HostAsync(CancellationToken ct = default) => GetAsync("v1/host", ApiJson.Default.HostInfo, ct);

    public Task<HostInfo> SetHostAsync(HostSettingsRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Patch, "v1/host", JsonContent.Create(request, ApiJson.Default.HostSettingsRequest), ApiJson.Default.HostInfo, ct);

    /// <summary>Memory use per guest and of the host, measured now; <paramref name="names"/> empty = every guest.</summary>
    public Task<StatReport> StatAsync(IReadOnlyList<string>? names = null, CancellationToken ct = default) =>
        GetAsync(names is { Count: > 0 } ? "v1/stat?" + string.Join('&', names.Select(n => "name=" + Uri.EscapeDataString(n))) : "v1/stat",
            ApiJson.Default.StatReport, ct);

    /// <summary>What on the host no guest owns; with <paramref name="repair"/> it is removed.</summary>
    public Task<HostCheckReport> CheckHostAsync(bool repair, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/host/check", JsonContent.Create(new HostCheckRequest { Repair = repair }, ApiJson.Default.HostCheckRequest),
            ApiJson.Default.HostCheckReport, ct);

    /// <summary>Takes the guests' network off the host and stops the agent (refused while guests exist).</summary>
    public Task<HostTeardownReport> TeardownHostAsync(CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/host/teardown", null, ApiJson.Default.HostTeardownReport, ct);

    /// <summary>Tests: arms the agent's crash points (see <see cref="FailpointRequest"/>).</summary>
    public Task<FailpointResult> ArmFailpointAsync(int after, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/debug/failpoints", JsonContent.Create(new FailpointRequest { After = after }, ApiJson.Default.FailpointRequest),
            ApiJson.Default.FailpointResult, ct);

    public Task<GuestList> ListAsync(CancellationToken ct = default) => GetAsync("v1/guests", ApiJson.Default.GuestList, ct);

    public Task<GuestInfo> GetAsync(string name, CancellationToken ct = default) =>
        GetAsync($"v1/guests/{Uri.EscapeDataString(name)}", ApiJson.Default.GuestInfo, ct);

    public Task<GuestInfo> CreateAsync(GuestSpec spec, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/guests", JsonContent.Create(spec, ApiJson.Default.GuestSpec), ApiJson.Default.GuestInfo, ct);

    /// <summary>Checks a create without making anything: the guest it would make (with the address it would get), or
    /// the <see cref="ApiException"/> the create would answer, with the same code.</summary>
    public Task<GuestInfo> CreateDryRunAsync(GuestSpec spec, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/guests?dry_run=true", JsonContent.Create(spec, ApiJson.Default.GuestSpec), ApiJson.Default.GuestInfo, ct);

    /// <summary>Checks a whole plan as an apply would make it (see <see cref="PlanCheckRequest"/>); changes nothing.</summary>
    public Task<PlanCheckReport> CheckPlanAsync(PlanCheckRequest plan, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/plans/check", JsonContent.Create(plan, ApiJson.Default.PlanCheckRequest), ApiJson.Default.PlanCheckReport, ct);

    public Task<GuestInfo> StartAsync(string name, bool wait = false, CancellationToken ct = default) =>
        ActionAsync(name, wait ? "start?wait=true" : "start", ct);

    public Task<GuestInfo> StopAsync(string name, int? timeoutSeconds = null, CancellationToken ct = default) =>
        ActionAsync(name, timeoutSeconds is { } t ? $"stop?timeout={t}" : "stop", ct);

    public Task<GuestInfo> RestartAsync(string name, CancellationToken ct = default) => ActionAsync(name, "restart", ct);

    public Task<GuestInfo> PauseAsync(string name, CancellationToken ct = default) => ActionAsync(name, "pause", ct);

    public Task<GuestInfo> ResumeAsync(string name, CancellationToken ct = default) => ActionAsync(name, "resume", ct);

    public Task<GuestInfo> WaitAsync(string name, CancellationToken ct = default) => ActionAsync(name, "wait", ct);

    public Task<GuestInfo> SetLimitsAsync(string name, SetLimitsRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Patch, $"v1/guests/{Uri.EscapeDataString(name)}/limits",
            JsonContent.Create(request, ApiJson.Default.SetLimitsRequest), ApiJson.Default.GuestInfo, ct);

    public Task DestroyAsync(string name, bool force, CancellationToken ct = default) =>
        DeleteAsync($"v1/guests/{Uri.EscapeDataString(name)}{(force ? "?force=true" : "")}", ct);

    /// <summary>Published ports of one guest, or of every guest that has some (<paramref name="name"/> null).</summary>
    public Task<PortList> PortsAsync(string? name = null, CancellationToken ct = default) =>
        GetAsync(name is null ? "v1/ports" : $"v1/guests/{Uri.EscapeDataString(name)}/ports", ApiJson.Default.PortList, ct);

    public Task<GuestInfo> AddPortAsync(string name, PortInfo port, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, $"v1/guests/{Uri.EscapeDataString(name)}/ports",
            JsonContent.Create(port, ApiJson.Default.PortInfo), ApiJson.Default.GuestInfo, ct);

    public Task RemovePortAsync(string name, int hostPort, string protocol, CancellationToken ct = default) =>
        DeleteAsync($"v1/guests/{Uri.EscapeDataString(name)}/ports/{hostPort}/{Uri.EscapeDataString(protocol)}", ct);

    public Task<IReadOnlyList<ImageInfo>> ImagesAsync(CancellationToken ct = default) =>
        GetAsync("v1/images", ApiJson.Default.IReadOnlyListImageInfo, ct);

    public Task<ImageInfo> BuildImageAsync(string name, CancellationToken ct = default) =>
        BuildAsync("v1/images", name, ApiJson.Default.ImageInfo, ct);

    public Task RemoveImageAsync(string name, CancellationToken ct = default) => DeleteAsync($"v1/images/{Uri.EscapeDataString(name)}", ct);

    /// <summary>Imports image <paramref name="name"/> from the bytes of <paramref name="archive"/> (a root file system
    /// tarball or an OCI layout in a tar, compressed or not), streamed to the agent; <paramref name="source"/> is what
    /// the image's record says it came from, <paramref name="tag"/> picks an OCI image by its tag.</summary>
    public Task<ImageInfo> ImportImageAsync(string name, Stream archive, string source, string? tag = null, CancellationToken ct = default)
    {
        var query = $"?source={Uri.EscapeDataString(source)}{(tag is null ? "" : $"&tag={Uri.EscapeDataString(tag)}")}";
        var content = new StreamContent(archive, 1 << 16);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/octet-stream");
        if (archive.CanSeek) content.Headers.ContentLength = archive.Length - archive.Position;
        return SendAsync(HttpMethod.Post, $"v1/images/{Uri.EscapeDataString(name)}/import{query}", content, ApiJson.Default.ImageInfo, ct);
    }

    /// <summary>Writes image <paramref name="name"/> as a tarball to <paramref name="destination"/>, compressed with
    /// <paramref name="compression"/> (none, gzip, xz, zstd, bzip2). A stream the agent cuts short throws
    /// <see cref="HttpIOException"/>.</summary>
    public async Task ExportImageAsync(string name, string compression, Stream destination, CancellationToken ct = default)
    {
        using var response = await SendRawAsync(new HttpRequestMessage(HttpMethod.Get,
            $"v1/images/{Uri.EscapeDataString(name)}/export?compression={Uri.EscapeDataString(compression)}"), ct, HttpCompletionOption.ResponseHeadersRead);
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        await body.CopyToAsync(destination, 1 << 16, ct);
    }

    public Task<IReadOnlyList<KernelInfo>> ListKernelsAsync(CancellationToken ct = default) =>
        GetAsync("v1/kernels", ApiJson.Default.IReadOnlyListKernelInfo, ct);

    public Task<KernelInfo> BuildKernelAsync(string name, CancellationToken ct = default) =>
        BuildAsync("v1/kernels", name, ApiJson.Default.KernelInfo, ct);

    public Task RemoveKernelAsync(string name, CancellationToken ct = default) => DeleteAsync($"v1/kernels/{Uri.EscapeDataString(name)}", ct);

    /// <summary>Saves a running domain to <paramref name="file"/>, a path on the agent's host; the agent wants it absolute.</summary>
    public Task<SaveResult> SaveAsync(string name, string file, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, $"v1/guests/{Uri.EscapeDataString(name)}/save",
            JsonContent.Create(new SaveFileRequest { File = file }, ApiJson.Default.SaveFileRequest), ApiJson.Default.SaveResult, ct);

    /// <summary>Recreates and resumes the domain saved in <paramref name="file"/> (absolute, on the agent's host).</summary>
    public Task<GuestInfo> RestoreAsync(string file, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, "v1/restore", JsonContent.Create(new SaveFileRequest { File = file }, ApiJson.Default.SaveFileRequest),
            ApiJson.Default.GuestInfo, ct);

    /// <summary>Promotes a vserver to a domain (or, with DryRun, says what it would get).</summary>
    public Task<ConversionResult> PromoteAsync(string name, PromoteRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, $"v1/guests/{Uri.EscapeDataString(name)}/promote",
            JsonContent.Create(request, ApiJson.Default.PromoteRequest), ApiJson.Default.ConversionResult, ct);

    /// <summary>Demotes a domain to a vserver (or, with DryRun, says what it would get).</summary>
    public Task<ConversionResult> DemoteAsync(string name, DemoteRequest request, CancellationToken ct = default) =>
        SendAsync(HttpMethod.Post, $"v1/guests/{Uri.EscapeDataString(name)}/demote",
            JsonContent.Create(request, ApiJson.Default.DemoteRequest), ApiJson.Default.ConversionResult, ct);

    /// <summary>Opens the exec WebSocket and sends the request; the caller pumps <see cref="ExecStream"/> frames.</summary>
    public async Task<WebSocket> OpenExecAsync(string name, ExecRequest request, CancellationToken ct = default)
    {
        var ws = await OpenWebSocketAsync(name, "exec", ct);
        var json = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(request, ApiJson.Default.ExecRequest);
        await ws.SendAsync(json, WebSocketMessageType.Text, true, ct);
        return ws;
    }

    /// <summary>
    /// Opens a domain's serial console: <see cref="ExecStream.Stdout"/> frames come, <see cref="ExecStream.Stdin"/>
    /// frames go, or one <see cref="ExecStream.Error"/> frame says why there is no console. Closing it detaches.
    /// </summary>
    public Task<WebSocket> OpenConsoleAsync(string name, CancellationToken ct = default) => OpenWebSocketAsync(name, "console", ct);

    private async Task<WebSocket> OpenWebSocketAsync(string name, string endpoint, CancellationToken ct)
    {
        var ws = new ClientWebSocket();
        try
        {
            await ws.ConnectAsync(new Uri($"ws://vserverd/v1/guests/{Uri.EscapeDataString(name)}/{endpoint}"),
                new HttpMessageInvoker(_handler, disposeHandler: false), ct);
        }
        catch (WebSocketException e) when (e.InnerException is AgentUnavailableException unavailable)
        {
            ws.Dispose();
            throw unavailable;
        }
        catch (WebSocketException)
        {
            ws.Dispose();
            // The agent refused the upgrade: ask the plain endpoint why (404 for an unknown guest, 409 for a stopped one).
            await GetAsync(name, ct);
            throw;
        }
        return ws;
    }

    private Task<GuestInfo> ActionAsync(string name, string action, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, $"v1/guests/{Uri.EscapeDataString(name)}/{action}", null, ApiJson.Default.GuestInfo, ct);

    private async Task<T> GetAsync<T>(string path, JsonTypeInfo<T> type, CancellationToken ct) =>
        await SendAsync(HttpMethod.Get, path, null, type, ct);

    /// <summary>Builds an image or a kernel from its recipe, by name: what was built.</summary>
    private Task<T> BuildAsync<T>(string path, string name, JsonTypeInfo<T> type, CancellationToken ct) =>
        SendAsync(HttpMethod.Post, path, JsonContent.Create(new BuildRequest { Name = name }, ApiJson.Default.BuildRequest), type, ct);

    /// <summary>A DELETE whose answer says nothing beyond its success.</summary>
    private async Task DeleteAsync(string path, CancellationToken ct)
    {
        using var response = await SendRawAsync(new HttpRequestMessage(HttpMethod.Delete, path), ct);
    }

    private async Task<T> SendAsync<T>(HttpMethod method, string path, HttpContent? content, JsonTypeInfo<T> type, CancellationToken ct)
    {
        using var response = await SendRawAsync(new HttpRequestMessage(method, path) { Content = content }, ct);
        return await response.Content.ReadFromJsonAsync(type, ct)
            ?? throw new ApiException(response.StatusCode, $"the agent sent an empty answer to {method} /{path}");
    }

    private async Task<HttpResponseMessage> SendRawAsync(HttpRequestMessage request, CancellationToken ct,
        HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead)
    {
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, completion, ct);
        }
        catch (HttpRequestException e) when (e.InnerException is AgentUnavailableException unavailable)
        {
            throw unavailable;
        }
        catch (HttpRequestException e) when (e.HttpRequestError is HttpRequestError.ResponseEnded or HttpRequestError.ConnectionError)
        {
            throw new AgentUnavailableException(SocketPath, "the agent closed the connection (did it die?)");
        }
        finally
        {
            request.Dispose();
        }
        if (response.IsSuccessStatusCode) return response;
        using (response)
        {
            ErrorResponse? error = null;
            try
            {
                error = await response.Content.ReadFromJsonAsync(ApiJson.Default.ErrorResponse, ct);
            }
            catch (System.Text.Json.JsonException)
            {
            }
            throw new ApiException(response.StatusCode, error?.Error ?? $"the agent answered {(int)response.StatusCode} {response.ReasonPhrase}",
                error?.Code, error?.Fields);
        }
    }

    public void Dispose()
    {
        _http.Dispose();
        _handler.Dispose();
    }
}
