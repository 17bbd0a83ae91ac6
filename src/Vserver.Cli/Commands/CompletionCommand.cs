using System.CommandLine;
using System.CommandLine.Completions;
using Vserver.Api;

namespace Vserver.Cli.Commands;

/// <summary>
/// Shell completion, as operators know it from incus and kubectl: <c>vsctl completion bash</c> prints a script that
/// asks vsctl itself (the hidden <c>__complete</c> verb) what may come at the cursor: verbs, options, their fixed
/// values and guest names, those from the agent (one request; nothing when no agent answers).
/// </summary>
internal static class CompletionCommand
{
    /// <summary>The bash script: COMP_LINE up to the cursor goes to <c>vsctl __complete</c>, one candidate per line back.</summary>
    public const string BashScript = """
        # vsctl completion for bash: source it, or put it in /etc/bash_completion.d/vsctl
        _vsctl_complete() {
            local line="${COMP_LINE:0:COMP_POINT}" IFS=$'\n'
            COMPREPLY=($(command "${COMP_WORDS[0]}" __complete "$line" 2>/dev/null))
        }
        complete -o default -F _vsctl_complete vsctl
        """;

    public static Command Create(CliContext cli)
    {
        var shell = new Argument<string>("SHELL") { Description = "The shell to complete for: bash" };
        shell.AcceptOnlyFromAmong("bash");
        var command = new Command("completion", "Print the shell completion script (bash): source <(vsctl completion bash)") { shell };
        command.SetAction(_ =>
        {
            cli.Out.WriteLine(BashScript);
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>The hidden verb the script calls: the candidates for the last word of <c>LINE</c> ("vsctl sta").</summary>
    public static Command CreateComplete(Func<RootCommand> root, CliContext cli)
    {
        var line = new Argument<string>("LINE") { Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("__complete", "Candidates for the word at the end of LINE (for the shell's completion script)") { line };
        command.Hidden = true;
        command.SetAction(parse =>
        {
            foreach (var candidate in Candidates(root(), parse.GetValue(line) ?? "")) cli.Out.WriteLine(candidate);
            return ExitCodes.Ok;
        });
        return command;
    }

    /// <summary>What may complete the word at the end of <paramref name="line"/> (the program's name first, as the shell
    /// has it), in order, each once.</summary>
    public static IReadOnlyList<string> Candidates(RootCommand root, string line)
    {
        // The program's own name is not part of what the parser takes.
        var start = line.TrimStart();
        var space = start.IndexOf(' ', StringComparison.Ordinal);
        var rest = space < 0 ? "" : start[(space + 1)..];
        var parse = root.Parse(rest);
        var word = rest[(rest.LastIndexOf(' ') + 1)..];
        // The parser offers what contains the word; a shell completes what starts with it. Its DOS-style help aliases
        // (/?, /h, -?) and the hidden verbs are no one's to type.
        return parse.GetCompletions(rest.Length).Select(c => c.Label)
            .Where(l => l.StartsWith(word, StringComparison.Ordinal) && !l.StartsWith("__", StringComparison.Ordinal)
                        && !l.StartsWith('/') && l != "-?")
            .Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>Guest names from the agent on the socket the command line names (or the default), for a NAME argument;
    /// none when nobody answers: completion never starts an agent.</summary>
    public static IEnumerable<CompletionItem> GuestNames(CompletionContext context)
    {
        string? socket = null;
        try
        {
            socket = context.ParseResult.GetValue<string?>("--socket");
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
        }
        try
        {
            using var client = new AgentClient(socket is { Length: > 0 } s ? s : AgentClient.DefaultSocketPath);
            var list = client.ListAsync().GetAwaiter().GetResult();
            return list.Guests.Select(g => g.Name).Where(n => n.StartsWith(context.WordToComplete, StringComparison.Ordinal))
                .Order(StringComparer.Ordinal).Select(n => new CompletionItem(n)).ToList();
        }
        catch (Exception e) when (e is AgentUnavailableException or ApiException or HttpRequestException or System.Text.Json.JsonException or IOException)
        {
            return [];
        }
    }
}
