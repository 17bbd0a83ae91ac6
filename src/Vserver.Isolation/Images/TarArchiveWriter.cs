using System.Globalization;
using System.Text;

namespace Vserver.Isolation.Images;

/// <summary>
/// Writes a tar archive that <see cref="TarArchiveReader"/>, GNU tar and Go's archive/tar read: ustar headers, with a
/// pax record for whatever ustar cannot hold (a long name or link, a large id or size, an extended attribute as raw
/// bytes), then the end-of-archive marker.
/// </summary>
public sealed class TarArchiveWriter(Stream output)
{
    private const int Block = 512;
    private const long MaxOctal7 = 0x1FFFFF, MaxOctal11 = 0x1FFFFFFFF;
    private readonly byte[] _zeros = new byte[Block];

    /// <summary>Writes one entry; a regular file's <paramref name="data"/> must give exactly its size.</summary>
    public void Write(TarArchiveEntry entry, Stream? data)
    {
        var pax = new List<(string Key, byte[] Value)>();
        var name = Encoding.UTF8.GetBytes(entry.Name);
        var (prefix, shortName) = Split(name);
        if (shortName is null) pax.Add(("path", name));
        var link = Encoding.UTF8.GetBytes(entry.LinkName);
        if (link.Length > 100) pax.Add(("linkpath", link));
        if (entry.Uid > MaxOctal7) pax.Add(("uid", Ascii(entry.Uid)));
        if (entry.Gid > MaxOctal7) pax.Add(("gid", Ascii(entry.Gid)));
        if (entry.Size > MaxOctal11) pax.Add(("size", Ascii(entry.Size)));
        if (entry.MtimeSeconds is < 0 or > MaxOctal11) pax.Add(("mtime", Ascii(entry.MtimeSeconds)));
        foreach (var (attribute, value) in entry.Xattrs.OrderBy(x => x.Key, StringComparer.Ordinal)) pax.Add(("SCHILY.xattr." + attribute, value));
        if (pax.Count > 0)
        {
            var records = PaxRecords(pax);
            var paxName = Encoding.UTF8.GetBytes("PaxHeaders/" + Path.GetFileName(entry.Name.TrimEnd('/')));
            WriteHeader(Header(paxName.Length > 100 ? paxName[..100] : paxName, [], 'x', 0x1A4 /* 0644 */, 0, 0, records.Length, 0, [], 0, 0));
            output.Write(records);
            Pad(records.Length);
        }
        var type = entry.Kind switch
        {
            TarEntryKind.File => '0',
            TarEntryKind.HardLink => '1',
            TarEntryKind.Symlink => '2',
            TarEntryKind.CharDevice => '3',
            TarEntryKind.BlockDevice => '4',
            TarEntryKind.Directory => '5',
            TarEntryKind.Fifo => '6',
            _ => throw new ArgumentOutOfRangeException(nameof(entry)),
        };
        var size = entry.Kind == TarEntryKind.File ? entry.Size : 0;
        WriteHeader(Header(shortName ?? name[..Math.Min(100, name.Length)], shortName is null ? [] : prefix, type, entry.Mode,
            Math.Min(entry.Uid, MaxOctal7), Math.Min(entry.Gid, MaxOctal7), Math.Min(size, MaxOctal11), Math.Clamp(entry.MtimeSeconds, 0, MaxOctal11),
            link.Length > 100 ? link[..100] : link, entry.DevMajor, entry.DevMinor));
        if (size == 0) return;
        var buffer = new byte[1 << 16];
        var left = size;
        while (left > 0)
        {
            var n = data!.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (n == 0) throw new IOException($"{entry.Name} became shorter while it was written out ({size - left} of {size} bytes)");
            output.Write(buffer, 0, n);
            left -= n;
        }
        Pad(size);
    }

    /// <summary>The end-of-archive marker: two zero blocks.</summary>
    public void Finish()
    {
        output.Write(_zeros);
        output.Write(_zeros);
        output.Flush();
    }

    /// <summary>A name that fits ustar's 100 bytes, or its 155-byte prefix and 100-byte rest split at a '/'; (_, null)
    /// when it fits neither way.</summary>
    private static (byte[] Prefix, byte[]? Name) Split(byte[] name)
    {
        if (name.Length <= 100) return ([], name);
        for (var i = Math.Min(name.Length - 1, 155); i > 0; i--)
            if (name[i] == (byte)'/' && name.Length - i - 1 <= 100 && name.Length - i - 1 > 0) return (name[..i], name[(i + 1)..]);
        return ([], null);
    }

    private static byte[] Ascii(long value) => Encoding.ASCII.GetBytes(value.ToString(CultureInfo.InvariantCulture));

    /// <summary>pax records: "LENGTH KEY=VALUE\n", where LENGTH counts its own digits too.</summary>
    private static byte[] PaxRecords(List<(string Key, byte[] Value)> records)
    {
        using var result = new MemoryStream();
        foreach (var (key, value) in records)
        {
            var body = Encoding.UTF8.GetByteCount(key) + value.Length + 3; // ' ', '=', '\n'
            var length = body + body.ToString(CultureInfo.InvariantCulture).Length;
            if (length.ToString(CultureInfo.InvariantCulture).Length != (length - body)) length++;
            result.Write(Encoding.ASCII.GetBytes($"{length} "));
            result.Write(Encoding.UTF8.GetBytes(key + "="));
            result.Write(value);
            result.WriteByte((byte)'\n');
        }
        return result.ToArray();
    }

    private static byte[] Header(byte[] name, byte[] prefix, char type, uint mode, long uid, long gid, long size, long mtime, byte[] link,
        uint devMajor, uint devMinor)
    {
        var header = new byte[Block];
        name.CopyTo(header, 0);
        Octal(header, 100, 8, mode & 0xFFF);
        Octal(header, 108, 8, uid);
        Octal(header, 116, 8, gid);
        Octal(header, 124, 12, size);
        Octal(header, 136, 12, mtime);
        header[156] = (byte)type;
        link.CopyTo(header, 157);
        "ustar\u000000"u8.CopyTo(header.AsSpan(257));
        if (type is '3' or '4')
        {
            Octal(header, 329, 8, Math.Min(devMajor, MaxOctal7));
            Octal(header, 337, 8, Math.Min(devMinor, MaxOctal7));
        }
        prefix.CopyTo(header, 345);
        header.AsSpan(148, 8).Fill((byte)' ');
        long sum = 0;
        foreach (var b in header) sum += b;
        Octal(header, 148, 7, sum);
        return header;
    }

    /// <summary>An octal number in a field of <paramref name="length"/> bytes: zero-padded digits and a NUL.</summary>
    private static void Octal(byte[] header, int offset, int length, long value)
    {
        var digits = Convert.ToString(value, 8).PadLeft(length - 1, '0');
        Encoding.ASCII.GetBytes(digits, 0, length - 1, header, offset);
        header[offset + length - 1] = 0;
    }

    private void WriteHeader(byte[] header) => output.Write(header);

    private void Pad(long size)
    {
        var rest = (int)(size % Block);
        if (rest != 0) output.Write(_zeros, 0, Block - rest);
    }
}
