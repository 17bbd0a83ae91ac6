using System.Diagnostics;
using System.Text.Json;

namespace Vserver.IntegrationTests;

/// <summary>
/// vsctl promote and demote, for real: a busybox vserver serving a page with httpd (started by its own init through
/// /etc/rc.local) becomes a domain booting its own kernel from the same files and serves the page from the same address;
/// what the domain writes is there after demote. Each test uses its own guest names.
/// </summary>
public sealed class PromotionTests(DomainHost shared) : IClassFixture<DomainHost>
{
    private TestHost Host => shared.Host;

    private JsonElement Status(string guest) => JsonDocument.Parse(Host.Vsctl("status", guest, "-f", "json").ShouldSucceed().Stdout).RootElement;

    private string Exec(string name, params string[] command) => Host.Vsctl(["exec", name, "--", .. command]).ShouldSucceed().Stdout;

    /// <summary>A running vserver whose init starts httpd on port 80 with a page naming <paramref name="name"/>.</summary>
    private string CreateWebServer(string name, params string[] extra)
    {
        Host.Vsctl(["create", name, "--memory", "128M", .. extra]).ShouldSucceed();
        Host.Vsctl("start", name).ShouldSucceed();
        Exec(name, "sh", "-c",
            $"mkdir -p /srv/www && echo 'page of {name}' > /srv/www/index.html && " +
            "printf '#!/bin/sh\\nhttpd -p 80 -h /srv/www\\n' > /etc/rc.local && chmod 755 /etc/rc.local");
        // Once by hand now; its init starts it at every boot from here on.
        Exec(name, "httpd", "-p", "80", "-h", "/srv/www");
        var ip = Status(name).GetProperty("ipv4").GetString()!;
        Page(ip, TimeSpan.FromSeconds(10)).ShouldBe($"page of {name}\n");
        return ip;
    }

