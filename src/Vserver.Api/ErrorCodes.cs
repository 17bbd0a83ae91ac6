namespace Vserver.Api;

/// <summary>
/// The closed set of codes an error from the agent carries in <see cref="ErrorResponse.Code"/>, with the fields each
/// one has in <see cref="ErrorResponse.Fields"/> (all values strings). A client that knows a code can say what to do
/// about it in its own terms (vsctl names its flags); one that does not shows <see cref="ErrorResponse.Error"/>.
/// </summary>
public static class ErrorCodes
{
    /// <summary>A setting given for a kind of guest that does not have it. Fields: <c>option</c> (the
    /// <see cref="GuestSpec"/> field, e.g. "vcpus"), <c>kind</c> (the guest's kind: vserver or domain).</summary>
    public const string OptionNotForKind = "option_not_for_kind";

    /// <summary>A value the agent refuses. Fields: <c>field</c> (the <see cref="GuestSpec"/> field, or "name" for a
    /// name in a path; for a request's shape, the JSON path of the field, e.g. <c>command[1]</c>, or the query parameter), <c>value</c> (as given), <c>reason</c> (one of <see cref="Reasons"/>), and where the reason has
    /// them <c>minimum</c>, <c>maximum</c> (in the field's unit: bytes for sizes).</summary>
    public const string InvalidValue = "invalid_value";

    /// <summary>A guest of that name exists. Fields: <c>name</c>.</summary>
    public const string NameTaken = "name_taken";

    /// <summary>Another guest has that address. Fields: <c>address</c>, <c>owner</c> (that guest's name).</summary>
    public const string AddressTaken = "address_taken";

    /// <summary>No guest, image or published port of that name. Fields: <c>guest</c> for a guest, <c>image</c> for an
    /// image; <c>guest</c>, <c>port</c> and <c>protocol</c> for a host port the guest does not publish.</summary>
    public const string NotFound = "not_found";

    /// <summary>The guest must run for this and does not. Fields: <c>guest</c>.</summary>
    public const string NotRunning = "not_running";

    /// <summary>The guest runs (or is paused) and must be stopped for this. Fields: <c>guest</c>, <c>state</c>
    /// (running or paused), <c>operation</c> (start or destroy).</summary>
    public const string AlreadyRunning = "already_running";

    /// <summary>The guest is paused and must be resumed for this. Fields: <c>guest</c>.</summary>
    public const string Paused = "paused";

    /// <summary>The agent could not take the guest over (its files are damaged or missing); it can only be removed.
    /// Fields: <c>guest</c>, <c>problem</c> (what is wrong, in plain words).</summary>
    public const string Broken = "broken";

    /// <summary>An image a guest or a save file needs is not built on this host. Fields: <c>image</c>, and
    /// <c>guest</c> where a guest needs it.</summary>
    public const string ImageMissing = "image_missing";

    /// <summary>An image of that name is built already (images are never rebuilt in place). Fields: <c>image</c>.</summary>
    public const string ImageExists = "image_exists";

    /// <summary>An image import refused its archive; nothing was kept. Fields: <c>image</c>, <c>reason</c> (truncated,
    /// corrupt, unsafe_path, device_node, unsupported, unknown_format, no_platform), and <c>entry</c> (the archive
    /// member at fault) where one is.</summary>
    public const string BadArchive = "bad_archive";

    /// <summary>A domain kernel that is not built on this host. Fields: <c>kernel</c>, <c>built</c> (those that are,
    /// comma-separated).</summary>
    public const string KernelMissing = "kernel_missing";

    /// <summary>A domain kernel built before what the operation needs of it existed (a held boot for a promotion).
    /// Fields: <c>kernel</c>, <c>feature</c>.</summary>
    public const string KernelOutdated = "kernel_outdated";

    /// <summary>A kernel of that name is built already. Fields: <c>kernel</c>.</summary>
    public const string KernelExists = "kernel_exists";

    /// <summary>The guest is a domain already (a promotion of a domain). Fields: <c>guest</c>.</summary>
    public const string AlreadyDomain = "already_domain";

    /// <summary>The guest is a vserver already (a demotion of a vserver). Fields: <c>guest</c>.</summary>
    public const string AlreadyVserver = "already_vserver";

    /// <summary>The operation is for domains and the guest is a vserver. Fields: <c>guest</c>, <c>operation</c>
    /// (console or save).</summary>
    public const string NotADomain = "not_a_domain";

    /// <summary>The domain's console has a client attached already (one at a time). Fields: <c>guest</c>.</summary>
    public const string ConsoleBusy = "console_busy";

    /// <summary>A domain's guest agent does not answer, so nothing can run in it. Fields: <c>guest</c>.</summary>
    public const string GuestAgentSilent = "guest_agent_silent";

    /// <summary>The host port is published already. Fields: <c>port</c> (e.g. 8080/tcp), <c>owner</c> (the guest
    /// that publishes it), and where the owner is the guest asked about <c>guestPort</c> (its port there).</summary>
    public const string PortTaken = "port_taken";

