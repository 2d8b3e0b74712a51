"""What a process costs, read from /proc: resident memory and CPU seconds (all threads)."""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    """VmRSS of `pid` in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of `pid`, the whole thread group, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (the whole thread group), in seconds."""
    return sum(cpu_times(pid))
