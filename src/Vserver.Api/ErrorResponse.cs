namespace Vserver.Api;

/// <summary>Every error the agent answers: <c>{"error": "...", "code": "...", "fields": {...}}</c>. <see cref="Error"/>
/// is one plain line for a person (older clients read only it); <see cref="Code"/> and <see cref="Fields"/> say the same
/// for a program (see <see cref="ErrorCodes"/>).</summary>
public sealed record ErrorResponse
{
    public required string Error { get; init; }
    /// <summary>One of <see cref="ErrorCodes"/>; null from an agent older than the codes.</summary>
    public string? Code { get; init; }
    public IReadOnlyDictionary<string, string>? Fields { get; init; }
}
