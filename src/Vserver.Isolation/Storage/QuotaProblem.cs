namespace Vserver.Isolation.Storage;

/// <summary>The rule of <see cref="LayerImage.QuotaMessage"/> a disk quota breaks.</summary>
public enum QuotaProblem { BelowMinimum, AboveMaximum, NotWholeMib }
