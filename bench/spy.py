"""py-spy on a running server, from one moment to another, and what its samples say in a few lines."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def record(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """Start sampling `pid` into `out` (py-spy's raw format: one collapsed stack and its count a line)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy (it is in the dev extras)")
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--format", "raw", "--nolineno"]
    return subprocess.Popen([*command, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(spy: subprocess.Popen[bytes]) -> None:
    """Stop sampling; py-spy writes its file on SIGINT."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait(5)


def frame_name(frame: str) -> str:
    """`handle (uvicorn/protocols/websockets/wsproto_impl.py)` -> `wsproto_impl.py:handle`."""
    function, _, where = frame.partition(" (")
    return f"{Path(where.rstrip(')')).name}:{function}" if where else function


def summary(raw: Path, top: int = 15) -> dict[str, Any]:
    """The functions with the most samples on top of the stack (self) and anywhere in it (inclusive), in %."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame_name(frame) for frame in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for name in set(frames):
            inclusive[name] += int(count)

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"file": str(raw), "samples": total, "self_pct": share(own), "inclusive_pct": share(inclusive)}
