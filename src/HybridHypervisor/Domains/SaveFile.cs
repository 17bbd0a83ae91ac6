using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using HybridHypervisor.Model;

namespace HybridHypervisor.Domains;

/// <summary>What a save file says about the domain in it.</summary>
public sealed record SaveHeader
{
    public required GuestConfig Config { get; init; }
    /// <summary>The accelerator the state was saved under: QEMU restores TCG state only under TCG, KVM only under KVM.</summary>
    public required AcceleratorKind Accelerator { get; init; }
    public DateTimeOffset SavedAt { get; init; }
}

/// <summary>Where the parts of a save file are.</summary>
public sealed record SaveLayout(SaveHeader Header, long MigrationOffset, long MigrationLength, long DiskOffset, long DiskLength);

/// <summary>
/// A saved domain in one self-contained file (as `xl save` writes one): a text header, QEMU's migration stream (the
/// memory and device state, written by QEMU itself through `migrate exec:`), the domain's disk overlay as it was at
/// that moment (the shared base disk stays with its image), and a fixed footer locating the parts:
/// <code>
/// VSERVER-SAVE 1\n
/// {"config": ..., "accelerator": "tcg", "savedAt": ...}\n
/// &lt;migration stream&gt; &lt;disk overlay&gt;
/// VSSAVE01 u64 migrationOffset u64 migrationLength u64 diskOffset u64 diskLength (little-endian)
/// </code>
/// </summary>
public static class SaveFile
{
    public const string Magic = "VSERVER-SAVE 1";
    private static readonly byte[] FooterMagic = "VSSAVE01"u8.ToArray();
    public const int FooterLength = 8 + 4 * 8;

    /// <summary>Writes the header of a new save file; returns where the migration stream starts.</summary>
    public static long WriteHeader(string path, SaveHeader header)
    {
        var json = JsonSerializer.Serialize(header, CompactJson.Default.SaveHeader);
        var bytes = Encoding.UTF8.GetBytes($"{Magic}\n{json}\n");
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        file.Write(bytes);
        return bytes.Length;
    }

    /// <summary>Appends the disk overlay and the footer once QEMU has written its stream, and makes the file durable.</summary>
    public static void Finish(string path, long migrationOffset, string diskPath)
    {
        using var file = new FileStream(path, FileMode.Append, FileAccess.Write);
        var diskOffset = file.Length;
        using (var disk = File.OpenRead(diskPath)) disk.CopyTo(file);
        var diskLength = file.Length - diskOffset;
        var footer = new byte[FooterLength];
        FooterMagic.CopyTo(footer, 0);
        BinaryPrimitives.WriteInt64LittleEndian(footer.AsSpan(8), migrationOffset);
        BinaryPrimitives.WriteInt64LittleEndian(footer.AsSpan(16), diskOffset - migrationOffset);
        BinaryPrimitives.WriteInt64LittleEndian(footer.AsSpan(24), diskOffset);
        BinaryPrimitives.WriteInt64LittleEndian(footer.AsSpan(32), diskLength);
        file.Write(footer);
        file.Flush(flushToDisk: true);
    }

    /// <summary>Reads and checks a save file's header and footer; every refusal is one line naming the file.</summary>
    public static SaveLayout Read(string path)
    {
        if (!File.Exists(path)) throw FleetException.NotFound($"save file {path} does not exist");
        using var file = File.OpenRead(path);
        var length = file.Length;
        var notOne = FleetException.Coded(FleetError.Invalid, Vserver.Api.ErrorCodes.NotASaveFile,
            $"{path} is not a vserver save file (it does not start with \"{Magic}\")", ("file", path));
        var head = new byte[Math.Min(length, 64 * 1024)];
        file.ReadExactly(head);
        var firstNewline = Array.IndexOf(head, (byte)'\n');
        if (firstNewline < 0 || Encoding.ASCII.GetString(head, 0, firstNewline) != Magic) throw notOne;
        var secondNewline = Array.IndexOf(head, (byte)'\n', firstNewline + 1);
        if (secondNewline < 0) throw FleetException.Invalid($"{path}: the save file's header is cut off; the file is damaged");
        SaveHeader? header;
        try
        {
            header = JsonSerializer.Deserialize(head.AsSpan(firstNewline + 1, secondNewline - firstNewline - 1), CompactJson.Default.SaveHeader);
        }
        catch (JsonException e)
        {
            throw FleetException.Invalid($"{path}: the save file's header is not valid ({e.Message.Split(". Path:")[0]}); the file is damaged");
        }
        if (header?.Config is null) throw FleetException.Invalid($"{path}: the save file's header names no domain; the file is damaged");
        var incomplete = $"{path} is incomplete (no end marker): the save did not finish or the file was cut; it cannot be restored";
        if (length < secondNewline + 1 + FooterLength) throw FleetException.Invalid(incomplete);
        var footer = new byte[FooterLength];
        file.Seek(-FooterLength, SeekOrigin.End);
        file.ReadExactly(footer);
        if (!footer.AsSpan(0, 8).SequenceEqual(FooterMagic)) throw FleetException.Invalid(incomplete);
        var layout = new SaveLayout(header,
            BinaryPrimitives.ReadInt64LittleEndian(footer.AsSpan(8)), BinaryPrimitives.ReadInt64LittleEndian(footer.AsSpan(16)),
            BinaryPrimitives.ReadInt64LittleEndian(footer.AsSpan(24)), BinaryPrimitives.ReadInt64LittleEndian(footer.AsSpan(32)));
        if (layout.MigrationOffset != secondNewline + 1 || layout.MigrationLength <= 0
            || layout.DiskOffset != layout.MigrationOffset + layout.MigrationLength || layout.DiskLength <= 0
            || layout.DiskOffset + layout.DiskLength + FooterLength != length)
            throw FleetException.Invalid($"{path}: the save file's parts do not add up to its size; the file is damaged");
        return layout;
    }

    /// <summary>Copies the saved disk overlay out of the file.</summary>
    public static void ExtractDisk(string path, SaveLayout layout, string diskPath)
    {
        using var source = File.OpenRead(path);
        source.Seek(layout.DiskOffset, SeekOrigin.Begin);
        using var target = new FileStream(diskPath, FileMode.CreateNew, FileAccess.Write);
        var buffer = new byte[1 << 20];
        var left = layout.DiskLength;
        while (left > 0)
        {
            var n = source.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (n == 0) throw new EndOfStreamException($"{path} ends inside the saved disk");
            target.Write(buffer, 0, n);
            left -= n;
        }
        target.Flush(flushToDisk: true);
    }

    /// <summary>QEMU's -incoming source: the migration stream's bytes of the file, read by a shell pipeline.</summary>
    public static string IncomingUri(string path, SaveLayout layout) =>
        $"exec:tail -c +{layout.MigrationOffset + 1} {Qmp.QmpMigrationUri.ShellQuote(path)} | head -c {layout.MigrationLength}";
}
