using HybridHypervisor;
using Vserver.Agent;
using Vserver.Api;

// vserverd: the host agent. It owns the fleet and serves REST/JSON on a unix socket; all virtualization logic
// lives in HybridHypervisor.
FleetOptions options;
try
{
    options = FleetOptions.FromEnvironment(AppContext.BaseDirectory);
}
catch (FormatException e)
{
    Console.Error.WriteLine($"vserverd: {e.Message}");
    return 2;
}

Directory.CreateDirectory(options.RunRoot);
var socketPath = Path.Combine(options.RunRoot, "agent.sock");
FileStream agentLock;
try
{
    // One agent per run root: .NET takes an exclusive flock for FileShare.None.
    agentLock = new FileStream(Path.Combine(options.RunRoot, "agent.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
}
catch (IOException)
{
    Console.Error.WriteLine($"vserverd: another vserverd is already running for {options.RunRoot} (socket {socketPath}); stop it first or set VSERVER_RUN");
    return 1;
}
agentLock.SetLength(0);
agentLock.Write(System.Text.Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n"));
agentLock.Flush();
File.Delete(socketPath);

using var fleet = new Fleet(options, message => Console.Error.WriteLine($"vserverd: {message}"));
try
{
    fleet.Initialize();
}
catch (Exception e) when (e is FileNotFoundException or InvalidOperationException or IOException or HybridHypervisor.FleetException
                               or Vserver.Isolation.Cgroups.CgroupException or Vserver.Isolation.Processes.HostCommandException)
{
    Console.Error.WriteLine($"vserverd: cannot start: {e.Message}");
    return 1;
}

var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.WebHost.ConfigureKestrel(k => k.ListenUnixSocket(socketPath));
builder.Services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ApiJson.Default));
builder.Services.AddSingleton(fleet);

var app = builder.Build();
app.UseWebSockets();
app.Use(ApiErrors.Middleware);
Endpoints.Map(app, fleet);

await app.StartAsync();
// Only root may drive the agent: it can start anything on this host.
File.SetUnixFileMode(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
Console.Error.WriteLine($"vserverd: listening on {socketPath} (pid {Environment.ProcessId}, cgroup {fleet.Cgroups.Version}, bridge {options.BridgeName} {options.Subnet})");
await app.WaitForShutdownAsync();
File.Delete(socketPath);
return 0;
