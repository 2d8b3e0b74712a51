"""The GC tuning the benchmarks motivated (src/matchcast/realtime/gc_tuning.py): what it freezes, when."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from matchcast.realtime.gc_tuning import YOUNG_THRESHOLD, GcTuner


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()  # leave the test process's collector as it was


async def test_start_freezes_what_exists_and_stop_unhooks() -> None:
    thresholds = gc.get_threshold()
    tuner = GcTuner(lambda: 0)
    tuner.start()
    assert gc.get_freeze_count() > 0 and tuner.freezes == 1
    assert tuner._observe in gc.callbacks
    assert gc.get_threshold() == (YOUNG_THRESHOLD, *thresholds[1:])
    tuner.stop()
    assert tuner._observe not in gc.callbacks
    assert gc.get_threshold() == thresholds


async def test_a_burst_of_joins_is_frozen_at_the_next_look() -> None:
    open_sockets = [10]
    tuner = GcTuner(lambda: open_sockets[0], burst=100)
    tuner.start()
    try:
        tuner.check()
        joined = [[n] for n in range(1000)]  # what the joining sockets hold
        open_sockets[0] = 60
        tuner.check()
        assert tuner.freezes == 1  # 50 joined: left to the collector
        open_sockets[0] = 160
        tuner.check()
        assert tuner.freezes == 2
        young = {id(o) for o in gc.get_objects()}  # the generations the collector walks
        assert not any(id(box) in young for box in joined)
    finally:
        tuner.stop()


async def test_a_slow_full_collection_freezes_its_survivors() -> None:
    tuner = GcTuner(lambda: 0, slow=0.0)  # every full collection counts as slow
    tuner.start()
    try:
        survivors = [[n] for n in range(10_000)]  # long-lived containers, as a burst of sockets leaves
        gc.collect()
        # The freeze is scheduled on the loop (call_soon_threadsafe), not run inside the collector:
        # one yield runs it, ahead of this task's next step. Not a timed wait.
        await asyncio.sleep(0)
        assert tuner.freezes == 2 and tuner.full_collections >= 1
        assert len(gc.get_objects(generation=2)) < len(survivors)
    finally:
        tuner.stop()


async def test_a_reclaim_needs_departures_and_its_period() -> None:
    open_sockets = [100]
    tuner = GcTuner(lambda: open_sockets[0], reclaim_every=0.0)
    tuner.start()
    try:
        tuner.check()
        assert tuner.reclaims == 0  # nobody left: nothing frozen can have died
        open_sockets[0] = 40
        tuner.check()
        assert tuner.reclaims == 1 and gc.get_freeze_count() > 0
    finally:
        tuner.stop()
