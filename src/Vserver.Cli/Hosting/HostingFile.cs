using System.Globalization;
using Vserver.Api;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace Vserver.Cli.Hosting;

/// <summary>What a plan gives each of its servers.</summary>
public sealed record HostingPlan
{
    public required string Name { get; init; }
    /// <summary>vserver | domain</summary>
    public string Kind { get; init; } = "vserver";
    public string Image { get; init; } = "busybox";
    /// <summary>The limit (a vserver's cgroup limit, a domain's RAM).</summary>
    public long? MemoryBytes { get; init; }
    /// <summary>The guarantee admission counts.</summary>
    public long? MemoryMinBytes { get; init; }
    /// <summary>A vserver's CPU limit; a domain's vcpus unless <see cref="Vcpus"/> is given (rounded up).</summary>
    public double? Cpus { get; init; }
    public int? Pids { get; init; }
    /// <summary>A vserver's disk quota, a domain's root disk.</summary>
    public long? DiskBytes { get; init; }
    public string? Kernel { get; init; }
    public int? Vcpus { get; init; }

    /// <summary>The vcpus a server of this plan asks for: a domain's cpus rounded up unless vcpus is given (the agent
    /// refuses vcpus for a vserver).</summary>
    public int? DomainVcpus => Kind != "domain" ? Vcpus : Vcpus ?? (Cpus is { } c ? (int)Math.Ceiling(c) : null);
}

/// <summary>One customer's server: which plan, and what is its own.</summary>
public sealed record HostingServer
{
    public required string Name { get; init; }
    public required string Plan { get; init; }
    /// <summary>A fixed address; null: the next free one at creation, kept afterwards.</summary>
    public string? Ipv4 { get; init; }
    public IReadOnlyList<PortInfo> Ports { get; init; } = [];
    /// <summary>no | on-failure | always</summary>
    public string Restart { get; init; } = "no";
    /// <summary>Whether apply leaves it running (default) or stopped.</summary>
    public bool Running { get; init; } = true;
    /// <summary>Whether the agent starts it after the host boots (default false).</summary>
    public bool Autostart { get; init; }
    /// <summary>Where it is declared (line:column), for messages.</summary>
    public string At { get; init; } = "";
}

/// <summary>
/// A hosting file: plans, and the servers that use them. What is checked here is the file's shape (YAML, known keys,
/// values that parse, plans that exist, no server, address or host port twice); every such error names the file, line
/// and column. Whether the values are allowed (names, limits, addresses, images) is the agent's call: apply asks it
/// with a dry run of each create before anything on the host changes.
/// </summary>
/// <example>
/// plans:
///   small: { memory: 128M, memory-min: 32M, cpus: 0.5, pids: 200, disk: 1G }
///   vm:    { kind: domain, memory: 256M, cpus: 1, disk: 2G }
/// servers:
///   - { name: web1, plan: small, ports: ["8080:80"], restart: on-failure }
///   - { name: db1, plan: vm, ip: 10.0.0.20 }
/// </example>
public sealed class HostingFile
{
    public required IReadOnlyDictionary<string, HostingPlan> Plans { get; init; }
    public required IReadOnlyList<HostingServer> Servers { get; init; }

    private static readonly string[] PlanKeys = ["kind", "image", "memory", "memory-min", "cpus", "pids", "disk", "kernel", "vcpus"];
    private static readonly string[] ServerKeys = ["name", "plan", "ip", "ports", "restart", "running", "autostart"];

    /// <summary>A hosting file of a thousand servers is some 100 KiB; what is larger is not one.</summary>
    public const int MaxBytes = 1024 * 1024;

    /// <summary>Reads a regular file of at most <see cref="MaxBytes"/> (a directory, FIFO or device is refused at once).</summary>
    public static HostingFile Load(string path)
    {
        string text;
        try
        {
            text = InputFile.ReadText(path, MaxBytes);
        }
        catch (IOException e)
        {
            throw new HostingFileException(e.Message);
        }
        return Parse(text, path);
    }

