using System.CommandLine;
using Vserver.Api;
using Vserver.Cli.Hosting;

namespace Vserver.Cli.Commands;

/// <summary>
/// `vsctl apply FILE`: converges the host to a hosting file. The file is read and checked whole before anything
/// changes: its shape here (YAML, keys, plans, what parses, no address or host port twice), the values of every server
/// to create by the agent's own create check (a dry run, so apply has no rules of its own to drift from the agent's).
/// An image or kernel the host lacks refuses the file; another refused value fails its server alone. Then each
/// server's steps run, servers in parallel. A server that fails is reported and, if apply created it, removed again;
/// the others go on.
/// </summary>
internal static class ApplyCommand
{
    public const int DefaultParallel = 4;

    public static Command Create(CliContext cli)
    {
        var file = new Argument<string>("FILE") { Description = "The hosting file (YAML: plans and servers; see the README)" };
        var dryRun = new Option<bool>("--dry-run") { Description = "Print what would change and change nothing" };
        var prune = new Option<bool>("--prune") { Description = "Also destroy guests the file does not list" };
        // Read as text and checked by vsctl: System.CommandLine's own refusal of "--parallel x" names a .NET type.
        var parallel = new Option<string?>("--parallel")
        {
            Description = $"Servers worked on at once [default: {DefaultParallel}]",
            HelpName = "N",
        };
        var command = new Command("apply", "Make the host what a hosting file says: create, change, start (and with --prune remove) guests")
        {
            file, dryRun, prune, parallel,
        };
        command.SetAction((parse, ct) => cli.RunAsync(parse, client => HandleAsync(client, parse.GetValue(file)!,
            new ApplyOptions(parse.GetValue(dryRun), parse.GetValue(prune), Input.PositiveInt("--parallel", parse.GetValue(parallel), "number of servers") ?? DefaultParallel), cli, ct)));
        return command;
    }

    public sealed record ApplyOptions(bool DryRun, bool Prune, int Parallel);

