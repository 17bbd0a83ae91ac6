using HybridHypervisor.Guests;
using HybridHypervisor.Model;
using Vserver.Api;

namespace HybridHypervisor;

/// <summary>One guest of a plan checked whole: a create (with <see cref="Create"/>) or a guest that exists, and the host
/// ports the plan publishes for it.</summary>
public sealed record PlannedGuest(string Name, GuestSpec? Create, IReadOnlyList<PortInfo> Ports);

/// <summary>What the check says of one planned guest: the guest a create would make, or why it (or one of its ports)
/// would be refused.</summary>
public sealed record PlannedGuestCheck(string Name, GuestView? Would, FleetException? Refusal);

/// <summary>
/// A plan checked whole, as `vsctl apply --dry-run` asks (POST /v1/plans/check): each guest is checked as a create or
/// a port publication checks it, and sees what the guests before it in the plan would hold (names, addresses, host
/// ports, room in the memory pool), so that 260 servers in a /24 or two servers on one port are refused here, not
/// half-way through the apply. Nothing is made or claimed; the pool's reservations go when the check ends.
/// </summary>
public sealed partial class Fleet
{
    public IReadOnlyList<PlannedGuestCheck> CheckPlan(IReadOnlyList<PlannedGuest> plan)
    {
        var held = new List<GuestClaims>();
        var reservations = new List<IDisposable>();
        var results = new List<PlannedGuestCheck>();
        try
        {
            foreach (var guest in plan)
            {
                try
                {
                    GuestView? would = null;
                    GuestClaims claims;
                    if (guest.Create is { } spec)
                    {
                        if (spec.Name != guest.Name)
                            throw FleetException.Invalid($"planned guest '{guest.Name}' is created with the name '{spec.Name}'; give one name");
                        var draft = Draft(spec, held);
                        var config = draft with
                        {
                            Network = draft.Network with { Ipv4 = AllocateAddress(draft.Network.Ipv4, held).ToString() },
                            Phase = GuestPhase.Ready,
                        };
                        reservations.Add(Admit(config, "create", runningOnly: false));
                        would = new GuestView(config.Name, GuestState.Stopped, config, null, null, null, 0, null, null);
                        claims = GuestClaims.Of(config);
                    }
                    else
                    {
                        claims = new GuestClaims(guest.Name);
                        Find(guest.Name);
                    }
                    foreach (var port in guest.Ports)
                    {
                        var which = $"{port.HostPort}/{port.Protocol}";
                        if (held.FirstOrDefault(h => h.Ports.Contains(which, StringComparer.Ordinal)) is { } planned)
                            throw FleetException.Coded(FleetError.Conflict, ErrorCodes.PortTaken,
                                $"host port {which} is published for '{planned.Name}' earlier in the plan", ("port", which), ("owner", planned.Name));
                        if (PortRefusal(port, guest.Name) is { } refusal) throw refusal;
                    }
                    held.Add(claims with { Ports = [.. claims.Ports, .. guest.Ports.Select(p => $"{p.HostPort}/{p.Protocol}")] });
                    results.Add(new PlannedGuestCheck(guest.Name, would, null));
                }
                catch (FleetException e)
                {
                    results.Add(new PlannedGuestCheck(guest.Name, null, e));
                }
            }
        }
        finally
        {
            foreach (var reservation in reservations) reservation.Dispose();
        }
        return results;
    }
}
