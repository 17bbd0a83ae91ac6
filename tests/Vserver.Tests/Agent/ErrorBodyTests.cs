using System.Text.Json;
using HybridHypervisor;
using HybridHypervisor.Domains;
using Microsoft.AspNetCore.Http;
using SharedMemoryAccounting;
using Shouldly;
using Vserver.Agent;
using Vserver.Api;
using Xunit;

namespace Vserver.Tests.Agent;

/// <summary>What a curl user gets for a refusal: the code and its fields in the body, and a plain message that names no
/// vsctl verb (vsctl adds those itself).</summary>
public sealed class ErrorBodyTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("vserrbody-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(int Status, ErrorResponse Body)> AnswerAsync(FleetException e)
    {
        var context = new DefaultHttpContext();
        using var body = new MemoryStream();
        context.Response.Body = body;
        await ApiErrors.Write(context, e);
        body.Position = 0;
        return (context.Response.StatusCode, JsonSerializer.Deserialize(body, ApiJson.Default.ErrorResponse)!);
    }

    [Fact]
    public async Task A_file_that_is_no_save_file_is_named_in_the_fields()
    {
        var junk = Path.Combine(_dir, "junk");
        File.WriteAllText(junk, "hello\n");
        var (status, body) = await AnswerAsync(Should.Throw<FleetException>(() => SaveFile.Read(junk)));
        status.ShouldBe(StatusCodes.Status400BadRequest);
        body.Code.ShouldBe(ErrorCodes.NotASaveFile);
        body.Fields.ShouldNotBeNull()["file"].ShouldBe(junk);
        body.Error.ShouldNotContain("vsctl");
    }

    [Fact]
    public async Task A_missing_kernel_says_which_are_built()
    {
        var kernels = new KernelStore(Path.Combine(_dir, "kernels"), Path.Combine(_dir, "recipes"));
        foreach (var name in new[] { "default", "lts" })
        {
            var dir = Directory.CreateDirectory(Path.Combine(_dir, "kernels", name)).FullName;
            File.WriteAllText(Path.Combine(dir, "vmlinux"), "elf");
            File.WriteAllText(Path.Combine(dir, "initrd.img"), "cpio");
        }
        var (status, body) = await AnswerAsync(Should.Throw<FleetException>(() => kernels.Remove("nosuch")));
        status.ShouldBe(StatusCodes.Status404NotFound);
        body.Code.ShouldBe(ErrorCodes.KernelMissing);
        body.Fields.ShouldBe(new Dictionary<string, string> { ["kernel"] = "nosuch", ["built"] = "default,lts" });
        body.Error.ShouldBe("unknown kernel 'nosuch'; built kernels: default, lts");
    }

    [Theory]
    [InlineData(1L << 30, "guarantees")]
    [InlineData(0L, "limits")]
    public async Task A_pool_refusal_carries_its_numbers(long guarantee, string bound)
    {
        var pool = new PoolSettings { ReserveBytes = 1L << 30, Overcommit = 1 }.For(2L << 30);
        var refusal = Admission.Check(pool, [new Commitment("a", 512L << 20, 1L << 30)], new Commitment("b", guarantee, 1L << 30), "create");
        refusal.ShouldNotBeNull();
        var (status, body) = await AnswerAsync(Fleet.Refused(refusal));
        status.ShouldBe(StatusCodes.Status409Conflict);
        body.Code.ShouldBe(ErrorCodes.PoolFull);
        body.Fields.ShouldBe(new Dictionary<string, string>
        {
            ["guest"] = "b",
            ["bound"] = bound,
            ["asked"] = (1L << 30).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["committed"] = (bound == "guarantees" ? 512L << 20 : 1L << 30).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["available"] = (1L << 30).ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
        body.Error.ShouldNotContain("vsctl");
        body.Error.ShouldNotContain("--memory");
    }

    [Fact]
    public void An_exec_or_console_refusal_sends_its_code_and_fields_before_the_error_line()
    {
        var frame = ExecRelay.ErrorDetailFrame(FleetException.Paused("web1"));
        frame[0].ShouldBe(ExecStream.ErrorDetail);
        var body = JsonSerializer.Deserialize(frame.AsSpan(1), ApiJson.Default.ErrorResponse)!;
        body.Error.ShouldBe("guest 'web1' is paused");
        body.Code.ShouldBe(ErrorCodes.Paused);
        body.Fields.ShouldBe(new Dictionary<string, string> { ["guest"] = "web1" });
    }
}
