namespace HybridHypervisor.Domains.Qmp;

/// <summary>QEMU answered a command with an error reply: <c>{"error": {"class": ..., "desc": ...}, "id": ...}</c>.
/// The message reads "QMP query-status failed: GenericError: ...".</summary>
public class QmpException : Exception
{
    public QmpException() : this("QMP command failed") { }

    public QmpException(string message) : base(message) { }

    public QmpException(string message, Exception innerException) : base(message, innerException) { }

    public QmpException(string command, string errorClass, string description)
        : base($"QMP {command} failed: {errorClass}: {description}")
    {
        Command = command;
        ErrorClass = errorClass;
        Description = description;
    }

    /// <summary>The command that failed (e.g. "query-balloon").</summary>
    public string? Command { get; }

    /// <summary>QEMU's error class: "GenericError", "CommandNotFound", "DeviceNotActive", "DeviceNotFound", "KVMMissingCap".</summary>
    public string? ErrorClass { get; }

    /// <summary>QEMU's human-readable description.</summary>
    public string? Description { get; }
}

/// <summary>The QMP connection is gone (QEMU exited, was killed, closed the socket, sent something that is not QMP,
/// or the client was disposed) while a command was in flight, or a command was issued after that.</summary>
public class QmpConnectionClosedException : IOException
{
    public QmpConnectionClosedException() : this("QEMU's QMP connection is closed") { }

    public QmpConnectionClosedException(string message) : base(message) { }

    public QmpConnectionClosedException(string message, Exception? innerException) : base(message, innerException) { }

    /// <summary>The command that was waiting (or was about to be sent), if any.</summary>
    public string? Command { get; init; }
}

/// <summary>The peer does not speak QMP: no greeting, a malformed greeting, a line that is not a JSON object.</summary>
public class QmpProtocolException : IOException
{
    public QmpProtocolException() : this("QMP protocol violation") { }

    public QmpProtocolException(string message) : base(message) { }

    public QmpProtocolException(string message, Exception? innerException) : base(message, innerException) { }
}
