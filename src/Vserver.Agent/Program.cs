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
try
{
    if (AgentSocket.SecureRunDirectory(options.RunRoot) is { } oldMode)
        Console.Error.WriteLine($"vserverd: {options.RunRoot} was writable by others (mode 0{Convert.ToString((int)oldMode, 8)}); took group and other write access away");
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"vserverd: cannot start: {e.Message}");
    return 1;
}
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
string bindPath;
try
{
    bindPath = AgentSocket.PrepareBindPath(options.RunRoot);
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"vserverd: cannot start: {e.Message}");
    return 1;
}
SocketAccess access;
try
{
    access = AgentSocket.Decide(Vserver.Isolation.Interop.UserDatabase.LookupGroup(AgentSocket.GroupName));
}
catch (IOException e)
{
    Console.Error.WriteLine($"vserverd: {e.Message}; the socket stays root-only");
    access = AgentSocket.Decide(null);
}

// What the fleet logs may quote a request (a file, a command): escaped, one line per message.
using var fleet = new Fleet(options, message => Console.Error.WriteLine($"vserverd: {ApiErrors.LogLine(message)}"));
try
{
    fleet.Initialize();
}
// Whatever keeps the fleet from starting (a missing vsinit, a cgroup or host command that fails, a bad pool file) is
// told in one line; the agent knows no exception type below the fleet.
catch (Exception e) when (e is not OutOfMemoryException)
{
    Console.Error.WriteLine($"vserverd: cannot start: {e.Message}");
    return 1;
}

var app = AgentApp.Build(args, fleet, bindPath);
await app.StartAsync();
// Whoever can connect can start anything on this host: root only, or root and group vserver (see AgentSocket).
try
{
    AgentSocket.Publish(bindPath, socketPath, access);
}
catch (Exception e) when (e is IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"vserverd: cannot start: {e.Message}");
    await app.StopAsync();
    return 1;
}
Console.Error.WriteLine($"vserverd: listening on {socketPath} ({access.Description}; pid {Environment.ProcessId}, cgroup {fleet.CgroupVersion}, bridge {options.BridgeName} {options.Subnet})");
await app.WaitForShutdownAsync();
File.Delete(socketPath);
// The lock is held by the open FileStream, which nothing else refers to after start-up: without this, a garbage
// collection finalizes it, the flock goes, and a second agent could start on this run root and take over its socket.
GC.KeepAlive(agentLock);
return 0;
