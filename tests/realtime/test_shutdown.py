"""Graceful shutdown: pending score batches are flushed, then sockets close 1012; and the way back in
(no new socket into a dying server, a listen queue that takes a reconnect storm)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
from uvicorn.config import STARTUP_FAILURE

import matchcast.server
from matchcast.app import create_app
from matchcast.realtime.backends import OPERATION_TIMEOUT
from matchcast.server import LISTEN_BACKLOG, LISTEN_SOCKETS, Server, bound_sockets, config
from matchcast.settings import RateLimit
from tests.support.databases import connections_to, fresh_postgres_database, sqlite_url
from tests.support.processes import PostgresCluster, free_port, wait_until
from tests.support.server import RunningServer, running_server, test_settings


@pytest.mark.parametrize("overrides", [{"score_batch_window_ms": 5000, "rate_limit": RateLimit(100, 1)}])
async def test_shutdown_flushes_pending_scores_then_closes_1012(server: RunningServer) -> None:
    t, match = await server.factory.live_match()
    async with (
        server.client(f"/ws/match/{match.id}/", server.token(match.participant1_id)) as player,
        server.client(f"/ws/tournament/{t.id}/", server.guest_token()) as spectator,
    ):
        await player.established()
        await spectator.established()
        for n in (1, 2, 3):
            await player.send({"type": "score_update", "participant1_score": n, "participant2_score": 0})
        first = await spectator.recv_type("score_updated")
        await player.quiet(0.3)  # 2 and 3 are stored and wait for the 5 s window
        server.server.should_exit = True
        flushed = await spectator.recv_type("score_updated", timeout=3)
        assert await spectator.closed(timeout=5) == 1012
        assert await player.closed(timeout=5) == 1012
    assert first["data"]["participant1_score"] == 1
    assert flushed["data"]["participant1_score"] == 3 and flushed["data"]["sequence"] == 3


async def test_regression_no_new_connection_gets_in_while_the_hub_closes_sockets_1012(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17 (bench/storm.py): the server kept listening while the hub closed its sockets 1012;
    clients reconnecting at once got into the dying server, were held for the graceful timeout
    and then cancelled, and shutdowns took 10-30 s."""
    hub = server.realtime.hub
    closing, go_on = asyncio.Event(), asyncio.Event()
    stop = hub.stop

    async def gated_stop() -> None:  # the hub's stop, held at its start until the test has looked
        closing.set()
        await go_on.wait()
        await stop()

    monkeypatch.setattr(hub, "stop", gated_stop)
    _t, match = await server.factory.live_match()
    async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as spectator:
        await spectator.established()
        server.server.should_exit = True
        await asyncio.wait_for(closing.wait(), 10)
        with pytest.raises(OSError):
            async with server.client(f"/ws/match/{match.id}/", server.guest_token()) as late:
                await late.established()
        go_on.set()
        assert await spectator.closed(timeout=10) == 1012


SOMAXCONN = int(Path("/proc/sys/net/core/somaxconn").read_text())  # the kernel's cap on any backlog


def listen_backlogs(port: int) -> list[int]:
    """The accept queue size of each socket listening on `port`, as the kernel reports it (`ss`: Send-Q)."""
    lines = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[2]) for line in lines.splitlines()]


async def test_regression_the_listen_queues_take_a_reconnect_storm(server: RunningServer) -> None:
    """Issue 17 (bench/storm.py): with uvicorn's one socket and backlog of 2048, a 10k reconnect
    storm had thousands of SYNs dropped, each client then waiting for TCP's retransmission (1 s,
    3 s, 7 s); at 4096, the kernel's cap, still over a thousand. Now several sockets share the
    port, each with its own queue."""
    assert LISTEN_SOCKETS * min(LISTEN_BACKLOG, SOMAXCONN) >= 10_000
    assert listen_backlogs(server.port) == [min(LISTEN_BACKLOG, SOMAXCONN)] * LISTEN_SOCKETS


