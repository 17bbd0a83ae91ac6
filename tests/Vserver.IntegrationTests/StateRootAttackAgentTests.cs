using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>
/// A real agent whose state root was tampered with while it was down: a FIFO as a guest's config (which once kept the
/// agent from ever listening), a guest's writable layer linked to a host directory (which once had the overlay write
/// the guest's files there), a config linked to a secret. The agent must come up within seconds, list each guest broken
/// with one line, refuse to start them, write nothing outside its roots, and clean them away on request.
/// </summary>
public sealed class StateRootAttackAgentTests
{
    private const string Secret = "Zroot:$6$saltsalt$hashhashhash";

    private static string Digest(string dir) => string.Join("|",
        Directory.EnumerateFileSystemEntries(dir, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(p => p + ":" + (File.Exists(p) ? Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(p))) : "dir")));

    [Fact]
    public async Task A_tampered_state_root_leaves_the_agent_answering_and_the_guests_broken_refused_and_removable()
    {
        await using var host = await TestHost.StartAsync();
        var outside = Directory.CreateTempSubdirectory("vsattack-outside-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(outside, "hostdir"));
            File.WriteAllText(Path.Combine(outside, "hostdir", "keep"), "host file\n");
            var secret = Path.Combine(outside, "shadow");
            File.WriteAllText(secret, Secret + "\n");

            host.Vsctl("create", "fifo1").ShouldSucceed();
            host.Vsctl("create", "linked1").ShouldSucceed();
            await host.KillAgentAsync();

            var fifoConfig = Path.Combine(host.GuestDir("fifo1"), "guest.json");
            File.Delete(fifoConfig);
            TestHost.Run("mkfifo", fifoConfig).Code.ShouldBe(0);
            var upper = Path.Combine(host.GuestDir("linked1"), "upper");
            Directory.Delete(upper, recursive: true);
            File.CreateSymbolicLink(upper, Path.Combine(outside, "hostdir"));
            Directory.CreateDirectory(host.GuestDir("leak1"));
            File.CreateSymbolicLink(Path.Combine(host.GuestDir("leak1"), "guest.json"), secret);
            host.Seen("leak1");
            var before = Digest(outside);

            var clock = Stopwatch.StartNew();
            await host.StartAgentAsync();
            clock.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(10), "the agent must listen whatever its state root holds");

            var list = host.Vsctl("list").ShouldSucceed().Stdout.Split('\n');
            foreach (var name in new[] { "fifo1", "linked1", "leak1" })
                list.Single(l => l.StartsWith(name + " ", StringComparison.Ordinal)).ShouldContain("broken");
            string Problem(string name) =>
                JsonDocument.Parse(host.Vsctl("status", name, "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("problem").GetString()!;
            Problem("fifo1").ShouldBe($"{fifoConfig} is a FIFO, not a regular file");
            Problem("linked1").ShouldBe($"{upper} is a symbolic link, not a directory; nothing under {Path.Combine(host.Root, "guests")} is followed");
            Problem("leak1").ShouldStartWith($"{Path.Combine(host.GuestDir("leak1"), "guest.json")} is a symbolic link, not a regular file");

            foreach (var name in new[] { "fifo1", "linked1", "leak1" })
            {
                var start = host.Vsctl("start", name);
                start.Code.ShouldBe(1, start.ToString());
                start.Stderr.Trim().Split('\n').Length.ShouldBe(1, start.ToString());
                start.Stderr.ShouldContain("broken");
            }
            // The API still answers at once (the FIFO once hung it for minutes).
            var answer = Stopwatch.StartNew();
            host.Vsctl("list").ShouldSucceed();
            answer.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(5));
            host.AgentLog.ShouldNotContain(Secret[..8]);
            Digest(outside).ShouldBe(before);

            foreach (var name in new[] { "fifo1", "linked1", "leak1" })
                host.Vsctl("destroy", "--force", name).ShouldSucceed();
            foreach (var name in new[] { "fifo1", "linked1", "leak1" })
                Path.Exists(host.GuestDir(name)).ShouldBeFalse();
            host.Vsctl("host", "check").ShouldSucceed();
            Digest(outside).ShouldBe(before);
        }
        finally
        {
            Directory.Delete(outside, recursive: true);
        }
    }
}
