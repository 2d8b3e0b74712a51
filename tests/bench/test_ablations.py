"""bench/ablations/: the patches that take one part out of a score update, so that
docs/performance.md's cost of each part can be measured again (`python -m bench.abcost` with the
patched tree as the base). A patch that no longer applies to this tree would leave that table
unreproducible: both must apply (they touch different files)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import ROOT

PATCHES = sorted((ROOT / "bench" / "ablations").glob("*.patch"))


def test_there_are_ablations() -> None:
    assert {patch.name for patch in PATCHES} == {"no_event_log.patch", "no_score_write.patch"}


@pytest.mark.timeout(60)
def test_the_ablations_apply_to_this_tree_and_still_compile(tmp_path: Path) -> None:
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for patch in PATCHES:  # git apply outside a repository patches the files under the directory
        subprocess.run(["git", "apply", str(patch)], cwd=copy, check=True, capture_output=True, timeout=30)
    patched = copy / "src" / "matchcast"
    assert "ABLATION" in (patched / "realtime" / "eventlog.py").read_text()
    assert "ABLATION" in (patched / "services" / "matches.py").read_text()
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(patched)], check=True, capture_output=True, timeout=30
    )
