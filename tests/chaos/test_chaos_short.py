"""The short chaos run (chaos/harness.py): 60 s of every fault kind on three instances, zero violations.

It runs `python -m chaos` as a subprocess (its own Redis, proxies, database and instances) and reads
the results file it writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.faults import KINDS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def test_sixty_seconds_of_every_fault_kind_break_no_promise(tmp_path: Path) -> None:
    results = tmp_path / "chaos.json"
    env = {
        **os.environ,
        "CHAOS_SECONDS": "60",
        "CHAOS_SEED": "7",
        "CHAOS_SPECTATORS": "30",
        "CHAOS_SSE": "3",
        "CHAOS_TOURNAMENTS": "2",
        "CHAOS_RESULTS": str(results),
    }
    run = subprocess.run(
        [sys.executable, "-m", "chaos"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=220
    )
    summary = json.loads(results.read_text())
    assert summary["violations"] == [], json.dumps(summary["violations"][:10], indent=1)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1].endswith(" 0 violations"), run.stdout[-500:]
    missing = [kind for kind in KINDS if summary["faults_by_kind"][kind] == 0]
    assert not missing, f"fault kinds never injected: {missing}"
