namespace Vserver.Isolation.Storage;

/// <summary>A disk or layer image the host tools could not make, grow, mount or check; the message says which and why.</summary>
public sealed class DiskException(string message) : Exception(message);
