using HybridHypervisor.Model;
using Vserver.Api;
using Vserver.Isolation.Images;

namespace HybridHypervisor;

/// <summary>Images brought from elsewhere and written out: import from an archive stream, export to one.</summary>
public sealed partial class Fleet
{
    /// <summary>Longest <c>source</c> an import records (a path on the client's host), and longest OCI tag.</summary>
    private const int MaxSourceLength = 1024, MaxTagLength = 256;

    /// <summary>
    /// Makes image <paramref name="name"/> from the archive read from <paramref name="archive"/> (read synchronously, to
    /// its end, refused or not). <paramref name="source"/> is what the record says it came from; <paramref name="tag"/>
    /// picks an image of an OCI layout that holds several.
    /// </summary>
    public ImageInfo ImportImage(string name, Stream archive, string? source, string? tag)
    {
        if ((ImportTextError("source", source, MaxSourceLength) ?? ImportTextError("tag", tag, MaxTagLength)) is { } invalid)
        {
            Drain(archive);
            throw FleetException.Invalid(invalid);
        }
        try
        {
            var result = Images.Import(name, archive, new ImportOrigin(source is { Length: > 0 } ? source : "an upload", tag is { Length: > 0 } ? tag : null));
            var image = ImageInfoOf(result.Image) with { Notes = result.Notes };
            _log($"imported image {name} from {image.Source?.File} ({image.Source?.Format}, {image.Source?.ArchiveDigest}{(image.Source?.ManifestDigest is { } m ? ", manifest " + m : "")}), init {image.Init}");
            return image;
        }
        catch (ImageException e)
        {
            throw ImageRefusal(e);
        }
    }

    /// <summary>The compression an export's <c>compression</c> parameter names (none when not given).</summary>
    public static ArchiveCompression ExportCompression(string? compression)
    {
        if (compression is null or "") return ArchiveCompression.None;
        return ArchiveFormat.FromName(compression) ?? throw FleetException.Invalid(new SettingError("compression", compression, ErrorCodes.Reasons.Malformed,
            $"unknown compression '{compression}': give none, gzip, xz, zstd or bzip2"));
    }

    /// <summary>Refuses an export of an image that is not there before anything of it is written.</summary>
    public void RequireImage(string name)
    {
        if (Images.Find(name) is null)
            throw FleetException.Coded(FleetError.NotFound, ErrorCodes.NotFound, $"no image named '{name}'", ("image", name));
    }

    /// <summary>Writes image <paramref name="name"/> to <paramref name="output"/> as a tarball (synchronously).</summary>
    public void ExportImage(string name, Stream output, ArchiveCompression compression)
    {
        try
        {
            Images.Export(name, output, compression);
        }
        catch (ImageException e)
        {
            throw ImageRefusal(e);
        }
    }

    private static SettingError? ImportTextError(string field, string? text, int max)
    {
        if (text is null) return null;
        if (text.Length > max)
            return new SettingError(field, text[..64], ErrorCodes.Reasons.AboveMaximum, $"{field} is {text.Length} characters long; at most {max}").With("maximum", max);
        return text.Any(char.IsControl)
            ? new SettingError(field, text, ErrorCodes.Reasons.Malformed, $"{field} holds a control character; give plain text")
            : null;
    }

    private static void Drain(Stream stream)
    {
        var buffer = new byte[1 << 16];
        try
        {
            while (stream.Read(buffer, 0, buffer.Length) > 0)
            {
            }
        }
        catch (IOException)
        {
        }
    }

    /// <summary>An image as the API shows it: its source (an image built before sources were recorded came from the
    /// recipe of its name) and its init, looked at now.</summary>
    private static ImageInfo ImageInfoOf(ImageRecord image)
    {
        var source = image.Source ?? new ImageSource { Kind = ImageSource.Recipe, RecipeName = image.Name };
        var init = ImageInit.Detect(image.RootfsPath);
        return new ImageInfo
        {
            Name = image.Name, SizeBytes = image.SizeBytes, Created = image.Created, Digest = image.Digest,
            Source = new ImageSourceInfo
            {
                Kind = source.Kind, Recipe = source.RecipeName, File = source.File, Format = source.Format,
                ArchiveDigest = source.ArchiveDigest, ManifestDigest = source.ManifestDigest, Tag = source.Tag,
            },
            Init = init.Display,
            InitPath = init.Path,
        };
    }

    /// <summary>The image store's refusal with the code of its problem.</summary>
    private static FleetException ImageRefusal(ImageException e) => e.Problem switch
    {
        ImageProblem.Exists => FleetException.Coded(FleetError.Conflict, ErrorCodes.ImageExists, e.Message, ("image", e.Image)),
        ImageProblem.NotFound => FleetException.Coded(FleetError.NotFound, ErrorCodes.NotFound, e.Message, ("image", e.Image)),
        ImageProblem.BuildFailed or ImageProblem.DiskFull => new FleetException(FleetError.Failed, e.Message, e),
        ImageProblem.Busy => FleetException.Conflict(e.Message),
        ImageProblem.BadArchive when e.Entry is { } entry =>
            FleetException.Coded(FleetError.Invalid, ErrorCodes.BadArchive, e.Message, ("image", e.Image), ("reason", e.Reason ?? ""), ("entry", entry)),
        ImageProblem.BadArchive => FleetException.Coded(FleetError.Invalid, ErrorCodes.BadArchive, e.Message, ("image", e.Image), ("reason", e.Reason ?? "")),
        _ => FleetException.Invalid(e.Message),
    };
}
