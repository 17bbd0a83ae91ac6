using System.Globalization;
using System.Text;
using Vserver.Api;

namespace Vserver.Cli.Hosting;

/// <summary>
/// The host's guests written back as a hosting file: guests with the same settings share a plan (named after their
/// kind and memory), every server keeps its address, ports, restart policy and whether it runs, so applying the
/// output to this host changes nothing and applying it to an empty one makes the same guests.
/// </summary>
public static partial class HostingExport
{
    public static string Write(IReadOnlyList<CurrentServer> guests)
    {
        var plans = new Dictionary<HostingPlan, string>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var servers = new List<(CurrentServer Guest, string Plan)>();
        foreach (var g in guests.Where(g => g.State != "broken").OrderBy(g => g.Name, StringComparer.Ordinal))
        {
            var plan = PlanOf(g);
            if (!plans.TryGetValue(plan, out var name))
            {
                var stem = $"{g.Kind}-{(g.MemoryBytes is { } m ? ByteSize.Format(m).ToLowerInvariant() : "unlimited")}";
                name = stem;
                for (var i = 2; !names.Add(name); i++) name = $"{stem}-{i}";
                plans[plan] = name;
            }
            servers.Add((g, name));
        }

        var yaml = new StringBuilder();
        yaml.Append("# Written by vsctl export: this host's guests as a hosting file. vsctl apply FILE makes a host like it.\n");
        yaml.Append("plans:\n");
        foreach (var (plan, name) in plans.OrderBy(p => p.Value, StringComparer.Ordinal))
        {
            yaml.Append(CultureInfo.InvariantCulture, $"  {Scalar(name)}:\n");
            yaml.Append(CultureInfo.InvariantCulture, $"    kind: {Scalar(plan.Kind)}\n");
            yaml.Append(CultureInfo.InvariantCulture, $"    image: {Scalar(plan.Image)}\n");
            Line(yaml, "memory", plan.MemoryBytes is { } m ? ByteSize.Format(m) : null);
            Line(yaml, "memory-min", plan.MemoryMinBytes is { } n ? ByteSize.Format(n) : null);
            Line(yaml, "cpus", plan.Cpus?.ToString("0.###", CultureInfo.InvariantCulture));
            Line(yaml, "pids", plan.Pids?.ToString(CultureInfo.InvariantCulture));
            Line(yaml, "disk", plan.DiskBytes is { } d ? ByteSize.Format(d) : null);
            Line(yaml, "kernel", plan.Kernel);
            Line(yaml, "vcpus", plan.Vcpus?.ToString(CultureInfo.InvariantCulture));
        }
        yaml.Append("servers:\n");
        foreach (var (g, plan) in servers)
        {
            yaml.Append(CultureInfo.InvariantCulture, $"  - name: {Scalar(g.Name)}\n");
            yaml.Append(CultureInfo.InvariantCulture, $"    plan: {Scalar(plan)}\n");
            Line(yaml, "ip", g.Ipv4);
            if (g.Ports.Count > 0)
                yaml.Append(CultureInfo.InvariantCulture, $"    ports: [{string.Join(", ", g.Ports.Select(p => $"\"{p}\""))}]\n");
            // Quoted: YAML 1.1 readers take a bare no for false.
            yaml.Append(CultureInfo.InvariantCulture, $"    restart: {Scalar(g.Restart, quoted: true)}\n");
            yaml.Append(CultureInfo.InvariantCulture, $"    running: {(g.State is "running" or "paused" ? "true" : "false")}\n");
            if (g.Autostart) yaml.Append("    autostart: true\n");
        }
        return yaml.ToString();
    }

    private static HostingPlan PlanOf(CurrentServer g) => new()
    {
        Name = "",
        Kind = g.Kind,
        Image = g.Image ?? "busybox",
        MemoryBytes = g.MemoryBytes,
        MemoryMinBytes = g.MemoryMinBytes,
        Cpus = g.Kind == "domain" ? null : g.Cpus,
        Pids = g.Kind == "domain" ? null : g.Pids,
        DiskBytes = g.DiskBytes,
        Kernel = g.Kind == "domain" ? g.Kernel : null,
        Vcpus = g.Kind == "domain" ? g.Vcpus : null,
    };

    private static void Line(StringBuilder yaml, string key, string? value)
    {
        if (value is not null) yaml.Append(CultureInfo.InvariantCulture, $"    {key}: {Scalar(value)}\n");
    }

    /// <summary>A value as a YAML scalar: as it is when plain, else double-quoted with JSON's escapes (which YAML's
    /// double-quoted style reads the same), so that no name from the agent can break a line or add a key.</summary>
    private static string Scalar(string value, bool quoted = false) =>
        !quoted && PlainScalar().IsMatch(value) ? value : $"\"{System.Text.Json.JsonEncodedText.Encode(value)}\"";

    [System.Text.RegularExpressions.GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._/-]*\z")]
    private static partial System.Text.RegularExpressions.Regex PlainScalar();
}
