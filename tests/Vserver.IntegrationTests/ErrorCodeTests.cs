using System.Text;
using System.Text.Json;
using Vserver.Api;

namespace Vserver.IntegrationTests;

/// <summary>
/// What any HTTP client gets back from a refused create: a 400 or 409 whose JSON says the refusal in plain words
/// ("error", as old clients read it) and for a program ("code" and "fields"); and POST /v1/guests?dry_run=true, which
/// runs every check of a create, answers what it would make and makes nothing.
/// </summary>
public sealed class ErrorCodeTests(SharedHost shared) : IClassFixture<SharedHost>
{
    private TestHost Host => shared.Host;

    private Task<RawResponse> PostGuest(string json, bool dryRun = false) =>
        RawHttp.SendAsync(Host.Socket, "POST", dryRun ? "/v1/guests?dry_run=true" : "/v1/guests", Encoding.UTF8.GetBytes(json));

    private static (string? Code, Dictionary<string, string> Fields) Coded(RawResponse response)
    {
        using var json = JsonDocument.Parse(response.Body);
        var root = json.RootElement;
        var fields = root.TryGetProperty("fields", out var f)
            ? f.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!)
            : [];
        return (root.TryGetProperty("code", out var code) ? code.GetString() : null, fields);
    }

    [Fact]
    public async Task Vcpus_for_a_vserver_is_a_400_with_its_code_and_fields_and_plain_words()
    {
        // curl --unix-socket SOCK -X POST http://x/v1/guests -d '{"name":"a","vcpus":2}' -H 'Content-Type: application/json'
        var response = await PostGuest("""{"name":"a","vcpus":2}""");

        response.Status.ShouldBe(400, response.ToString());
        var (code, fields) = Coded(response);
        code.ShouldBe("option_not_for_kind", response.ToString());
        fields.ShouldBe(new Dictionary<string, string> { ["option"] = "vcpus", ["kind"] = "vserver" });
        response.Error.ShouldBe("vcpus is for domains, and this guest is a vserver");
        response.Error.ShouldNotContain("--", customMessage: "the agent gives no vsctl flag advice");
        Host.ShouldHaveNoTraceOf("a");
        // vsctl, and only vsctl, says what to do in its flags.
        Host.Vsctl("create", "a", "--vcpus", "2").ShouldFailWith("vsctl: --vcpus is for domains; add --kind domain, or leave it out for a vserver");
    }

    [Fact]
    public async Task A_dry_run_makes_nothing_and_answers_the_guest_it_would_make()
    {
        using var client = Host.Client();
        var before = (await client.ListAsync(TestContext.Current.CancellationToken)).Guests.Count;
        var response = await PostGuest("""{"name":"dry1","memoryBytes":67108864,"cpus":0.5}""", dryRun: true);

        response.Status.ShouldBe(200, response.ToString());
        using (var json = JsonDocument.Parse(response.Body))
        {
            var guest = json.RootElement;
            guest.GetProperty("name").GetString().ShouldBe("dry1");
            guest.GetProperty("state").GetString().ShouldBe("stopped");
            guest.GetProperty("memoryBytes").GetInt64().ShouldBe(64L << 20);
            guest.GetProperty("ipv4").GetString().ShouldStartWith(Host.SubnetPrefix + ".");
        }
        Directory.Exists(Host.GuestDir("dry1")).ShouldBeFalse("a dry run made the guest's directory");
        Host.CgroupExists("dry1").ShouldBeFalse("a dry run made the guest's cgroup");
        Host.ShouldHaveNoTraceOf("dry1");
        var list = await client.ListAsync(TestContext.Current.CancellationToken);
        list.Guests.ShouldNotContain(g => g.Name == "dry1");
        list.Guests.Count.ShouldBe(before);
        // The client's way to it says the same.
        (await client.CreateDryRunAsync(new GuestSpec { Name = "dry1" }, TestContext.Current.CancellationToken)).Name.ShouldBe("dry1");
        Directory.Exists(Host.GuestDir("dry1")).ShouldBeFalse();
    }

    [Theory]
    [InlineData("""{"name":"dry2","vcpus":2}""", 400, "option_not_for_kind")]
    [InlineData("""{"name":"dry2","kind":"domain","cpus":1}""", 400, "option_not_for_kind")]
    [InlineData("""{"name":"dry2","memoryBytes":1024}""", 400, "invalid_value")]
    [InlineData("""{"name":"dry2","image":"nosuch"}""", 400, "invalid_value")]
    [InlineData("""{"name":"dry2","ipv4":"192.0.2.7"}""", 400, "invalid_value")]
    [InlineData("""{"name":"Dry2"}""", 400, "invalid_value")]
    [InlineData("""{"name":"dry-taken"}""", 409, "name_taken")]
    public async Task A_dry_run_refuses_with_the_status_code_and_fields_of_the_real_create(string json, int status, string code)
    {
        if (json.Contains("dry-taken", StringComparison.Ordinal) && !Directory.Exists(Host.GuestDir("dry-taken")))
            Host.Vsctl("create", "dry-taken").ShouldSucceed();
        var dry = await PostGuest(json, dryRun: true);
        var before = Directory.EnumerateDirectories(Path.Combine(Host.Root, "guests")).Order().ToList();
        var real = await PostGuest(json);

        dry.Status.ShouldBe(status, dry.ToString());
        real.Status.ShouldBe(status, real.ToString());
        Coded(dry).Code.ShouldBe(code, dry.ToString());
        Coded(dry).Fields.ShouldBe(Coded(real).Fields);
        dry.Error.ShouldBe(real.Error);
        Directory.EnumerateDirectories(Path.Combine(Host.Root, "guests")).Order().ToList().ShouldBe(before);
        Host.ShouldHaveNoTraceOf("dry2");
    }

    [Fact]
    public async Task A_taken_address_names_its_owner()
    {
        Host.Vsctl("create", "addr-owner", "--ip", $"{Host.SubnetPrefix}.77").ShouldSucceed();
        var response = await PostGuest($$"""{"name":"addr-other","ipv4":"{{Host.SubnetPrefix}}.77"}""");
        response.Status.ShouldBe(409, response.ToString());
        var (code, fields) = Coded(response);
        code.ShouldBe("address_taken");
        fields.ShouldBe(new Dictionary<string, string> { ["address"] = $"{Host.SubnetPrefix}.77", ["owner"] = "addr-owner" });
        Host.ShouldHaveNoTraceOf("addr-other");
    }
}
