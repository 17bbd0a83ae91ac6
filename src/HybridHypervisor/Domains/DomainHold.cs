using System.Net.Sockets;
using System.Text;

namespace HybridHypervisor.Domains;

/// <summary>
/// The host's end of a held boot (kernel command line <c>vserver.hold</c>): the domain's initramfs, once its kernel is
/// up and its modules are loaded, writes "ready" on the virtio-serial port <see cref="PortName"/> and waits there for
/// "go" before it takes the hostname, the address and the root. A promotion boots the domain this way while the
/// vserver it replaces still serves, and stops the vserver only once the domain is ready: the downtime is the stop
/// plus the guest's init, not the kernel's boot.
/// </summary>
public sealed class DomainHold : Guests.IDomainHold
{
    public const string PortName = "org.vserver.hold.0";

    private readonly Socket _socket;
    private readonly string _path;

    private DomainHold(Socket socket, string path)
    {
        _socket = socket;
        _path = path;
    }

    /// <summary>Connects to QEMU's chardev of the port (it exists once QEMU answers QMP).</summary>
    public static async Task<DomainHold> ConnectAsync(string socketPath, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
            return new DomainHold(socket, socketPath);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"connect to the hold port {socketPath}: {e.Message}", e);
        }
    }

    /// <summary>Waits until the initramfs says "ready" (it repeats it until a host reads it).</summary>
    public async Task WaitReadyAsync(TimeSpan timeout, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        var line = new StringBuilder();
        var buffer = new byte[64];
        try
        {
            while (true)
            {
                var n = await _socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
                if (n == 0) throw new IOException($"the hold port {_path} closed before the guest was ready (QEMU ended?)");
                foreach (var c in Encoding.ASCII.GetString(buffer, 0, n))
                {
                    if (c != '\n') { line.Append(c); continue; }
                    if (line.ToString() == "ready") return;
                    line.Clear();
                }
            }
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new TimeoutException($"the domain's initramfs did not say ready on {_path} within {timeout.TotalSeconds:0} s");
        }
    }

    /// <summary>Lets the initramfs go on: network, root, the guest's init.</summary>
    public async Task ReleaseAsync(CancellationToken ct)
    {
        try
        {
            await _socket.SendAsync("go\n"u8.ToArray(), SocketFlags.None, ct);
        }
        catch (SocketException e)
        {
            throw new IOException($"send go on the hold port {_path}: {e.Message}", e);
        }
    }

    public ValueTask DisposeAsync()
    {
        _socket.Dispose();
        return ValueTask.CompletedTask;
    }
}