def test_the_kernel_spreads_connections_over_the_listening_sockets() -> None:
    listeners = bound_sockets("127.0.0.1", 0, LISTEN_SOCKETS)
    port = listeners[0].getsockname()[1]
    clients: list[socket.socket] = []
    try:
        for sock in listeners:
            sock.listen(LISTEN_BACKLOG)
        for _ in range(200):  # nobody accepts: each waits in the queue of the socket it hashed to
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        waiting = listen_queue_lengths(port)
    finally:
        for sock in clients + listeners:
            sock.close()
    assert sum(waiting) == 200
    assert len(waiting) == LISTEN_SOCKETS and min(waiting) > 0, waiting


def listen_queue_lengths(port: int) -> list[int]:
    """Connections waiting for accept on each socket listening on `port` (`ss`: Recv-Q)."""
    lines = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return [int(line.split()[1]) for line in lines.splitlines()]


def test_a_port_in_use_is_a_clear_start_up_failure() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        with pytest.raises(SystemExit) as exited:
            bound_sockets("127.0.0.1", taken.getsockname()[1], LISTEN_SOCKETS)
    finally:
        taken.close()
    assert exited.value.code == STARTUP_FAILURE


async def test_a_failed_start_up_leaves_its_port_free(tmp_path: Path) -> None:
    """The listening sockets are bound before the lifespan runs; when it fails, they are closed
    (an embedding process, or a retry on the same port, would find the port taken)."""
    settings = test_settings(database_url=sqlite_url(tmp_path / "no such directory"))
    port = free_port()
    server = Server(config(create_app(settings), settings, port=port, log_level="critical"))
    with pytest.raises(SystemExit) as exited:
        await server.serve()
    assert exited.value.code == STARTUP_FAILURE
    probe = socket.socket()  # no SO_REUSEPORT: any socket still bound to the port refuses it
    try:
        probe.bind(("127.0.0.1", port))
    finally:
        probe.close()


async def test_a_request_to_exit_wakes_the_server_at_once_not_at_its_next_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # uvicorn's main loop polled `should_exit` every 0.1 s; ours sleeps to the next tick, so
    # setting the flag (uvicorn's signal handler, our shutdown, the tests) must wake it by itself.
    monkeypatch.setattr(matchcast.server, "TICK", 3600.0)
    settings = test_settings(database_url=sqlite_url(tmp_path))
    server = Server(config(create_app(settings), settings, port=0, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started or serving.done(), 20, "the server started")
    assert server.started
    server.should_exit = True
    await asyncio.wait_for(serving, 20)  # not an hour


async def test_a_failed_start_up_closes_what_it_opened() -> None:
    """Start-up fails half-way (a database nobody migrated, so its first query fails once the
    pool is open and the broker connected): what was started is stopped, nothing is left open."""
    async with fresh_postgres_database(migrate=False) as url:
        app = create_app(test_settings(database_url=url), migrate=False)
        with pytest.raises(asyncpg.UndefinedTableError):
            async with app.router.lifespan_context(app):
                pass
        assert await connections_to(url) == 0  # closed before the lifespan raised: no waiting needed


def cluster_processes(cluster: PostgresCluster) -> list[int]:
    """The private cluster's postmaster and every process it started (the backends among them)."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False)
    return [postmaster, *(int(pid) for pid in children.stdout.split())]


async def test_a_broker_that_stopped_answering_holds_up_no_shutdown(
    postgres_outage: PostgresCluster, tmp_path: Path
) -> None:
    """Every process of the PostgreSQL broker is paused (SIGSTOP): nothing answers, nothing closes.
    The shutdown must not wait out an operation's whole timeout (an UNLISTEN, a graceful close):
    the old one took 10 s here, the broker's OPERATION_TIMEOUT twice."""
    settings = test_settings(broadcast_url=postgres_outage.admin_url, database_url=sqlite_url(tmp_path))
    paused: list[int] = []
    try:
        async with running_server(settings) as server:
            t = await server.factory.seeded(2)
            async with server.client(f"/ws/tournament/{t.id}/", server.guest_token()) as spectator:
                await spectator.established()  # its room LISTENs on the broker
                paused = cluster_processes(postgres_outage)
                for pid in paused:
                    os.kill(pid, signal.SIGSTOP)
                started = time.monotonic()
                server.server.should_exit = True
                assert await spectator.closed() == 1012
        took = time.monotonic() - started
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
    assert took < OPERATION_TIMEOUT, f"the shutdown waited {took:.1f}s on a broker that does not answer"
