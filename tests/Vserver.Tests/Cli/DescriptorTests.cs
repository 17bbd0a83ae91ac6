using System.IO.Pipes;
using Shouldly;
using Vserver.Cli;
using Xunit;

namespace Vserver.Tests.Cli;

public class DescriptorTests
{
    [Fact]
    public void A_descriptor_the_runtime_opened_is_not_taken_for_an_inherited_one()
    {
        using var file = File.OpenRead("/proc/self/status");
        StandardDescriptors.IsInherited((int)file.SafeFileHandle.DangerousGetHandle()).ShouldBeFalse();
        StandardDescriptors.IsInherited(4000).ShouldBeFalse(); // not open at all
    }

    [Fact]
    public void FdStream_moves_bytes_with_read_and_write()
    {
        using var pipe = new AnonymousPipeServerStream(PipeDirection.Out);
        using var reader = new AnonymousPipeClientStream(PipeDirection.In, pipe.ClientSafePipeHandle);
        var writeFd = (int)pipe.SafePipeHandle.DangerousGetHandle();
        var readFd = (int)reader.SafePipeHandle.DangerousGetHandle();
        using var output = new FdStream(writeFd, canRead: false);
        using var input = new FdStream(readFd, canRead: true);

        output.Write("hello"u8);
        output.Write([0, 255, 10], 1, 2);
        var buffer = new byte[16];
        var n = input.Read(buffer, 3, 13);

        buffer.AsSpan(3, n).ToArray().ShouldBe([.. "hello"u8, 255, 10]);
    }
}
