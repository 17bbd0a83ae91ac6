namespace HybridHypervisor.Guests;

/// <summary>
/// A command running inside a guest, whatever the guest's kind: in a vserver it is a `vsinit exec` child of the agent (<see cref="Vservers.VserverProcess"/>),
/// in a domain a process the guest agent runs on the far side of a virtio-serial port. The agent's exec session
/// pumps these streams and reports <see cref="ExitCode"/>; it never needs to know which one it has.
/// </summary>
public interface IGuestProcess : IDisposable
{
    /// <summary>The command's stdin; disposing it closes the command's stdin (end of file).</summary>
    Stream Stdin { get; }
    Stream Stdout { get; }
    /// <summary>Null with a terminal: stdout and stderr are both the terminal.</summary>
    Stream? Stderr { get; }
    /// <summary>Completes when the command ends, with a shell-style code (128+N when killed by signal N).</summary>
    Task<int> ExitCode { get; }
    bool HasExited => ExitCode.IsCompleted;
    /// <summary>How long a hung-up command and what it started have between SIGHUP and SIGKILL, as sshd and
    /// `incus exec` give a session whose client is gone.</summary>
    static TimeSpan HangupGrace => TimeSpan.FromSeconds(5);

    /// <summary>The client went away: SIGHUP (and SIGCONT) to every process of the command's session, as a closed
    /// terminal would, and SIGKILL to what is left of it after <see cref="HangupGrace"/>. <see cref="ExitCode"/>
    /// completes once the command has ended; what it started ends within the grace, the guest's other processes
    /// untouched.</summary>
    void Hangup();
    void Resize(int rows, int cols);
}
