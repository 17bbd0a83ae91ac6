using System.Text;

namespace Vserver.Cli;

/// <summary>
/// Splits a command line like a POSIX shell does for simple cases: whitespace separates words, single quotes keep
/// everything literally, double quotes keep everything except backslash escapes of <c>" \ $ `</c>, and a backslash
/// outside quotes escapes the next character. Anything that would need a real shell (pipes, redirections, variables,
/// command substitution, command lists) is refused so the operator is not surprised by a literal <c>;</c> or <c>$HOME</c>.
/// </summary>
internal static class ShellWords
{
    public static IReadOnlyList<string> Split(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var words = new List<string>();
        var word = new StringBuilder();
        var inWord = false;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            switch (c)
            {
                case ' ' or '\t' or '\n' or '\r':
                    if (inWord)
                    {
                        words.Add(word.ToString());
                        word.Clear();
                        inWord = false;
                    }
                    break;
                case '\'':
                    {
                        inWord = true;
                        var end = text.IndexOf('\'', i + 1);
                        if (end < 0) throw new FormatException("unterminated single quote");
                        word.Append(text, i + 1, end - i - 1);
                        i = end;
                        break;
                    }
                case '"':
                    inWord = true;
                    for (i++; ; i++)
                    {
                        if (i >= text.Length) throw new FormatException("unterminated double quote");
                        var d = text[i];
                        if (d == '"') break;
                        if (d == '\\' && i + 1 < text.Length && text[i + 1] is '"' or '\\' or '$' or '`' or '\n')
                        {
                            i++;
                            if (text[i] != '\n') word.Append(text[i]);
                        }
                        else if (d is '$' or '`')
                        {
                            throw NeedsShell(d);
                        }
                        else
                        {
                            word.Append(d);
                        }
                    }
                    break;
                case '\\':
                    inWord = true;
                    if (i + 1 < text.Length)
                    {
                        i++;
                        if (text[i] != '\n') word.Append(text[i]);
                    }
                    else
                    {
                        word.Append('\\');
                    }
                    break;
                case ';' or '|' or '&' or '<' or '>' or '(' or ')' or '$' or '`':
                    throw NeedsShell(c);
                default:
                    inWord = true;
                    word.Append(c);
                    break;
            }
        }
        if (inWord) words.Add(word.ToString());
        return words;
    }

    private static FormatException NeedsShell(char c) =>
        new($"'{c}' needs a shell; quote it, or run one: \"/bin/sh -c '...'\"");

    /// <summary>The inverse for display: words that need it are single-quoted, or in <c>$'...'</c> with escapes where a
    /// character is unsafe on a terminal (<see cref="Escaped.Name"/>).</summary>
    public static string Join(IEnumerable<string> words) => string.Join(' ', words.Select(Quote));

    public static string Quote(string word)
    {
        if (word.Length == 0) return "''";
        if (Escaped.NeedsEscape(word)) return Escaped.Name(word);
        foreach (var c in word)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.' or '/' or ',' or ':' or '=' or '@' or '%' or '+'))
                return "'" + word.Replace("'", "'\\''") + "'";
        }
        return word;
    }
}
