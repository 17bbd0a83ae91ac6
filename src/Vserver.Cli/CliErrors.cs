namespace Vserver.Cli;

/// <summary>Process exit codes of vsctl (a remote command's own code is passed through by exec).</summary>
internal static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>The agent refused the operation, or could not be reached.</summary>
    public const int Failed = 1;
    /// <summary>Bad usage or input, caught before any request.</summary>
    public const int Usage = 2;
    /// <summary>exec: the command did not run, or the session broke (as docker exec).</summary>
    public const int ExecFailed = 125;
    public const int Interrupted = 130;
}

/// <summary>Bad usage or input caught locally; printed as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>An operation failed on the vsctl side with a message meant for the operator; exit code 1.</summary>
internal sealed class CliFailureException(string message) : Exception(message);
