"""bench/offer.py's plumbing at a few sockets: both paths really write every frame to every
socket (a path that skipped its writes would look cheaper). No cost is asserted: `python -m
bench.offer` measures it."""

from __future__ import annotations

import pytest

from bench import offer


@pytest.mark.timeout(60)
def test_both_paths_deliver_every_frame_to_every_socket() -> None:
    result = offer.main(["--sockets", "50", "--rounds", "4"])
    assert result["sockets_that_got_every_frame"] == 50
    assert result["offer_us_per_socket"] >= 0 and result["write_us_per_socket"] >= 0
