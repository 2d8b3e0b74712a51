"""A load generator worker's commands for a reconnect storm (bench/storm.py).

bench/loadgen.py's Worker answers `cmd_*` from here as well as its own: the spectators that resume
(bench/resuming.py) on the spectator workers, the participant (bench/scorer.py) on the driver.
"""

from __future__ import annotations

import gc
from typing import Any

from bench.resuming import Crowd
from bench.scorer import Scorer


class StormCommands:
    """A load generator worker's commands for a storm: bench/loadgen.py's Worker dispatches `cmd_*` here too."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.crowd: Crowd | None = None
        self.scorer: Scorer | None = None

    async def cmd_crowd(self, url: str, secret: str, count: int, concurrency: int, late: int, resume: bool) -> Any:
        from matchcast.security import create_guest_token

        self.crowd = Crowd(url, [create_guest_token(secret, 3600) for _ in range(count)], late, resume, self.deadline)
        result = await self.crowd.connect(concurrency)
        gc.collect()
        gc.freeze()  # the sockets live until the end: keep collections in this process short
        return result

    async def cmd_crowd_status(self, since_ns: int) -> dict[str, int]:
        assert self.crowd is not None
        return self.crowd.status(since_ns)

    async def cmd_crowd_release(self) -> None:
        assert self.crowd is not None
        self.crowd.released.set()

    async def cmd_crowd_wait(self, event_id: int, seconds: float) -> int:
        assert self.crowd is not None
        return await self.crowd.wait_for(event_id, seconds)

    async def cmd_crowd_report(self, final_id: int, since_ns: int) -> list[dict[str, Any]]:
        assert self.crowd is not None
        return self.crowd.report(final_id, since_ns)

    async def cmd_score(self, url: str, interval: float) -> None:
        self.scorer = Scorer(url, interval)
        self.scorer.start()

    async def cmd_score_last_id(self) -> int:
        assert self.scorer is not None
        return self.scorer.last_id

    async def cmd_score_after(self, seconds: float, event_id: int = 0, after_ns: int = 0) -> int:
        assert self.scorer is not None
        return await self.scorer.event_after(event_id, after_ns, seconds)

    async def cmd_score_finish(self, seconds: float) -> dict[str, Any]:
        assert self.scorer is not None
        return await self.scorer.finish(seconds)

    async def close(self) -> None:
        for part in (self.crowd, self.scorer):
            if part is not None:
                await part.close()
