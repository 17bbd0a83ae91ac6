using System.Globalization;
using System.Text;

namespace Vserver.Cli;

/// <summary>
/// How vsctl prints a string it did not write itself (a guest's name, a path, a problem, the agent's error line): a
/// directory under the state root or a request can carry an escape sequence or a newline, and printed raw it would
/// drive the operator's terminal or forge lines of output. Control characters (C0, DEL, C1), invisible formatting
/// characters (bidirectional overrides, zero-width ones), line and paragraph separators and lone surrogates are written
/// as escapes: <c>\n</c>, <c>\r</c>, <c>\t</c>, <c>\xNN</c> (below 0x80), <c>\uNNNN</c>.
/// </summary>
internal static class Escaped
{
    /// <summary>Free text (a message, a reason) with what is unsafe escaped; nothing is quoted, printable text stays as it is.</summary>
    public static string Text(string? text)
    {
        if (string.IsNullOrEmpty(text) || !NeedsEscape(text)) return text ?? "";
        var escaped = new StringBuilder(text.Length + 16);
        Append(escaped, text, quote: null);
        return escaped.ToString();
    }

    /// <summary>
    /// A name as a word the operator can type back: as it is when it is plain, single-quoted when it has a space or a
    /// shell character, and in bash's <c>$'...'</c> form with escapes when it has a character that is unsafe on a
    /// terminal (as GNU ls shows such a name). Advice that names it (<c>vsctl destroy --force NAME</c>) then works when
    /// pasted.
    /// </summary>
    public static string Name(string? name)
    {
        if (string.IsNullOrEmpty(name)) return "''";
        if (!NeedsEscape(name)) return ShellWords.Quote(name);
        var quoted = new StringBuilder(name.Length + 16).Append("$'");
        Append(quoted, name, quote: '\'');
        return quoted.Append('\'').ToString();
    }

    /// <summary>Whether a character of <paramref name="text"/> must not reach a terminal as it is.</summary>
    public static bool NeedsEscape(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsSurrogatePair(text, i))
            {
                i++;
                continue;
            }
            if (IsUnsafe(text[i])) return true;
        }
        return false;
    }

    /// <summary>Whether one UTF-16 unit is unsafe on a terminal by itself (a surrogate is, unless in a pair).</summary>
    public static bool IsUnsafe(char c) =>
        char.IsControl(c) || char.IsSurrogate(c) || char.GetUnicodeCategory(c) is UnicodeCategory.Format
            or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator;

    /// <summary>Appends <paramref name="text"/> escaped; inside <c>$'...'</c> (<paramref name="quote"/> given) the
    /// backslash and the quote are escaped too, so that bash reads back the same string.</summary>
    private static void Append(StringBuilder to, string text, char? quote)
    {
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsSurrogatePair(text, i))
            {
                to.Append(c).Append(text[++i]);
                continue;
            }
            if (quote is not null && (c == '\\' || c == quote))
            {
                to.Append('\\').Append(c);
                continue;
            }
            if (!IsUnsafe(c))
            {
                to.Append(c);
                continue;
            }
            to.Append(c switch
            {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                // \x only below 0x80: bash's $'\x85' is the byte, not the character U+0085.
                < '\u0080' => "\\x" + ((int)c).ToString("x2", CultureInfo.InvariantCulture),
                _ => "\\u" + ((int)c).ToString("x4", CultureInfo.InvariantCulture),
            });
        }
    }
}