    public static HostingFile Parse(string text, string file)
    {
        var stream = new YamlStream();
        try
        {
            // Before the load: YamlDotNet's own refusal of a duplicate key names only the second one, twice.
            if (DuplicateKey(text) is var (key, first, again))
                throw new HostingFileException($"{file}:{again.Line}:{again.Column}: '{Escaped.Text(key)}' is given twice in one mapping " +
                    $"(first at {first.Line}:{first.Column}); keep one");
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new HostingFileException($"{file}:{e.Start.Line}:{e.Start.Column}: {YamlMessage(e)}");
        }
        catch (InvalidOperationException)
        {
            // YamlDotNet's scanner gives up without a position on some unfinished flow collections: say where it got to.
            throw new HostingFileException($"{file}:{LastGoodMark(text)}: not valid YAML from here on (an unclosed '{{' or '['?)");
        }
        if (stream.Documents.Count != 1 || stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new HostingFileException($"{file}: expected one YAML document with 'plans:' and 'servers:'");
        var reader = new Reader(file);
        reader.OnlyKeys(root, ["plans", "servers"], "the hosting file");

        var plans = new Dictionary<string, HostingPlan>(StringComparer.Ordinal);
        if (reader.Child(root, "plans") is { } plansNode)
        {
            if (plansNode is not YamlMappingNode planMap) throw reader.Error(plansNode, "'plans' must map plan names to their settings");
            foreach (var (keyNode, valueNode) in planMap.Children)
            {
                var name = reader.Scalar(keyNode, "plan name");
                plans[name] = reader.Plan(name, valueNode);
            }
        }
        var servers = new List<HostingServer>();
        var names = new Dictionary<string, string>(StringComparer.Ordinal);
        var ports = new Dictionary<(int, string), string>();
        var addresses = new Dictionary<string, string>(StringComparer.Ordinal);
        if (reader.Child(root, "servers") is { } serversNode)
        {
            if (serversNode is not YamlSequenceNode list) throw reader.Error(serversNode, "'servers' must be a list of servers (- name: ...)");
            foreach (var node in list.Children)
            {
                var server = reader.Server(node, plans);
                if (names.TryGetValue(server.Name, out var first))
                    throw reader.Error(node, $"duplicate server name '{server.Name}' (first at {first})");
                names[server.Name] = server.At;
                if (server.Ipv4 is { } ip)
                {
                    if (addresses.TryGetValue(ip, out var other)) throw reader.Error(node, $"address {ip} of '{server.Name}' is also '{other}''s");
                    addresses[ip] = server.Name;
                }
                foreach (var port in server.Ports)
                {
                    if (ports.TryGetValue((port.HostPort, port.Protocol), out var owner))
                        throw reader.Error(node, $"host port {port.HostPort}/{port.Protocol} of '{server.Name}' is also published by '{owner}'");
                    ports[(port.HostPort, port.Protocol)] = server.Name;
                }
                servers.Add(server);
            }
        }
        return new HostingFile { Plans = plans, Servers = servers };
    }

    /// <summary>The first key given twice in one mapping, with where it was first and where again; null if none.</summary>
    private static (string Key, Mark First, Mark Again)? DuplicateKey(string text)
    {
        var parser = new Parser(new StringReader(text));
        // One frame per open collection: a mapping's keys so far (null for a sequence), and whether a key comes next.
        var frames = new Stack<(Dictionary<string, Mark>? Keys, bool KeyNext)>();
        while (parser.MoveNext())
        {
            var current = parser.Current!;
            if (current is MappingEnd or SequenceEnd)
            {
                frames.Pop();
                continue;
            }
            if (current is not (Scalar or MappingStart or SequenceStart or AnchorAlias)) continue;
            if (frames.TryPop(out var parent))
            {
                if (parent.Keys is not null && parent.KeyNext && current is Scalar key)
                {
                    if (parent.Keys.TryGetValue(key.Value, out var first)) return (key.Value, first, key.Start);
                    parent.Keys[key.Value] = key.Start;
                }
                frames.Push(parent with { KeyNext = parent.Keys is not null && !parent.KeyNext });
            }
            if (current is MappingStart) frames.Push((new Dictionary<string, Mark>(StringComparer.Ordinal), true));
            else if (current is SequenceStart) frames.Push((null, false));
        }
        return null;
    }

    private static string LastGoodMark(string text)
    {
        var scanner = new Scanner(new StringReader(text));
        var mark = "1:1";
        try
        {
            while (scanner.MoveNext()) mark = $"{scanner.Current!.Start.Line}:{scanner.Current.Start.Column}";
        }
        catch (Exception e) when (e is InvalidOperationException or YamlException)
        {
        }
        return mark;
    }

    private static string YamlMessage(YamlException e)
    {
        // YamlDotNet prefixes its own "(Line: 3, Col: 5, Idx: ...) - (...): " position; ours is in front already.
        var message = e.InnerException?.Message ?? e.Message;
        var cut = message.LastIndexOf("): ", StringComparison.Ordinal);
        return cut >= 0 ? message[(cut + 3)..] : message;
    }

    /// <summary>Walks the YAML nodes, each error with its position.</summary>
    private sealed class Reader(string file)
    {
        public HostingFileException Error(YamlNode node, string message) =>
            new($"{file}:{node.Start.Line}:{node.Start.Column}: {message}");

        public string At(YamlNode node) => $"line {node.Start.Line}";

        public YamlNode? Child(YamlMappingNode map, string key) =>
            map.Children.FirstOrDefault(c => c.Key is YamlScalarNode s && s.Value == key).Value;

        public void OnlyKeys(YamlMappingNode map, string[] known, string what)
        {
            foreach (var key in map.Children.Keys)
            {
                var name = Scalar(key, "key");
                if (!known.Contains(name, StringComparer.Ordinal))
                    throw Error(key, $"unknown key '{name}' in {what} (known: {string.Join(", ", known)})");
            }
        }

        public string Scalar(YamlNode node, string what)
        {
            if (node is not YamlScalarNode { Value: { } v })
                throw Error(node, $"{what} must be a single value, not a {(node is YamlSequenceNode ? "list" : "mapping")}");
            // No setting has a use for one, and every message and line of apply's output echoes these values.
            if (Escaped.NeedsEscape(v)) throw Error(node, $"{what} {Escaped.Name(v)} has a control character; remove it");
            return v;
        }

        private string? Optional(YamlMappingNode map, string key) => Child(map, key) is { } node ? Scalar(node, $"'{key}'") : null;

        private long? Size(YamlMappingNode map, string key, string owner)
        {
            if (Optional(map, key) is not { } text) return null;
            if (!ByteSize.TryParse(text, out var bytes, out var error)) throw Error(Child(map, key)!, $"{owner}: {key}: {error}");
            return bytes;
        }

        public HostingPlan Plan(string name, YamlNode node)
        {
            if (node is not YamlMappingNode map) throw Error(node, $"plan '{name}' must be a mapping of settings ({string.Join(", ", PlanKeys)})");
            OnlyKeys(map, PlanKeys, $"plan '{name}'");
            var owner = $"plan '{name}'";
            var kind = Optional(map, "kind") ?? "vserver";
            if (kind is not ("vserver" or "domain")) throw Error(Child(map, "kind")!, $"{owner}: kind must be vserver or domain, not '{kind}'");
            var image = Optional(map, "image") ?? "busybox";
            double? cpus = null;
            if (Optional(map, "cpus") is { } cpuText)
            {
                if (!double.TryParse(cpuText, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var c))
                    throw Error(Child(map, "cpus")!, $"{owner}: cpus must be a number, e.g. 0.5 or 2");
                cpus = c;
            }
            var plan = new HostingPlan
            {
                Name = name,
                Kind = kind,
                Image = image,
                MemoryBytes = Size(map, "memory", owner),
                MemoryMinBytes = Size(map, "memory-min", owner),
                Cpus = cpus,
                Pids = Count(map, "pids", owner),
                DiskBytes = Size(map, "disk", owner),
                Kernel = Optional(map, "kernel"),
                Vcpus = Count(map, "vcpus", owner),
            };
            return plan;
        }

        private int? Count(YamlMappingNode map, string key, string owner)
        {
            if (Optional(map, key) is not { } text) return null;
            if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var n))
                throw Error(Child(map, key)!, $"{owner}: {key} must be a whole number, not '{text}'");
            return n;
        }