    /// <summary>The guest's memory does not fit the pool. Fields: <c>guest</c>, <c>bound</c> (guarantees: the
    /// guarantees would exceed the capacity; limits: the limits would exceed capacity x overcommit), <c>asked</c>,
    /// <c>committed</c> (what the others hold of that bound), <c>available</c> (the bound: capacity or limits cap), all
    /// in bytes.</summary>
    public const string PoolFull = "pool_full";

    /// <summary>The pool's new settings would not hold what guests have now. Fields: <c>bound</c> (guarantees or
    /// limits, as in <see cref="PoolFull"/>), <c>committed</c>, <c>available</c> (in bytes).</summary>
    public const string PoolTooSmall = "pool_too_small";

    /// <summary>The vserver has no disk quota to change (its writable layer is a directory). Fields: <c>guest</c>.</summary>
    public const string NoDiskQuota = "no_disk_quota";

    /// <summary>The vserver's disk quota image is gone, and its writable layer with it. Fields: <c>guest</c>,
    /// <c>path</c>.</summary>
    public const string LayerMissing = "layer_missing";

    /// <summary>The file to restore is not a save file. Fields: <c>file</c>.</summary>
    public const string NotASaveFile = "not_a_save_file";

    /// <summary>Saving a domain failed after it stopped; it is stopped with its disk intact. Fields: <c>guest</c>,
    /// <c>file</c>.</summary>
    public const string SaveFailed = "save_failed";

    /// <summary>Any other refusal of a request (HTTP 400), without fields.</summary>
    public const string Invalid = "invalid";

    /// <summary>Any other refusal because of the state of the host or a guest (HTTP 409), without fields.</summary>
    public const string Conflict = "conflict";

    /// <summary>The operation was tried and failed (HTTP 500), without fields.</summary>
    public const string Failed = "failed";

    /// <summary>The request itself was unreadable: no such route, wrong method, no or bad JSON, too large.</summary>
    public const string BadRequest = "bad_request";

    /// <summary>The <c>reason</c> of an <see cref="InvalidValue"/>.</summary>
    public static class Reasons
    {
        /// <summary>Not of the value's form (a name that is no DNS label, an address that is no A.B.C.D, a kind or
        /// restart policy that does not exist).</summary>
        public const string Malformed = "malformed";
        /// <summary>Below <c>minimum</c>.</summary>
        public const string BelowMinimum = "below_minimum";
        /// <summary>Above <c>maximum</c>.</summary>
        public const string AboveMaximum = "above_maximum";
        /// <summary>Outside <c>minimum</c>..<c>maximum</c> (either may be absent).</summary>
        public const string OutOfRange = "out_of_range";
        /// <summary>A size that is not a whole number of MiB.</summary>
        public const string NotWholeMib = "not_whole_mib";
        /// <summary>A guarantee above what the guest may use (<c>maximum</c>), or a target below its guarantee
        /// (<c>minimum</c>).</summary>
        public const string AgainstGuarantee = "against_guarantee";
        /// <summary>An address outside the host's guest subnet (<c>subnet</c>).</summary>
        public const string OutsideSubnet = "outside_subnet";
        /// <summary>The subnet's network, gateway or broadcast address.</summary>
        public const string ReservedAddress = "reserved_address";
        /// <summary>An image or kernel that is not built on the host (<c>built</c>: those that are, comma-separated).</summary>
        public const string NotBuilt = "not_built";
        /// <summary>A disk quota too small for the image's files (<c>minimum</c>: the smallest that fits).</summary>
        public const string TooSmallForImage = "too_small_for_image";
        /// <summary>Empty where something is needed (a command, a program).</summary>
        public const string Empty = "empty";
        /// <summary>Above what a running domain booted with (<c>maximum</c>; <c>guest</c>): only a stopped one's maximum
        /// changes.</summary>
        public const string AboveBootMaximum = "above_boot_maximum";
        /// <summary>Not among the values allowed here (a syscall the filter does not refuse).</summary>
        public const string NotAllowed = "not_allowed";
        /// <summary>A field (or query parameter) the request does not have: misspelled, or of another request.</summary>
        public const string UnknownField = "unknown_field";
        /// <summary>A field (or query parameter) given more than once.</summary>
        public const string Duplicate = "duplicate";
        /// <summary>A field the request needs and did not give.</summary>
        public const string Missing = "missing";
        /// <summary>A range that shares addresses with something else (<c>with</c>: what).</summary>
        public const string Overlaps = "overlaps";
        /// <summary>Held by guests (<c>guests</c>: which, comma-separated), so it cannot change now.</summary>
        public const string InUse = "in_use";
        /// <summary>Something on the host it names does not exist or cannot serve (an interface).</summary>
        public const string NotOnHost = "not_on_host";
    }
}
