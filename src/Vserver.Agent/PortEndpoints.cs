using System.Globalization;
using HybridHypervisor;
using HybridHypervisor.Model;
using Vserver.Api;

namespace Vserver.Agent;

/// <summary>Published ports: GET /v1/ports and /v1/guests/{name}/ports answer a <see cref="PortList"/>; POST
/// /v1/guests/{name}/ports (a <see cref="PortInfo"/>) and DELETE /v1/guests/{name}/ports/{hostPort}/{protocol} answer the
/// guest as it is now.</summary>
internal static class PortEndpoints
{
    public static void Map(RouteGroupBuilder v1, Fleet fleet)
    {
        v1.MapGet("/ports", () => ToList(fleet, fleet.Ports()));
        v1.MapGet("/guests/{name}/ports", (string name) => ToList(fleet, fleet.Ports(name)));
        v1.MapPost("/guests/{name}/ports", async (string name, PortInfo request, CancellationToken ct) =>
        {
            var view = await fleet.PublishPortAsync(name, PublishedPorts.AsRecorded(request), ct);
            return Results.Created($"/v1/guests/{name}/ports", ContractMapping.ToInfo(view));
        });
        v1.MapDelete("/guests/{name}/ports/{hostPort}/{protocol}", async (string name, string hostPort, string protocol, CancellationToken ct) =>
        {
            if (!int.TryParse(hostPort, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number is < 1 or > 65535)
                throw FleetException.Invalid($"invalid host port '{hostPort}': give a port from 1 to 65535");
            return ContractMapping.ToInfo(await fleet.UnpublishPortAsync(name, number, PublishedPorts.ParseProtocol(protocol), ct));
        });
    }

    private static PortList ToList(Fleet fleet, IReadOnlyList<GuestPortsView> views) => new()
    {
        Guests = views.Select(v => new GuestPorts { Name = v.Guest, Ipv4 = v.Ipv4, Ports = v.Ports }).ToList(),
        Notes = fleet.PortNotes(),
    };
}
