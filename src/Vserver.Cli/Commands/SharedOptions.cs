using System.CommandLine;

namespace Vserver.Cli.Commands;

/// <summary>Arguments and options several verbs share.</summary>
internal static class SharedOptions
{
    public static Argument<string> GuestName(string description = "The guest's name") =>
        new("NAME") { Description = description, CompletionSources = { CompletionCommand.GuestNames } };

    public static Option<string?> Format(string textName) => new("--format", "-f")
    {
        Description = $"Output format: {textName} or json [default: {textName}]",
        HelpName = $"{textName}|json",
        CompletionSources = { textName, "json" },
    };

    public static Option<string?> Memory(string domainNote) => new("--memory", "-m")
    {
        Description = $"Memory limit, e.g. 256M or 1.5G (K, M, G, T are powers of 1024); {domainNote}",
        HelpName = "SIZE",
    };

    public static Option<string?> MemoryMin() => new("--memory-min")
    {
        Description = "Memory guarantee, e.g. 64M: what the guest keeps when the host runs short (vserver: cgroup soft limit, "
            + "memory.low; domain: the balloon's floor), like Linux-VServer's rss.min or OpenVZ's guarantee. "
            + "The guarantees of all guests may add up to the host's pool capacity",
        HelpName = "SIZE",
    };

    public static Option<string?> Cpus() => new("--cpus")
    {
        Description = "CPU limit in CPUs, e.g. 0.5",
        HelpName = "N",
    };

    public static Option<string?> Pids() => new("--pids")
    {
        Description = "Limit on the number of processes",
        HelpName = "N",
    };
}