    public static async Task<int> HandleAsync(AgentClient client, string path, ApplyOptions options, CliContext cli, CancellationToken ct)
    {
        if (options.Parallel is < 1 or > 64) throw new UsageException($"invalid --parallel {options.Parallel}: give 1 to 64");
        HostingFile file;
        try
        {
            file = HostingFile.Load(path);
        }
        catch (HostingFileException e)
        {
            throw new UsageException($"{e.Message}; nothing was changed");
        }
        var list = await client.ListAsync(ct);
        var plans = ApplyPlanner.Plan(file, list.Guests.Select(CurrentServer.From).ToList(), options.Prune);
        var refusals = await CheckCreatesAsync(client, file, path, plans, ct);
        if (options.DryRun)
        {
            foreach (var plan in plans)
            {
                var line = refusals.TryGetValue(plan.Name, out var refused) ? $"cannot: {refused}"
                    : plan.Action == ServerAction.Refused ? $"cannot: {plan.Summary}" : $"would {plan.Summary}";
                cli.Out.WriteLine($"{plan.Name}: {line}");
            }
            cli.Out.WriteLine($"dry run, nothing changed: {Totals(plans.Select(p => (p.Action, Failed: false)).ToList())}");
            return plans.Any(p => p.Action == ServerAction.Refused) || refusals.Count > 0 ? ExitCodes.Failed : ExitCodes.Ok;
        }

        var progress = new ApplyProgress(cli, plans.Count(p => p.Action != ServerAction.Unchanged));
        var outcomes = new List<(ServerAction Action, bool Failed)>();
        var gate = new Lock();
        await Parallel.ForEachAsync(plans, new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = ct },
            async (plan, token) =>
            {
                var (line, failed) = refusals.TryGetValue(plan.Name, out var refused)
                    ? ($"{plan.Name}: FAILED at '{plan.Steps[0].Text}': {refused}", true)
                    : await RunAsync(client, plan, token);
                lock (gate) outcomes.Add((plan.Action, failed));
                if (plan.Action == ServerAction.Unchanged) progress.Quiet(line);
                else progress.Done(line);
            });
        progress.Finish();
        cli.Out.WriteLine($"applied {path}: {Totals(outcomes)}");
        return outcomes.Any(o => o.Failed) ? ExitCodes.Failed : ExitCodes.Ok;
    }

    /// <summary>
    /// Asks the agent whether it would make the whole plan (POST /v1/plans/check): each server to create and each host
    /// port to publish, checked as the apply will make them, each seeing those before it in the file (a subnet that runs
    /// out, two servers on one address or port, a port a host program holds). Answers vsctl's line for each server it
    /// would refuse. An image or kernel a plan names that the host has not built refuses the whole file (every server of
    /// the plan would fail for it): <see cref="UsageException"/>, nothing changed.
    /// </summary>
    private static async Task<Dictionary<string, string>> CheckCreatesAsync(AgentClient client, HostingFile file, string path,
        IReadOnlyList<ServerPlan> plans, CancellationToken ct)
    {
        var planned = plans
            .Where(p => p.Steps.Any(s => s is ApplyStep.Create or ApplyStep.AddPort))
            .Select(p => new PlannedGuestRequest
            {
                Name = p.Name,
                Create = p.Steps.OfType<ApplyStep.Create>().FirstOrDefault()?.Request,
                Ports = p.Steps.OfType<ApplyStep.AddPort>().Select(a => a.Port).ToList(),
            })
            .ToList();
        var refusals = new Dictionary<string, string>(StringComparer.Ordinal);
        if (planned.Count == 0) return refusals;
        var report = await client.CheckPlanAsync(new PlanCheckRequest { Guests = planned }, ct);
        foreach (var result in report.Guests)
        {
            if (result.Refusal is not { } body) continue;
            var refused = new ApiException(System.Net.HttpStatusCode.BadRequest, body.Error, body.Code, body.Fields);
            if (refused.Code == ErrorCodes.InvalidValue && refused.Field("reason") == ErrorCodes.Reasons.NotBuilt)
            {
                var what = refused.Field("field") == GuestSpec.Fields.Kernel ? "kernel" : "image";
                var planName = file.Servers.First(s => s.Name == result.Name).Plan;
                var name = refused.Field("value");
                throw new UsageException($"{path}: plan '{planName}': {what} '{name}' is not built on this host; " +
                    $"build it with: vsctl {what} build {name}; nothing was changed");
            }
            refusals[result.Name] = CliContext.OneLine(AgentErrorText.Line(refused));
        }
        return refusals;
    }

    /// <summary>Runs one server's steps; a guest this run created is destroyed again if a later step fails.</summary>
    private static async Task<(string Line, bool Failed)> RunAsync(AgentClient client, ServerPlan plan, CancellationToken ct)
    {
        if (plan.Action == ServerAction.Refused) return ($"{plan.Name}: FAILED: {plan.Refusal}", true);
        if (plan.Action == ServerAction.Unchanged) return ($"{plan.Name}: unchanged", false);
        var created = false;
        var done = new List<string>();
        var notes = new List<string>();
        foreach (var step in plan.Steps)
        {
            try
            {
                if (await RunStepAsync(client, plan.Name, step, ct) is { } note) notes.Add(note);
                created |= step is ApplyStep.Create;
                done.Add(step.Text);
            }
            catch (Exception e) when (e is ApiException or HttpRequestException or IOException)
            {
                var undo = "";
                if (created)
                {
                    try
                    {
                        await client.DestroyAsync(plan.Name, force: true, CancellationToken.None);
                        undo = "; the new guest was removed again";
                    }
                    catch (Exception again) when (again is ApiException or HttpRequestException or IOException)
                    {
                        undo = $"; removing the new guest failed too ({CliContext.OneLine(again.Message)}): vsctl destroy --force {plan.Name}";
                    }
                }
                var before = done.Count > 0 && !created ? $" (done before it: {string.Join(", ", done)})" : "";
                var why = e is ApiException refused ? AgentErrorText.Line(refused) : e.Message;
                return ($"{plan.Name}: FAILED at '{step.Text}': {CliContext.OneLine(why)}{before}{undo}", true);
            }
        }
        return ($"{plan.Name}: {plan.Summary}{string.Concat(notes.Select(n => $"; {n}"))}", false);
    }

    /// <summary>Runs one step; returns what the operator should know beyond the step's own text, if anything.</summary>
    private static async Task<string?> RunStepAsync(AgentClient client, string name, ApplyStep step, CancellationToken ct)
    {
        switch (step)
        {
            case ApplyStep.Create create:
                await client.CreateAsync(create.Request, ct);
                break;
            case ApplyStep.SetLimits set:
                var guest = await client.SetLimitsAsync(name, set.Request, ct);
                // A running vserver's layer image grows online only where the agent may resize a mounted ext4.
                if (set.Request.DiskBytes is not null && StatusCommand.PendingGrow(guest) is { Length: > 0 } pending)
                    return $"the disk does not grow live here: {pending.Trim().TrimStart('(').TrimEnd(')')}";
                break;
            case ApplyStep.AddPort add:
                await client.AddPortAsync(name, add.Port, ct);
                break;
            case ApplyStep.RemovePort remove:
                await client.RemovePortAsync(name, remove.Port.HostPort, remove.Port.Protocol, ct);
                break;
            case ApplyStep.Start:
                await client.StartAsync(name, ct: ct);
                break;
            case ApplyStep.Stop:
                await client.StopAsync(name, ct: ct);
                break;
            case ApplyStep.Destroy:
                await client.DestroyAsync(name, force: true, ct);
                break;
            default:
                throw new InvalidOperationException($"unknown apply step {step.GetType().Name}");
        }
        return null;
    }

    private static string Totals(IReadOnlyList<(ServerAction Action, bool Failed)> outcomes)
    {
        int Count(ServerAction a) => outcomes.Count(o => o.Action == a && !o.Failed);
        var failed = outcomes.Count(o => o.Failed);
        return $"{Count(ServerAction.Create)} created, {Count(ServerAction.Change)} changed, {Count(ServerAction.Unchanged)} unchanged, " +
               $"{Count(ServerAction.Prune)} removed, {failed} failed";
    }

    /// <summary>Per-server lines; on a terminal also a progress bar on stderr, redrawn below them.</summary>
    private sealed class ApplyProgress(CliContext cli, int total)
    {
        private readonly Lock _gate = new();
        private readonly bool _bar = total > 0 && cli.Terminal.IsTerminal(2);
        private int _done;

        public void Done(string line)
        {
            lock (_gate)
            {
                _done++;
                Clear();
                cli.Out.WriteLine(line);
                cli.Out.Flush();
                Draw(line);
            }
        }

        /// <summary>An unchanged server: a line, but not a step of the bar.</summary>
        public void Quiet(string line)
        {
            lock (_gate)
            {
                Clear();
                cli.Out.WriteLine(line);
                cli.Out.Flush();
                if (_done > 0) Draw(line);
            }
        }

        public void Finish()
        {
            lock (_gate) Clear();
        }

        private void Clear()
        {
            if (_bar) cli.Err.Write("\r\u001b[K");
        }

        private void Draw(string last)
        {
            if (!_bar) return;
            var width = Math.Clamp((cli.Terminal.Size()?.Cols ?? 80) - 40, 10, 40);
            var filled = total == 0 ? width : _done * width / total;
            var name = last.Split(':')[0];
            cli.Err.Write($"[{new string('#', filled)}{new string('.', width - filled)}] {_done}/{total} {name}");
            cli.Err.Flush();
        }
    }
}