    /// <summary>The page at http://IP/, retried until it answers or the time is up (a TCG boot takes seconds).</summary>
    private static string? Page(string ip, TimeSpan within)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return http.GetStringAsync($"http://{ip}/").GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                if (clock.Elapsed > within) return null;
                Thread.Sleep(100);
            }
        }
    }

    private string KernelVersion => File.ReadAllText(Path.Combine(Host.Root, "kernels", "default", "version")).Trim();

    private void ShouldBeAVserverServing(string name, string ip)
    {
        Host.Vsctl("list").ShouldSucceed().Stdout.ShouldMatch($@"(?m)^{name}\s+vserver\s+running");
        Page(ip, TimeSpan.FromSeconds(30)).ShouldBe($"page of {name}\n");
        Exec(name, "uname", "-r").Trim().ShouldBe(TestHost.Run("uname", "-r").Stdout.Trim());
        Host.QemuPids(name).ShouldBeEmpty();
        Host.VirtiofsdPids(name).ShouldBeEmpty();
        Directory.Exists($"/sys/class/net/{Host.Tap(name)}").ShouldBeFalse("the domain's tap is left");
    }

    /// <summary>Asks for the page every ~50 ms in the background, noting with each answer whether the guest's QEMU ran.</summary>
    private sealed class Prober : IDisposable
    {
        private readonly List<(bool Qemu, bool Ok)> _probes = [];
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;

        public Prober(string ip, Func<bool> qemuRuns)
        {
            _loop = Task.Run(async () =>
            {
                using var http = new HttpClient { Timeout = TimeSpan.FromMilliseconds(300) };
                while (!_stop.IsCancellationRequested)
                {
                    var qemu = qemuRuns();
                    bool ok;
                    try
                    {
                        ok = (await http.GetStringAsync($"http://{ip}/")).StartsWith("page of", StringComparison.Ordinal);
                    }
                    catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                    {
                        ok = false;
                    }
                    lock (_probes) _probes.Add((qemu, ok));
                    await Task.Delay(50);
                }
            });
        }

        /// <summary>An answer while QEMU ran that was followed by a failure: it came from the vserver (the domain, once
        /// it answers, does not stop), so the vserver served while the domain booted.</summary>
        public bool ServedWhileTheDomainBooted()
        {
            lock (_probes)
            {
                var first = _probes.FindIndex(p => p.Qemu && p.Ok);
                return first >= 0 && _probes.Skip(first).Any(p => !p.Ok);
            }
        }

        public string Describe()
        {
            lock (_probes) return string.Concat(_probes.Select(p => p.Qemu ? (p.Ok ? 'Q' : 'q') : (p.Ok ? 'V' : 'v')));
        }

        public void Dispose()
        {
            _stop.Cancel();
            _loop.GetAwaiter().GetResult();
            _stop.Dispose();
        }
    }

    [Fact]
    public void A_promoted_vserver_serves_its_page_from_its_address_under_its_own_kernel_and_keeps_what_it_wrote_after_demote()
    {
        const string name = "pro-web";
        var ip = CreateWebServer(name, "--restart", "on-failure", "--cpus", "1.5", "--pids", "300");
        var mac = Status(name).GetProperty("mac").GetString();
        mac.ShouldNotBeNullOrEmpty();

        var dry = Host.Vsctl("promote", name, "--dry-run").ShouldSucceed().Stdout;
        dry.ShouldContain("dry run, nothing changed");
        dry.ShouldMatch(@"memory\s+128M");
        dry.ShouldMatch(@"vcpus\s+2");
        dry.ShouldContain("virtiofs");
        dry.ShouldContain($"default ({KernelVersion})");
        Host.Vsctl("list").ShouldSucceed().Stdout.ShouldMatch($@"(?m)^{name}\s+vserver\s+running");

        dry.ShouldContain("boots beside the running vserver");

        // Probed throughout: the vserver keeps serving while the domain's kernel boots beside it.
        using (var prober = new Prober(ip, () => Host.QemuPids(name).Count > 0))
        {
            Host.Vsctl("promote", name).ShouldSucceed().Stdout.ShouldContain($"{name} is now a domain (running)");
            Page(ip, TimeSpan.FromSeconds(60)).ShouldBe($"page of {name}\n");
            prober.ServedWhileTheDomainBooted().ShouldBeTrue(
                $"no answer came from the vserver while QEMU ran before the cut-over (probes: {prober.Describe()})");
        }
        Host.Vsctl("list").ShouldSucceed().Stdout.ShouldMatch($@"(?m)^{name}\s+domain\s+running");
        var status = Status(name);
        status.GetProperty("ipv4").GetString().ShouldBe(ip);
        status.GetProperty("mac").GetString().ShouldBe(mac);
        status.GetProperty("root").GetString().ShouldBe("virtiofs");
        status.GetProperty("maxMemoryBytes").GetInt64().ShouldBe(128L << 20);
        status.GetProperty("vcpus").GetInt32().ShouldBe(2);
        status.GetProperty("restart").GetString().ShouldBe("on-failure");
        status.GetProperty("history")[0].GetString()!.ShouldContain("promoted from vserver");

        // Its own init started httpd again, from the same files, on the same address.
        Page(ip, TimeSpan.FromSeconds(60)).ShouldBe($"page of {name}\n");
        Exec(name, "uname", "-r").Trim().ShouldBe(KernelVersion);
        Exec(name, "hostname").Trim().ShouldBe(name);
        // Root's files as root sees them: owned by 0 inside, not by the vserver's host ids.
        Exec(name, "stat", "-c", "%u:%g", "/srv/www/index.html").Trim().ShouldBe("0:0");
        Exec(name, "sh", "-c", "echo written-in-the-domain > /root/from-domain");
        Host.VirtiofsdPids(name).ShouldNotBeEmpty();

        Host.Vsctl("demote", name).ShouldSucceed().Stdout.ShouldContain($"{name} is now a vserver (running)");
        ShouldBeAVserverServing(name, ip);
        Exec(name, "cat", "/root/from-domain").ShouldBe("written-in-the-domain\n");
        var back = Status(name);
        back.GetProperty("mac").GetString().ShouldBe(mac);
        back.GetProperty("cpus").GetDouble().ShouldBe(1.5);
        back.GetProperty("pids").GetInt32().ShouldBe(300);
        back.GetProperty("memoryBytes").GetInt64().ShouldBe(128L << 20);
        back.GetProperty("history").GetArrayLength().ShouldBe(2);

        Host.Vsctl("destroy", "--force", name).ShouldSucceed();
        Host.ShouldHaveNoTraceOf(name);
        Host.VirtiofsdPids(name).ShouldBeEmpty();
    }

    [Fact]
    public void Promote_copy_boots_from_an_ext4_image_of_its_own_and_demote_brings_the_files_back()
    {
        const string name = "pro-copy";
        var ip = CreateWebServer(name);
        Exec(name, "rm", "/etc/shells");

        Host.Vsctl("promote", name, "--copy").ShouldSucceed().Stdout.ShouldContain("ext4 image");
        Status(name).GetProperty("root").GetString().ShouldBe("ext4");
        File.Exists(Path.Combine(Host.GuestDir(name), "disk.ext4")).ShouldBeTrue();
        Directory.Exists(Path.Combine(Host.GuestDir(name), "upper")).ShouldBeFalse("the copied layers should be gone");
        Page(ip, TimeSpan.FromSeconds(60)).ShouldBe($"page of {name}\n");
        Exec(name, "uname", "-r").Trim().ShouldBe(KernelVersion);
        Exec(name, "mount").ShouldContain("/dev/vda on / type ext4");
        Host.Vsctl("exec", name, "--", "test", "-e", "/etc/shells").Code.ShouldBe(1, "a file deleted in the vserver came back in the copy");
        Exec(name, "sh", "-c", "echo copied-domain > /root/from-domain && rm /etc/hosts");

        Host.Vsctl("demote", name).ShouldSucceed();
        ShouldBeAVserverServing(name, ip);
        Exec(name, "cat", "/root/from-domain").ShouldBe("copied-domain\n");
        // Deleted inside the domain: stays deleted, though the image has it.
        Host.Vsctl("exec", name, "--", "test", "-e", "/etc/hosts").Code.ShouldBe(1);
        Host.Vsctl("exec", name, "--", "test", "-e", "/etc/shells").Code.ShouldBe(1);
        File.Exists(Path.Combine(Host.GuestDir(name), "disk.ext4")).ShouldBeFalse();
        Exec(name, "stat", "-c", "%u", "/root/from-domain").Trim().ShouldBe("0");

        Host.Vsctl("destroy", "--force", name).ShouldSucceed();
        Host.ShouldHaveNoTraceOf(name);
    }

    [Fact]
    public void A_domain_created_as_a_domain_is_demoted_with_the_files_of_its_disk()
    {
        const string name = "pro-qcow";
        Host.Vsctl("create", name, "--kind", "domain", "--memory", "128M").ShouldSucceed();
        Host.Vsctl("start", name).ShouldSucceed();
        Exec(name, "mount").ShouldContain("/dev/vda on / type ext4");
        Exec(name, "sh", "-c", "mkdir -p /srv && echo written-on-the-disk > /srv/note && rm /etc/shells");
        var ip = Status(name).GetProperty("ipv4").GetString()!;

        var dry = Host.Vsctl("demote", name, "--dry-run").ShouldSucceed().Stdout;
        dry.ShouldContain("disk.qcow2");
        dry.ShouldContain("dry run, nothing changed");

        Host.Vsctl("demote", name).ShouldSucceed().Stdout.ShouldContain($"{name} is now a vserver (running)");
        Host.Vsctl("list").ShouldSucceed().Stdout.ShouldMatch($@"(?m)^{name}\s+vserver\s+running");
        Exec(name, "cat", "/srv/note").ShouldBe("written-on-the-disk\n");
        Host.Vsctl("exec", name, "--", "test", "-e", "/etc/shells").Code.ShouldBe(1, "a file deleted on the disk came back");
        Exec(name, "uname", "-r").Trim().ShouldBe(TestHost.Run("uname", "-r").Stdout.Trim());
        Status(name).GetProperty("ipv4").GetString().ShouldBe(ip);
        File.Exists(Path.Combine(Host.GuestDir(name), "disk.qcow2")).ShouldBeFalse("the demoted domain's disk is left");
        Host.QemuPids(name).ShouldBeEmpty();

        Host.Vsctl("destroy", "--force", name).ShouldSucceed();
        Host.ShouldHaveNoTraceOf(name);
    }

    [Fact]
    public void A_failed_promotion_rolls_back_and_the_vserver_serves_its_page_again()
    {
        const string name = "pro-fail";
        var ip = CreateWebServer(name);

        // No such kernel: refused before anything is touched.
        Host.Vsctl("promote", name, "--kernel", "nosuch").ShouldFailWith("unknown kernel 'nosuch'");
        ShouldBeAVserverServing(name, ip);

        // A kernel QEMU cannot boot: the vserver is stopped, the domain fails, the vserver comes back.
        var broken = Path.Combine(Host.Root, "kernels", "broken");
        Directory.CreateDirectory(broken);
        File.WriteAllText(Path.Combine(broken, "vmlinux"), "not a kernel");
        File.WriteAllText(Path.Combine(broken, "initrd.img"), "not an initramfs");
        try
        {
            var failed = Host.Vsctl("promote", name, "--kernel", "broken", "--timeout", "20");
            failed.Code.ShouldNotBe(0);
            failed.Stderr.ShouldContain($"promoting '{name}' failed at step");
            failed.Stderr.ShouldContain("rolled back");
            ShouldBeAVserverServing(name, ip);
            Status(name).GetProperty("kind").GetString().ShouldBe("vserver");
            File.ReadAllText("/proc/self/mountinfo").ShouldNotContain($"/guests/{name}/rootfs");

            // A kernel that can hold but whose initramfs is not one: it fails beside the vserver, which never stops.
            var held = Path.Combine(Host.Root, "kernels", "heldbroken");
            Directory.CreateDirectory(held);
            foreach (var f in new[] { "vmlinux", "version", "features" })
                File.Copy(Path.Combine(Host.Root, "kernels", "default", f), Path.Combine(held, f));
            File.WriteAllText(Path.Combine(held, "initrd.img"), "not an initramfs");
            try
            {
                var initPid = Status(name).GetProperty("initPid").GetInt32();
                var besideFailed = Host.Vsctl("promote", name, "--kernel", "heldbroken", "--timeout", "30");
                besideFailed.Code.ShouldNotBe(0);
                besideFailed.Stderr.ShouldContain("failed at step 'wait for the domain's kernel'");
                besideFailed.Stderr.ShouldContain("never stopped serving");
                Status(name).GetProperty("initPid").GetInt32().ShouldBe(initPid);
                ShouldBeAVserverServing(name, ip);
                File.ReadAllText("/proc/self/mountinfo").ShouldNotContain($"/guests/{name}/rootfs");
            }
            finally
            {
                Directory.Delete(held, recursive: true);
            }

            // Admission: a guest that holds all but 64M of the pool's guarantees leaves no room for the domain's 128M.
            var pool = JsonDocument.Parse(Host.Vsctl("host", "-f", "json").ShouldSucceed().Stdout).RootElement.GetProperty("pool");
            var room = pool.GetProperty("capacityBytes").GetInt64() - pool.GetProperty("committedBytes").GetInt64();
            Host.Vsctl("create", "pro-fill", "--memory-min", $"{(room >> 20) - 64}M").ShouldSucceed();
            try
            {
                Host.Vsctl("promote", name).ShouldFailWith($"cannot promote '{name}'");
                ShouldBeAVserverServing(name, ip);
            }
            finally
            {
                Host.Vsctl("destroy", "pro-fill");
            }
        }
        finally
        {
            Directory.Delete(broken, recursive: true);
        }

        // The wrong kind: a vserver cannot be demoted, a domain cannot be promoted.
        Host.Vsctl("demote", name).ShouldFailWith("is a vserver already");
        Host.Vsctl("destroy", "--force", name).ShouldSucceed();
        Host.ShouldHaveNoTraceOf(name);
    }
}
