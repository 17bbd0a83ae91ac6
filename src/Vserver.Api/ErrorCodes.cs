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
    /// name in a path), <c>value</c> (as given), <c>reason</c> (one of <see cref="Reasons"/>), and where the reason has
    /// them <c>minimum</c>, <c>maximum</c> (in the field's unit: bytes for sizes).</summary>
    public const string InvalidValue = "invalid_value";

    /// <summary>A guest of that name exists. Fields: <c>name</c>.</summary>
    public const string NameTaken = "name_taken";

    /// <summary>Another guest has that address. Fields: <c>address</c>, <c>owner</c> (that guest's name).</summary>
    public const string AddressTaken = "address_taken";

    /// <summary>No guest of that name. Fields: <c>guest</c>.</summary>
    public const string NotFound = "not_found";

    /// <summary>The guest must run for this and does not. Fields: <c>guest</c>.</summary>
    public const string NotRunning = "not_running";

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
        /// <summary>Not among the values allowed here (a syscall the filter does not refuse).</summary>
        public const string NotAllowed = "not_allowed";
    }
}
