using System.Net;

namespace Vserver.Api;

/// <summary>The agent answered with an error: its message is plain words for a person; <see cref="Code"/> and
/// <see cref="Fields"/> say the same for a program (see <see cref="ErrorCodes"/>).</summary>
public sealed class ApiException(HttpStatusCode status, string message, string? code = null, IReadOnlyDictionary<string, string>? fields = null)
    : Exception(message)
{
    public HttpStatusCode Status { get; } = status;
    /// <summary>One of <see cref="ErrorCodes"/>; null when the agent sent none.</summary>
    public string? Code { get; } = code;
    public IReadOnlyDictionary<string, string> Fields { get; } = fields ?? new Dictionary<string, string>();

    /// <summary>A field of the error, or null.</summary>
    public string? Field(string key) => Fields.TryGetValue(key, out var value) ? value : null;
}
