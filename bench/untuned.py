"""`matchcast serve` without the GC tuning, for the comparison `python -m bench.run --no-gc-tuning`.

    python -m bench.untuned PORT     (settings from the MATCHCAST_* environment, as `matchcast serve`)

The collector is left alone, only watched: the full collections and their pauses are logged at exit.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from typing import Any

from matchcast.app import create_app
from matchcast.server import Server, config
from matchcast.settings import Settings

log = logging.getLogger("matchcast.gc")


class Watch:
    def __init__(self) -> None:
        self.started = self.longest = self.total = 0.0
        self.count = 0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        elif info["generation"] == 2:
            took = time.perf_counter() - self.started
            self.count += 1
            self.total += took
            self.longest = max(self.longest, took)


class WatchedServer(Server):
    watch = Watch()

    async def shutdown(self, sockets: Any = None) -> None:
        # Here, not after run(): uvicorn re-raises SIGTERM once it has shut down.
        log.info(
            "gc: %d full collections (longest %.1f ms, %.0f ms in all), untuned",
            self.watch.count,
            self.watch.longest * 1000,
            self.watch.total * 1000,
        )
        await super().shutdown(sockets)


def main() -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    gc.callbacks.append(WatchedServer.watch)
    WatchedServer(config(create_app(settings), settings, "127.0.0.1", int(sys.argv[1])), tune_gc=False).run()


if __name__ == "__main__":
    main()
