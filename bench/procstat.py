"""What a process costs, read from /proc: resident memory and CPU seconds (all threads)."""

from __future__ import annotations

import os
from pathlib import Path

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


def sleeps(pid: int) -> int:
    """How many times `pid`'s threads have slept on something so far (voluntary context switches):
    each is a wakeup later, which costs ~190 us of CPU on this machine (docs/performance.md)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def cpu_seconds_fine(pid: int) -> float:
    """CPU seconds of `pid`'s live threads from their schedstat (nanoseconds, not 10 ms ticks).

    For short quiet windows only: a thread that ends inside the window takes its time with it
    (cpu_seconds() keeps it)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue  # the thread ended meanwhile
    return total / 1e9
