using System.Text;

namespace Vserver.Cli;

/// <summary>Left-aligned columns separated by three spaces; empty cells print as <c>-</c>; no trailing blanks. A cell's
/// control characters are escaped (<see cref="Escaped.Text"/>): one row stays one line, and the terminal is not driven.</summary>
internal static class TextTable
{
    public const string Gap = "   ";

    public static void Write(TextWriter output, IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string?>> rows)
    {
        var cells = new List<string[]> { headers.ToArray() };
        foreach (var row in rows)
        {
            var line = new string[headers.Count];
            for (var i = 0; i < line.Length; i++)
                line[i] = i < row.Count && !string.IsNullOrEmpty(row[i]) ? Escaped.Text(row[i]) : "-";
            cells.Add(line);
        }
        var widths = new int[headers.Count];
        foreach (var line in cells)
        {
            for (var i = 0; i < widths.Length; i++) widths[i] = Math.Max(widths[i], line[i].Length);
        }
        var text = new StringBuilder();
        foreach (var line in cells)
        {
            text.Clear();
            for (var i = 0; i < line.Length; i++)
            {
                if (i > 0) text.Append(Gap);
                text.Append(line[i]);
                if (i < line.Length - 1) text.Append(' ', widths[i] - line[i].Length);
            }
            output.WriteLine(text.ToString().TrimEnd());
        }
    }
}
