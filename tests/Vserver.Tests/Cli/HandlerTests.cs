using System.Text.Json;
using Shouldly;
using Vserver.Api;
using Vserver.Cli;
using Vserver.Cli.Commands;
using Xunit;

namespace Vserver.Tests.Cli;

/// <summary>Verbs against a fake agent: the request each one sends and the line it prints.</summary>
public class HandlerTests
{
    private static readonly GuestInfo Web1 = new()
    {
        Name = "web1",
        Kind = "vserver",
        State = "running",
        Ipv4 = "10.88.0.2",
        InitPid = 1234,
        MemoryBytes = 512L << 20,
        Cpus = 1,
        Pids = 100,
    };

    private static readonly GuestInfo Vm1 = new()
    {
        Name = "vm1",
        Kind = "domain",
        State = "running",
        Image = "busybox",
        Ipv4 = "10.88.0.3",
        InitPid = 4321,
        MemoryBytes = 192L << 20,
        MaxMemoryBytes = 256L << 20,
        Vcpus = 2,
        Kernel = "default",
        DiskBytes = 2L << 30,
        Accelerator = "kvm",
    };

    private static FakeResponse Guest(GuestInfo guest) => FakeResponse.Json(guest, ApiJson.Default.GuestInfo);

    [Fact]
    public async Task Create_sends_parsed_sizes_and_the_split_command()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Guest(Web1 with { State = "stopped", InitPid = null });
        var cli = new CliHarness();

        var code = await cli.RunAsync(agent.SocketPath, "create", "web1", "--image", "busybox", "--memory", "256M", "--cpus", "0.5",
            "--pids", "200", "--ip", "10.88.0.2", "--restart", "on-failure", "--cmd", "/bin/sh -c 'httpd -f -p 80'");

