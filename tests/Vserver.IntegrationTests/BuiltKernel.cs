[assembly: AssemblyFixture(typeof(Vserver.IntegrationTests.BuiltKernel))]

namespace Vserver.IntegrationTests;

/// <summary>
/// The domain kernel and initramfs, built once per test run (images/kernel/build.sh) into a temp dir and shared by
/// every test that boots a domain (an xunit assembly fixture: take it as a constructor parameter).
/// </summary>
public sealed class BuiltKernel : IAsyncLifetime
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("vskernel-").FullName;
    public string OutDir => Path.Combine(Dir, "out");
    public string Vmlinux => Path.Combine(OutDir, "vmlinux");
    public string Initrd => Path.Combine(OutDir, "initrd.img");
    /// <summary>The guest's `uname -r`, from the build's version file.</summary>
    public string Version => File.ReadAllText(Path.Combine(OutDir, "version")).Trim();

    /// <summary>The repository above the test binaries (not VSERVER_BIN's parent: that may be a relative "bin").</summary>
    public static string RepoDir { get; } = FindRepo();

    private static string FindRepo()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Vserver.sln"))) return dir.FullName;
        throw new InvalidOperationException("cannot find the repository (Vserver.sln) above the test binaries");
    }

    public ValueTask InitializeAsync()
    {
        TestHost.Run("sh", Path.Combine(RepoDir, "images", "kernel", "build.sh"), OutDir).ShouldSucceed();
        return ValueTask.CompletedTask;
    }

    public ValueTask DisposeAsync()
    {
        Directory.Delete(Dir, recursive: true);
        return ValueTask.CompletedTask;
    }
}
