"""Running the app under uvicorn: one place for the server options, used by `matchcast serve`,
the tests and the benchmarks alike."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess, multiprocess

from matchcast.app import create_app
from matchcast.realtime.gc_tuning import GcTuner
from matchcast.settings import Settings
from matchcast.ticks import until_next_tick
from matchcast.web.handshake import HeadTimeoutProtocol

log = logging.getLogger("matchcast.server")
LISTEN_BACKLOG = 4096  # connections the kernel queues before accept, per listening socket (config())
# Listening sockets on the one port (SO_REUSEPORT), for two limits a reconnect storm hits
# (bench/storm.py, docs/performance.md):
# - uvloop's libuv accepts one connection per listening socket per loop iteration (libuv PR 3696).
#   With one socket, while the loop fanned out scores to 10k sockets, the accept queue drained at
#   under 1000 connections a second, the server partly idle and 5000 clients waiting in the queue.
# - The kernel caps each accept queue at net.core.somaxconn (4096 by default): one queue overflowed,
#   each dropped client then waiting for its SYN's retransmission (1 s, 3 s, 7 s).
LISTEN_SOCKETS = 16
# uvicorn's wsproto protocol, cheaper per connection (web/websocket_protocol.py). Not
# websockets-sansio (uvicorn's default): it never answers a handshake of 8 KB or more
# (shared/dependencies.md pitfall 11), and its joins cost no less.
WS_IMPLEMENTATION = "matchcast.web.websocket_protocol:WebSocketProtocol"
# Seconds between uvicorn's housekeeping ticks (the Date header, the request limit), on the shared
# boundary of matchcast.ticks. uvicorn's own 0.1 s tick was ten of an idle server's ~26 wakeups a
# second; it polled `should_exit`, which now wakes the loop itself.
TICK = 1.0


class Config(uvicorn.Config):
    """uvicorn's Config, carrying the request-head timeout to the HTTP protocol; an attribute, so
    it reaches worker processes too (the config is pickled to them)."""

    def __init__(self, app: Any, request_head_timeout: float, **options: Any) -> None:
        super().__init__(app, **options)
        self.request_head_timeout = request_head_timeout


def config(app: Any, settings: Settings, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> uvicorn.Config:
    defaults: dict[str, Any] = {
        "http": HeadTimeoutProtocol,  # httptools, timing request heads
        "ws": WS_IMPLEMENTATION,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: anyone reaching
        # the server from loopback would pick the address the login throttle counts.
        "proxy_headers": bool(settings.forwarded_allow_ips),
        "forwarded_allow_ips": list(settings.forwarded_allow_ips),
        "ws_max_size": settings.max_message_bytes,  # larger frames close 1009
        "ws_per_message_deflate": False,  # compressing each frame per socket defeats encode-once
        # The contract's heartbeat (ping/pong frames, 4004 past the timeout) already finds dead
        # peers; uvicorn's own protocol pings would add a timer per socket and a ping and a pong
        # every 20 s: a sixth of the server's CPU during a fan-out to 3000 idle sockets.
        "ws_ping_interval": None,
        "lifespan": "on",
        "log_level": "info",
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        # After a deploy every spectator reconnects at once: uvicorn's 2048 let the kernel drop
        # thousands of SYNs in a 10k storm, each client then waiting for TCP's retransmission
        # (1 s, 3 s). The kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4).
        "backlog": LISTEN_BACKLOG,
    }
    return Config(app, settings.request_head_timeout, host=host, port=port, **{**defaults, **options})


def app_from_env() -> Starlette:
    """The app factory each worker process calls (settings come from the same environment)."""
    if not logging.getLogger().handlers:  # a fresh worker process: log like `matchcast serve`
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return create_app(Settings.from_env())


class Server(uvicorn.Server):
    """uvicorn's server, with our graceful shutdown first: flush pending scores, close 1012.

    `tune_gc` (the serving processes, not the in-process test servers): freeze what survives
    start-up and connection bursts, so full collections do not stall fan-out (realtime/gc_tuning.py).
    """

    def __init__(self, config: uvicorn.Config, tune_gc: bool = False) -> None:
        self._wake_main_loop: Callable[[], None] | None = None
        super().__init__(config)
        self.gc_tuner = GcTuner(lambda: len(self.server_state.connections)) if tune_gc else None

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        # Set by uvicorn's signal handler, by our shutdown paths, by tests from another thread.
        self._should_exit = value
        if value and self._wake_main_loop is not None:
            self._wake_main_loop()

    async def main_loop(self) -> None:
        """uvicorn's main loop, ticking once a second instead of ten times; asked to exit, at once."""
        loop = asyncio.get_running_loop()
        exiting = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing waits
                loop.call_soon_threadsafe(exiting.set)

        self._wake_main_loop = wake
        try:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 10) % 864000  # on_tick's once-a-second work runs at multiples of 10
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(exiting.wait(), until_next_tick(TICK))
                should_exit = await self.on_tick(counter)
        finally:
            self._wake_main_loop = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        config = self.config
        bound: list[socket.socket] = []
        if sockets is None and config.fd is None and config.uds is None:
            # Bound now, listening only once uvicorn has run the lifespan, as it would itself.
            sockets = bound = bound_sockets(config.host, config.port, LISTEN_SOCKETS)
        try:
            await super().startup(sockets)
        finally:
            if not getattr(self, "servers", None):  # the lifespan failed: uvicorn never took them over
                for sock in bound:
                    sock.close()
        if self.gc_tuner is not None and not self.should_exit:
            self.gc_tuner.start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.gc_tuner is not None:
            self.gc_tuner.stop()
        # Stop listening first, as uvicorn's own shutdown does, but before the hub closes sockets
        # 1012: clients reconnect at once, and any that got in here were held until the graceful
        # timeout, then cancelled (bench/storm.py: 10 s shutdowns at 200 sockets, 30 s at 10k).
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        app = self.config.loaded_app
        while app is not None and not isinstance(app, Starlette):
            app = getattr(app, "app", None)
        realtime = getattr(app.state, "realtime", None) if app is not None else None
        if realtime is not None:
            try:
                await asyncio.wait_for(realtime.hub.stop(), 10)
            except Exception:
                log.exception("graceful stop of the hub failed")
        await super().shutdown(sockets)


def bound_sockets(host: str | None, port: int, count: int) -> list[socket.socket]:
    """`count` TCP sockets bound to one port with SO_REUSEPORT, not listening yet (until then
    connects are refused): the kernel spreads new connections over them once they listen.

    Port 0 takes a free port for the first and binds the rest to it.
    """
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    bound: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host or "0.0.0.0", port))
            port = sock.getsockname()[1]
            sock.set_inheritable(True)  # for the worker processes
    except OSError as exc:
        for sock in bound:
            sock.close()
        log.error("cannot listen on %s:%s: %s", host, port, exc)
        sys.exit(STARTUP_FAILURE)
    return bound


def serve(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    if workers <= 1:
        Server(config(create_app(settings), settings, host, port), tune_gc=True).run()
        return
    cfg = config("matchcast.server:app_from_env", settings, host, port, factory=True, workers=workers)
    sockets = bound_sockets(host, port, LISTEN_SOCKETS)
    # uvicorn's supervisor builds every worker (and each replacement) from this module-level name.
    multiprocess.Process = Worker  # type: ignore[misc]
    Multiprocess(cfg, sockets=sockets).run()


class Worker(multiprocess.Process):
    """A uvicorn worker process that runs our Server, so each worker stops gracefully too."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(self.config, tune_gc=True)
        return self._server
