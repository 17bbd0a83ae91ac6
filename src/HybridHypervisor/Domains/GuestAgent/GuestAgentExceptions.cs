namespace HybridHypervisor.Domains.GuestAgent;

/// <summary>The connection to the guest agent is gone (QEMU exited, the socket closed) or cannot be made.</summary>
public class GuestAgentException : IOException
{
    public GuestAgentException() : this("the guest agent connection failed") { }

    public GuestAgentException(string message) : base(message) { }

    public GuestAgentException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The peer sent something that is not the guest agent protocol; the connection is closed.</summary>
public class GuestAgentProtocolException : GuestAgentException
{
    public GuestAgentProtocolException() : this("guest agent protocol violation") { }

    public GuestAgentProtocolException(string message) : base(message) { }

    public GuestAgentProtocolException(string message, Exception? innerException) : base(message, innerException) { }
}

/// <summary>The guest could not start the command (ERROR frame): its one-line message, e.g.
/// "exec: foo: No such file or directory", and the exit code a shell would give (127 not found, 126 not executable).</summary>
public class GuestCommandException : Exception
{
    public GuestCommandException() : this("the guest could not start the command") { }

    public GuestCommandException(string message) : this(message, 126) { }

    public GuestCommandException(string message, Exception innerException) : base(message, innerException) => ExitCode = 126;

    public GuestCommandException(string message, int exitCode) : base(message) => ExitCode = exitCode;

    public int ExitCode { get; }
}