        code.ShouldBe(0);
        cli.OutLines.ShouldBe(["created web1 (vserver, 10.88.0.2)"]);
        cli.Err.ToString().ShouldBeEmpty();
        var request = agent.Requests.ShouldHaveSingleItem();
        request.Method.ShouldBe("POST");
        request.Path.ShouldBe("/v1/guests");
        var sent = JsonSerializer.Deserialize(request.Body, ApiJson.Default.GuestSpec)!;
        sent.Command.ShouldBe(["/bin/sh", "-c", "httpd -f -p 80"]);
        (sent with { Command = null }).ShouldBe(new GuestSpec
        {
            Name = "web1",
            Image = "busybox",
            MemoryBytes = 256L << 20,
            Cpus = 0.5,
            Pids = 200,
            Ipv4 = "10.88.0.2",
            Restart = "on-failure",
        });
    }

    [Fact]
    public async Task Create_leaves_unset_options_to_the_agent()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Guest(Web1 with { Ipv4 = null });
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "create", "web1")).ShouldBe(0);

        cli.OutLines.ShouldBe(["created web1 (vserver)"]);
        agent.Requests.ShouldHaveSingleItem().Body.ShouldBe("""{"name":"web1"}""");
    }

    [Theory]
    [InlineData("POST /v1/guests/web1/start", "started web1 (pid 1234)", "start", "web1")]
    [InlineData("POST /v1/guests/web1/stop", "stopped web1", "stop", "web1")]
    [InlineData("POST /v1/guests/web1/stop?timeout=3", "stopped web1", "stop", "web1", "--timeout", "3")]
    [InlineData("POST /v1/guests/web1/restart", "restarted web1 (pid 1234)", "restart", "web1")]
    [InlineData("POST /v1/guests/web1/pause", "paused web1", "pause", "web1")]
    [InlineData("POST /v1/guests/web1/resume", "resumed web1", "resume", "web1")]
    [InlineData("DELETE /v1/guests/web1", "destroyed web1", "destroy", "web1")]
    [InlineData("DELETE /v1/guests/web1?force=true", "destroyed web1", "destroy", "web1", "--force")]
    [InlineData("PATCH /v1/guests/web1/limits", "updated web1: memory 512M, cpus 1, pids 100, restart no, autostart off", "set", "web1", "--memory", "512M")]
    public async Task Lifecycle_verbs_send_one_request_and_print_one_line(string route, string line, params string[] args)
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Guest(Web1);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, args)).ShouldBe(0);

        cli.OutLines.ShouldBe([line]);
        var request = agent.Requests.ShouldHaveSingleItem();
        $"{request.Method} {request.Path}".ShouldBe(route);
    }

    [Fact]
    public async Task Set_sends_only_the_limits_given()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Guest(Web1);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "set", "web1", "--cpus", "1.5", "--pids", "64")).ShouldBe(0);

        agent.Requests.ShouldHaveSingleItem().Body.ShouldBe("""{"cpus":1.5,"pids":64}""");
    }

    [Fact]
    public async Task The_agents_refusal_is_printed_as_is_with_exit_code_1()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Error(409, "web1 is already running");
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "start", "web1")).ShouldBe(1);

        cli.ErrLines.ShouldBe(["vsctl: web1 is already running"]);
        cli.Out.ToString().ShouldBeEmpty();
    }

    [Fact]
    public async Task A_non_json_error_still_gives_one_line()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => new FakeResponse(500, "<html>oops</html>");
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "list")).ShouldBe(1);

        cli.ErrLines.ShouldHaveSingleItem().ShouldStartWith("vsctl: ");
    }

    [Fact]
    public async Task No_agent_is_one_line_and_exit_code_1_without_auto_start()
    {
        var cli = new CliHarness();
        var socket = FakeAgent.NewSocketPath();

        (await cli.RunAsync(socket, "list")).ShouldBe(1);

        cli.ErrLines.ShouldBe([$"vsctl: no agent answers on {socket}: the socket does not exist"]);
    }

    [Fact]
    public async Task List_prints_the_table_and_warnings()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Json(new GuestList { Guests = [Web1], Warnings = ["guests/x: bad config"] }, ApiJson.Default.GuestList);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "list")).ShouldBe(0);

        cli.OutLines.ShouldBe([
            "NAME   TYPE      STATE     ACCEL   IPV4        MEMORY   CPUS   IMAGE   PRIVILEGED",
            "web1   vserver   running   -       10.88.0.2   512M     1      -       no",
        ]);
        cli.ErrLines.ShouldBe(["vsctl: warning: guests/x: bad config"]);
    }

    [Fact]
    public async Task List_shows_domains_with_their_accelerator_vcpus_and_balloon_target()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Json(new GuestList { Guests = [Web1, Vm1 with { State = "paused" }] }, ApiJson.Default.GuestList);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "list")).ShouldBe(0);

        cli.OutLines.ShouldBe([
            "NAME   TYPE      STATE     ACCEL   IPV4        MEMORY   CPUS   IMAGE     PRIVILEGED",
            "web1   vserver   running   -       10.88.0.2   512M     1      -         no",
            "vm1    domain    paused    kvm     10.88.0.3   192M     2      busybox   -",
        ]);
        cli.Err.ToString().ShouldBeEmpty();
    }

    [Fact]
    public async Task List_explains_tcg_in_one_line_after_the_table_when_a_domain_is_emulated()
    {
        await using var agent = FakeAgent.Start();
        var emulated = Vm1 with { Name = "vm2", State = "crashed", Accelerator = "tcg (emulated: /dev/kvm is missing)" };
        agent.Handler = _ => FakeResponse.Json(new GuestList { Guests = [Vm1, emulated] }, ApiJson.Default.GuestList);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "list")).ShouldBe(0);

        cli.OutLines.ShouldBe([
            "NAME   TYPE     STATE     ACCEL   IPV4        MEMORY   CPUS   IMAGE     PRIVILEGED",
            "vm1    domain   running   kvm     10.88.0.3   192M     2      busybox   -",
            "vm2    domain   crashed   tcg     10.88.0.3   192M     2      busybox   -",
            "tcg = emulated (no usable KVM on this host: /dev/kvm is missing): domains run several times slower",
        ]);
    }

    [Fact]
    public async Task Create_domain_maps_its_flags_into_the_request()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Guest(Vm1 with { State = "stopped", InitPid = null });
        var cli = new CliHarness();

        var code = await cli.RunAsync(agent.SocketPath, "create", "vm1", "--kind", "domain", "--image", "busybox", "--memory", "256M",
            "--vcpus", "2", "--disk", "4G", "--kernel", "lts", "--ip", "10.88.0.3", "--restart", "always");

        code.ShouldBe(0);
        cli.OutLines.ShouldBe(["created vm1 (domain, 10.88.0.3)"]);
        var sent = JsonSerializer.Deserialize(agent.Requests.ShouldHaveSingleItem().Body, ApiJson.Default.GuestSpec)!;
        sent.ShouldBe(new GuestSpec
        {
            Name = "vm1",
            Kind = "domain",
            Image = "busybox",
            MemoryBytes = 256L << 20,
            Vcpus = 2,
            DiskBytes = 4L << 30,
            Kernel = "lts",
            Ipv4 = "10.88.0.3",
            Restart = "always",
        });
    }

    [Theory]
    [InlineData("running", "updated vm1: memory 192M (balloon target, live; maximum 256M)")]
    [InlineData("stopped", "updated vm1: memory 192M (its RAM from the next start)")]
    public async Task Set_memory_on_a_domain_says_what_it_did(string state, string line)
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Guest(Vm1 with { State = state });
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "set", "vm1", "--memory", "192M")).ShouldBe(0);

        cli.OutLines.ShouldBe([line]);
        agent.Requests.ShouldHaveSingleItem().Body.ShouldBe($$"""{"memoryBytes":{{192L << 20}}}""");
    }

    [Fact]
    public async Task Save_sends_the_file_made_absolute_against_the_current_directory()
    {
        await using var agent = FakeAgent.Start();
        var expected = Path.GetFullPath("saves/vm1.save");
        agent.Handler = _ => FakeResponse.Json(new SaveResult { File = expected, SizeBytes = 300L << 20 }, ApiJson.Default.SaveResult);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "save", "vm1", "saves/vm1.save")).ShouldBe(0);

        cli.OutLines.ShouldBe([$"saved vm1 to {expected} (300M)"]);
        var request = agent.Requests.ShouldHaveSingleItem();
        $"{request.Method} {request.Path}".ShouldBe("POST /v1/guests/vm1/save");
        JsonSerializer.Deserialize(request.Body, ApiJson.Default.SaveFileRequest)!.File.ShouldBe(expected);
    }

    [Theory]
    [InlineData("vm1.save", "/srv/saves", "/srv/saves/vm1.save")]
    [InlineData("../vm1.save", "/srv/saves", "/srv/vm1.save")]
    [InlineData("/var/tmp/vm1.save", "/srv/saves", "/var/tmp/vm1.save")]
    public void Save_and_restore_paths_are_absolute(string file, string cwd, string expected) =>
        SaveCommand.AbsolutePath(file, cwd).ShouldBe(expected);

    [Fact]
    public async Task Restore_sends_the_absolute_file_and_prints_the_domain_and_its_state()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Json(Vm1, ApiJson.Default.GuestInfo, 201);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "restore", "vm1.save")).ShouldBe(0);

        cli.OutLines.ShouldBe(["restored vm1 (running)"]);
        var request = agent.Requests.ShouldHaveSingleItem();
        $"{request.Method} {request.Path}".ShouldBe("POST /v1/restore");
        JsonSerializer.Deserialize(request.Body, ApiJson.Default.SaveFileRequest)!.File.ShouldBe(Path.GetFullPath("vm1.save"));
    }

    [Fact]
    public async Task Kernel_verbs_map_to_the_kernel_endpoints()
    {
        await using var agent = FakeAgent.Start();
        var kernel = new KernelInfo
        {
            Name = "default", Version = "6.1.0-28-cloud-amd64", Package = "linux-image-cloud-amd64", SizeBytes = 40L << 20, Built = CliHarness.Now,
        };
        agent.Handler = r => r.Method switch
        {
            "POST" => FakeResponse.Json(kernel, ApiJson.Default.KernelInfo, 201),
            "GET" => FakeResponse.Json<IReadOnlyList<KernelInfo>>([kernel], ApiJson.Default.IReadOnlyListKernelInfo),
            _ => new FakeResponse(204, ""),
        };
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "kernel", "build")).ShouldBe(0);
        (await cli.RunAsync(agent.SocketPath, "kernel", "list")).ShouldBe(0);
        (await cli.RunAsync(agent.SocketPath, "kernel", "rm", "default")).ShouldBe(0);

        cli.ErrLines.ShouldBe(["building kernel default..."]);
        cli.OutLines.ShouldBe([
            "built kernel default (6.1.0-28-cloud-amd64, 40M)",
            "NAME      VERSION                PACKAGE                   SIZE   BUILT",
            "default   6.1.0-28-cloud-amd64   linux-image-cloud-amd64   40M    2025-03-01 12:00:00 +00:00 (just now)",
            "removed kernel default",
        ]);
        agent.Requests.Select(r => $"{r.Method} {r.Path}").ShouldBe(["POST /v1/kernels", "GET /v1/kernels", "DELETE /v1/kernels/default"]);
        agent.Requests.First().Body.ShouldBe("""{"name":"default"}""");
    }

    [Fact]
    public async Task Kernel_build_takes_a_name_and_list_speaks_json()
    {
        await using var agent = FakeAgent.Start();
        var kernel = new KernelInfo { Name = "lts", Version = "6.1", Package = "p", SizeBytes = 1, Built = CliHarness.Now };
        agent.Handler = r => r.Method == "POST"
            ? FakeResponse.Json(kernel, ApiJson.Default.KernelInfo, 201)
            : FakeResponse.Json<IReadOnlyList<KernelInfo>>([kernel], ApiJson.Default.IReadOnlyListKernelInfo);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "kernel", "build", "lts")).ShouldBe(0);
        (await cli.RunAsync(agent.SocketPath, "kernel", "ls", "-f", "json")).ShouldBe(0);

        agent.Requests.First().Body.ShouldBe("""{"name":"lts"}""");
        var json = cli.Out.ToString();
        JsonSerializer.Deserialize(json[json.IndexOf('[', StringComparison.Ordinal)..], ApiJson.Default.IReadOnlyListKernelInfo)!
            .ShouldHaveSingleItem().ShouldBe(kernel);
    }

    [Fact]
    public async Task Status_json_round_trips_the_guest()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = r => r.Path == "/v1/guests/web1" ? Guest(Web1) : FakeResponse.Error(404, "no such guest");
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "status", "web1", "-f", "json")).ShouldBe(0);

        JsonSerializer.Deserialize(cli.Out.ToString(), ApiJson.Default.GuestInfo).ShouldBe(Web1 with { });
        cli.Out.ToString().ShouldContain("\n  \"name\": \"web1\"");
    }

    [Fact]
    public async Task Image_verbs_map_to_the_image_endpoints()
    {
        await using var agent = FakeAgent.Start();
        var image = new ImageInfo
        {
            Name = "busybox", SizeBytes = 1 << 20, Created = CliHarness.Now, Digest = "sha256:abc", Init = "busybox",
            Source = new ImageSourceInfo { Kind = "recipe", Recipe = "busybox" },
        };
        agent.Handler = r => r.Method switch
        {
            "POST" => FakeResponse.Json(image, ApiJson.Default.ImageInfo),
            "GET" => FakeResponse.Json<IReadOnlyList<ImageInfo>>([image], ApiJson.Default.IReadOnlyListImageInfo),
            _ => new FakeResponse(204, ""),
        };
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, "image", "build", "busybox")).ShouldBe(0);
        (await cli.RunAsync(agent.SocketPath, "image", "list")).ShouldBe(0);
        (await cli.RunAsync(agent.SocketPath, "image", "rm", "busybox")).ShouldBe(0);

        cli.OutLines.ShouldBe([
            "built image busybox (1M, sha256:abc)",
            "NAME      SIZE   CREATED                                 INIT      SOURCE",
            "busybox   1M     2025-03-01 12:00:00 +00:00 (just now)   busybox   recipe busybox",
            "removed image busybox",
        ]);
        agent.Requests.Select(r => $"{r.Method} {r.Path}").ShouldBe(["POST /v1/images", "GET /v1/images", "DELETE /v1/images/busybox"]);
        agent.Requests.First().Body.ShouldBe("""{"name":"busybox"}""");
    }

    [Fact]
    public async Task Image_import_streams_the_file_and_export_writes_the_compression_its_suffix_names()
    {
        await using var agent = FakeAgent.Start();
        var dir = Directory.CreateTempSubdirectory("vsctl-image-").FullName;
        try
        {
            var file = Path.Combine(dir, "root.tar.gz");
            File.WriteAllText(file, "archive bytes");
            var output = Path.Combine(dir, "out.tar.zst");
            var imported = new ImageInfo
            {
                Name = "web", SizeBytes = 1 << 20, Created = CliHarness.Now, Digest = "sha256:abc", Init = "busybox",
                Source = new ImageSourceInfo { Kind = "import", File = file, Format = "tar.gz", ArchiveDigest = "sha256:0123" },
                Notes = ["skipped 1 device node under /dev (/dev/null)"],
            };
            agent.Handler = r => r.Method == "POST" ? FakeResponse.Json(imported, ApiJson.Default.ImageInfo, 201) : new FakeResponse(200, "tar bytes");
            var cli = new CliHarness();

            (await cli.RunAsync(agent.SocketPath, "image", "import", file, "--as", "web")).ShouldBe(0);
            (await cli.RunAsync(agent.SocketPath, "image", "export", "web", "-o", output)).ShouldBe(0);
            (await cli.RunAsync(agent.SocketPath, "image", "import", file)).ShouldBe(2);
            (await cli.RunAsync(agent.SocketPath, "image", "export", "web", "-o", Path.Combine(dir, "out.zip"))).ShouldBe(2);

            agent.Requests.Select(r => $"{r.Method} {r.Path}").ShouldBe([
                $"POST /v1/images/web/import?source={Uri.EscapeDataString(file)}",
                "GET /v1/images/web/export?compression=zstd",
            ]);
            agent.Requests.First().Body.ShouldBe("archive bytes");
            File.ReadAllText(output).ShouldBe("tar bytes");
            cli.OutLines[0].ShouldBe($"imported image web from {file} (tar.gz sha256:0123): 1M, init busybox");
            cli.OutLines[1].ShouldBe("note: skipped 1 device node under /dev (/dev/null)");
            cli.OutLines[2].ShouldStartWith($"exported image web to {output} (zstd, ");
            cli.Err.ToString().ShouldContain("give the new image's name with --as NAME");
            cli.Err.ToString().ShouldContain("give the file a suffix that says its format");
            Directory.EnumerateFiles(dir).Select(Path.GetFileName).Order().ShouldBe(["out.tar.zst", "root.tar.gz"]);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("/srv/a.tar", "none")]
    [InlineData("a.tar.gz", "gzip")]
    [InlineData("a.TGZ", "gzip")]
    [InlineData("a.tar.xz", "xz")]
    [InlineData("a.tar.zst", "zstd")]
    [InlineData("a.tar.bz2", "bzip2")]
    [InlineData("a.zip", null)]
    [InlineData("a.gz", null)]
    public void An_image_export_compresses_by_the_file_suffix(string file, string? compression) =>
        ImageCommand.CompressionFor(file).ShouldBe(compression);

    [Theory]
    [InlineData("host")]
    [InlineData("info")]
    public async Task Host_and_its_alias_info_print_the_host(string verb)
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => FakeResponse.Json(new HostInfo
        {
            Version = "0.1", CgroupVersion = "2", Bridge = "vsbr0", Subnet = "10.88.0.0/16", StateRoot = "/var/lib/vserver", RunRoot = "/run/vserver", AgentPid = 9,
            Accelerator = "kvm", Cpus = 8, MemoryBytes = 16L << 30,
        }, ApiJson.Default.HostInfo);
        var cli = new CliHarness();

        (await cli.RunAsync(agent.SocketPath, verb)).ShouldBe(0);

        cli.OutLines.ShouldContain($"socket:         {agent.SocketPath}");
        cli.OutLines.ShouldContain("agent pid:      9");
        cli.OutLines.ShouldContain("accelerator:    kvm");
        cli.OutLines.ShouldContain("cpus:           8");
        cli.OutLines.ShouldContain("memory:         16G");
    }

    [Fact]
    public async Task Handlers_can_be_called_directly_with_writers()
    {
        await using var agent = FakeAgent.Start();
        agent.Handler = _ => Guest(Web1);
        using var client = new AgentClient(agent.SocketPath);
        var stdout = new StringWriter();

        (await StartCommand.HandleAsync(client, "web1", stdout, TextWriter.Null, TestContext.Current.CancellationToken)).ShouldBe(0);

        stdout.ToString().ShouldBe("started web1 (pid 1234)" + Environment.NewLine);
    }
}
