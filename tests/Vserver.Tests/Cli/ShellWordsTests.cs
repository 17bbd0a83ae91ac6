using Shouldly;
using Vserver.Cli;
using Xunit;

namespace Vserver.Tests.Cli;

public class ShellWordsTests
{
    [Theory]
    [InlineData("sleep 1000", new[] { "sleep", "1000" })]
    [InlineData("  /bin/httpd   -f\t-p 80  ", new[] { "/bin/httpd", "-f", "-p", "80" })]
    [InlineData("sh -c 'echo hello; sleep 5'", new[] { "sh", "-c", "echo hello; sleep 5" })]
    [InlineData("echo \"a b\" c", new[] { "echo", "a b", "c" })]
    [InlineData("echo \"say \\\"hi\\\"\"", new[] { "echo", "say \"hi\"" })]
    [InlineData("echo \"back\\\\slash\" \"keep\\n\"", new[] { "echo", "back\\slash", "keep\\n" })]
    [InlineData("echo a\\ b", new[] { "echo", "a b" })]
    [InlineData("echo '' \"\"", new[] { "echo", "", "" })]
    [InlineData("pre'quoted'\"mixed\"post", new[] { "prequotedmixedpost" })]
    [InlineData("echo 'it'\\''s'", new[] { "echo", "it's" })]
    [InlineData("sh -c 'echo $HOME | wc -c'", new[] { "sh", "-c", "echo $HOME | wc -c" })]
    [InlineData("", new string[0])]
    public void Splits_like_a_shell(string text, string[] expected) =>
        ShellWords.Split(text).ShouldBe(expected);

    [Theory]
    [InlineData("echo 'open", "unterminated single quote")]
    [InlineData("echo \"open", "unterminated double quote")]
    [InlineData("sleep 1; echo", "';' needs a shell")]
    [InlineData("cat a | wc", "'|' needs a shell")]
    [InlineData("echo $HOME", "'$' needs a shell")]
    [InlineData("echo \"$HOME\"", "'$' needs a shell")]
    [InlineData("run > log", "'>' needs a shell")]
    [InlineData("daemon &", "'&' needs a shell")]
    public void Refuses_what_needs_a_shell(string text, string message) =>
        Should.Throw<FormatException>(() => ShellWords.Split(text)).Message.ShouldContain(message);

    [Theory]
    [InlineData(new[] { "sleep", "1000" }, "sleep 1000")]
    [InlineData(new[] { "sh", "-c", "echo it's; sleep 5" }, "sh -c 'echo it'\\''s; sleep 5'")]
    [InlineData(new[] { "echo", "" }, "echo ''")]
    [InlineData(new[] { "/bin/httpd", "-p", "80", "--root=/var/www" }, "/bin/httpd -p 80 --root=/var/www")]
    public void Joins_for_display(string[] words, string expected) =>
        ShellWords.Join(words).ShouldBe(expected);

    [Theory]
    [InlineData("sh", "-c", "echo it's; sleep 5")]
    [InlineData("a b", "", "\"q\"", "back\\slash")]
    public void Join_then_split_round_trips(params string[] words) =>
        ShellWords.Split(ShellWords.Join(words)).ShouldBe(words);
}
