using System.Diagnostics;

namespace Vserver.Isolation.Cgroups;

internal static class CgroupWait
{
    /// <summary>Polls <paramref name="condition"/> with a short backoff; false when <paramref name="timeout"/> passed first.</summary>
    public static bool Until(Func<bool> condition, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        int delayMs = 1;
        while (true)
        {
            if (condition())
            {
                return true;
            }

            if (clock.Elapsed >= timeout)
            {
                return false;
            }

            Thread.Sleep(delayMs);
            delayMs = Math.Min(delayMs * 2, 50);
        }
    }

    public static string Describe(TimeSpan timeout) =>
        timeout.TotalSeconds >= 1 ? $"{timeout.TotalSeconds:0.#}s" : $"{timeout.TotalMilliseconds:0}ms";
}