        public HostingServer Server(YamlNode node, IReadOnlyDictionary<string, HostingPlan> plans)
        {
            if (node is not YamlMappingNode map) throw Error(node, "a server must be a mapping (name: ..., plan: ...)");
            OnlyKeys(map, ServerKeys, "a server");
            var name = Optional(map, "name") ?? throw Error(node, "a server needs a name");
            var owner = $"server '{name}'";
            var plan = Optional(map, "plan") ?? throw Error(node, $"{owner} needs a plan");
            if (!plans.ContainsKey(plan))
                throw Error(Child(map, "plan")!, $"{owner}: unknown plan '{plan}' (plans: {(plans.Count == 0 ? "none" : string.Join(", ", plans.Keys))})");
            var ip = Optional(map, "ip");
            var ports = new List<PortInfo>();
            if (Child(map, "ports") is { } portsNode)
            {
                if (portsNode is not YamlSequenceNode portList) throw Error(portsNode, $"{owner}: ports must be a list, e.g. [\"8080:80\", \"5353:53/udp\"]");
                foreach (var p in portList.Children)
                {
                    if (!PortInfo.TryParseSpec(Scalar(p, "a port"), out var port, out var error)) throw Error(p, $"{owner}: {error}");
                    if (ports.Any(o => o.HostPort == port.HostPort && o.Protocol == port.Protocol))
                        throw Error(p, $"{owner}: host port {port.HostPort}/{port.Protocol} is listed twice");
                    ports.Add(port);
                }
            }
            var restart = Optional(map, "restart") ?? "no";
            if (restart is not ("no" or "on-failure" or "always")) throw Error(Child(map, "restart")!, $"{owner}: restart must be no, on-failure or always, not '{restart}'");
            var running = Flag(map, "running", owner, true);
            var autostart = Flag(map, "autostart", owner, false);
            return new HostingServer { Name = name, Plan = plan, Ipv4 = ip, Ports = ports, Restart = restart, Running = running, Autostart = autostart, At = At(node) };
        }

        bool Flag(YamlMappingNode map, string key, string owner, bool absent)
        {
            if (Optional(map, key) is not { } text) return absent;
            return bool.TryParse(text, out var value) ? value : throw Error(Child(map, key)!, $"{owner}: {key} must be true or false, not '{text}'");
        }
    }
}

public sealed class HostingFileException(string message) : Exception(message);
