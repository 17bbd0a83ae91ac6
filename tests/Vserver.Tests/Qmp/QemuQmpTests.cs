using System.Diagnostics;
using System.Text.Json.Nodes;
using HybridHypervisor.Domains.Qmp;
using Shouldly;
using Vserver.Isolation.Interop;
using Xunit;

namespace Vserver.Tests.Qmp;

/// <summary>
/// QmpClient against a real QEMU with no guest (<c>-machine none -S</c>: no kernel, no CPUs, starts in ~50 ms).
/// NEEDS qemu-system-x86 (qemu-system-x86_64 on PATH; installed by make). Without it these tests FAIL, on purpose.
/// Each test starts its own QEMU in a temp directory and kills it by pid at the end, even on failure.
/// </summary>
public sealed class QemuQmpTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private sealed class Qemu : IAsyncDisposable
    {
        public required Process Process { get; init; }
        public required string Directory { get; init; }
        public string SocketPath => Path.Combine(Directory, "qmp.sock");

        public static Qemu Start()
        {
            var exe = FindOnPath("qemu-system-x86_64")
                      ?? throw new InvalidOperationException("qemu-system-x86_64 is not on PATH: these tests need the qemu-system-x86 package (make installs it)");
            var dir = FakeQmpServer.NewTempDir();
            var psi = new ProcessStartInfo(exe)
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = dir,
            };
            foreach (var a in new[] { "-machine", "none", "-nodefaults", "-display", "none", "-S",
                                      "-qmp", $"unix:{Path.Combine(dir, "qmp.sock")},server=on,wait=off" })
                psi.ArgumentList.Add(a);
            var p = Process.Start(psi) ?? throw new InvalidOperationException("could not start " + exe);
            return new Qemu { Process = p, Directory = dir };
        }

        public async ValueTask DisposeAsync()
        {
            try
            {
                if (!Process.HasExited) Process.Kill(); // this QEMU, by pid
                await Process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(5));
            }
            finally
            {
                Process.Dispose();
                try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
            }
        }

        private static string? FindOnPath(string name) =>
            (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':')
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
    }

    private static async Task<QmpEvent> NextEvent(QmpClient client) =>
        await client.Events.ReadAsync(Ct).AsTask().WaitAsync(Timeout, Ct);

    [Fact]
    public async Task A_real_QEMU_answers_pauses_resumes_saves_and_quits()
    {
        await using var qemu = Qemu.Start();
        await using var client = await QmpClient.ConnectAsync(qemu.SocketPath, Timeout, Ct);

        client.Version.Major.ShouldBeGreaterThanOrEqualTo(7);
        var version = (await client.ExecuteAsync("query-version", null, Ct))!;
        version["qemu"]!["major"]!.GetValue<int>().ShouldBe(client.Version.Major);
        version["qemu"]!["minor"]!.GetValue<int>().ShouldBe(client.Version.Minor);
        version["qemu"]!["micro"]!.GetValue<int>().ShouldBe(client.Version.Micro);

        (await client.QueryStatusAsync(Ct)).ShouldBe(new QmpStatus(QmpRunState.Prelaunch, "prelaunch", false));

        await client.ContAsync(Ct);
        (await NextEvent(client)).Name.ShouldBe(QmpEventNames.Resume);
        (await client.QueryStatusAsync(Ct)).State.ShouldBe(QmpRunState.Running);

        await client.StopAsync(Ct);
        (await NextEvent(client)).Name.ShouldBe(QmpEventNames.Stop);
        (await client.QueryStatusAsync(Ct)).ShouldBe(new QmpStatus(QmpRunState.Paused, "paused", false));

        (await client.HumanMonitorCommandAsync("info status", Ct)).ShouldContain("paused");

        var noBalloon = await Should.ThrowAsync<QmpException>(() => client.QueryBalloonAsync(Ct));
        noBalloon.ErrorClass.ShouldBe("DeviceNotActive");
        noBalloon.Message.ShouldStartWith("QMP query-balloon failed: DeviceNotActive: ");
        (await Should.ThrowAsync<QmpException>(() => client.ExecuteAsync("no-such-command", null, Ct))).ErrorClass.ShouldBe("CommandNotFound");

        // Save the (empty) machine's state to a file through exec:, QEMU 7.2 having no file: URI.
        (await client.QueryMigrateAsync(Ct)).Status.ShouldBeNull();
        var state = Path.Combine(qemu.Directory, "state 'quoted'.bin");
        await client.MigrateSetParametersAsync(maxBandwidthBytesPerSecond: 1L << 30, ct: Ct);
        await client.MigrateAsync(QmpMigrationUri.ToFile(state), Ct);
        QmpMigrationInfo info;
        var sw = Stopwatch.StartNew();
        while (!(info = await client.QueryMigrateAsync(Ct)).IsFinished && sw.Elapsed < Timeout) await Task.Delay(10, Ct);
        info.Status.ShouldBe("completed", info.Raw.ToJsonString());
        new FileInfo(state).Length.ShouldBeGreaterThan(0);
        (await client.QueryStatusAsync(Ct)).State.ShouldBe(QmpRunState.PostMigrate);

        await client.QuitAsync(Ct);
        var shutdown = await NextEvent(client);
        shutdown.Name.ShouldBe(QmpEventNames.Shutdown);
        shutdown.DataString("reason").ShouldBe("host-qmp-quit");
        await client.Completion.WaitAsync(Timeout, Ct);
        (await client.Events.Completion.WaitAsync(Timeout, Ct).ContinueWith(t => t.IsCompletedSuccessfully, Ct)).ShouldBeTrue();
        // QEMU 7.2 closes with EOF, except after an exec: migration: then the close is a connection reset.
        client.CloseReason.ShouldBeOneOf("end of stream", "connection reset");
        var after = await Should.ThrowAsync<QmpConnectionClosedException>(() => client.QueryStatusAsync(Ct));
        after.Message.ShouldContain("cannot send query-status");
        await qemu.Process.WaitForExitAsync(Ct).WaitAsync(Timeout, Ct);
        qemu.Process.ExitCode.ShouldBe(0);
    }

    [Fact]
    public async Task A_command_in_flight_when_QEMU_is_killed_fails_with_connection_closed()
    {
        await using var qemu = Qemu.Start();
        await using var client = await QmpClient.ConnectAsync(qemu.SocketPath, Timeout, Ct);

        const int SIGSTOP = 19;
        Libc.Kill(qemu.Process.Id, SIGSTOP).ShouldBe(0); // frozen: the command below cannot be answered
        var pending = client.QueryStatusAsync(Ct);
        await Task.Delay(50, Ct);
        pending.IsCompleted.ShouldBeFalse();
        qemu.Process.Kill(); // SIGKILL this QEMU by pid

        var e = await Should.ThrowAsync<QmpConnectionClosedException>(() => pending.WaitAsync(Timeout, Ct));
        e.Message.ShouldStartWith("QEMU's QMP connection closed (QEMU exited?");
        e.Message.ShouldEndWith("while waiting for query-status");
        await client.Events.Completion.WaitAsync(Timeout, Ct);
        client.IsConnected.ShouldBeFalse();
    }

    [Fact]
    public async Task A_second_client_on_the_same_monitor_gets_no_greeting()
    {
        await using var qemu = Qemu.Start();
        await using var first = await QmpClient.ConnectAsync(qemu.SocketPath, Timeout, Ct);
        var e = await Should.ThrowAsync<TimeoutException>(() => QmpClient.ConnectAsync(qemu.SocketPath, TimeSpan.FromMilliseconds(300), Ct));
        e.Message.ShouldContain("no QMP greeting");
        (await first.QueryStatusAsync(Ct)).State.ShouldBe(QmpRunState.Prelaunch);
    }
}
