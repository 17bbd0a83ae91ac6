using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>
/// How the agent reads a request body: the contract's shapes (<see cref="ApiJson"/>), strictly. A field the contract
/// does not have, a field given twice, or null for a field that cannot be null is refused, not dropped: otherwise
/// <c>{"name":"j3","memory":"256M"}</c> makes a guest with no memory limit. <see cref="RequestBody"/> says why in
/// the agent's own words before the serializer sees the body; these options make the serializer refuse the same
/// things, should a body ever reach it another way.
/// </summary>
internal static class AgentJson
{
    public static void Configure(JsonSerializerOptions options)
    {
        options.TypeInfoResolverChain.Insert(0, ApiJson.Default);
        options.UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow;
        options.AllowDuplicateProperties = false;
        options.RespectNullableAnnotations = true;
        options.RespectRequiredConstructorParameters = true;
    }

    /// <summary>The options the agent reads requests with (the same as the HTTP pipeline's).</summary>
    public static JsonSerializerOptions Options { get; } = Create();

    public static JsonTypeInfo<T> TypeInfo<T>() => (JsonTypeInfo<T>)Options.GetTypeInfo(typeof(T));

    private static JsonSerializerOptions Create()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        Configure(options);
        options.MakeReadOnly();
        return options;
    }
}
