"""bench/offer.py's plumbing at a few sockets: all three paths really write every frame to every
socket (a path that skipped its writes would look cheaper). No cost is asserted: `python -m
bench.offer` measures it."""

from __future__ import annotations

import pytest

from bench import offer


@pytest.mark.timeout(60)
def test_every_path_delivers_every_frame_to_every_socket() -> None:
    result = offer.main(["--sockets", "50", "--rounds", "4"])
    assert result["sockets_that_got_every_frame"] == 50
    assert all(result[f"{path}_us_per_socket"] >= 0 for path in offer.PATHS)
