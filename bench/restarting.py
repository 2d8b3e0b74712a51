"""`matchcast serve` that is stopped with SIGTERM and started again on the same port, database and settings."""

from __future__ import annotations

import secrets
import signal
import socket
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

from bench import servers

ANSWER_PROBE_PERIOD = 0.005
# A stop under 10k sockets has taken over 30 s (hub.stop's 10 s, uvicorn's 10 s graceful wait, then a
# traceback logged per cancelled socket): waited for and reported, not a failure.
SHUTDOWN_TIMEOUT = 120.0


class RestartingServer:
    """`matchcast serve` on a fresh stack, which `restart()` stops with SIGTERM and starts again on
    the same port, database and settings as soon as it has exited."""

    def __init__(self, stack: str, workdir: Path, cpus: list[int] | None) -> None:
        self.stack, self.workdir, self.cpus = stack, workdir, cpus
        self.exits = ExitStack()
        self.port = servers.free_port()
        self.log = workdir / f"storm-{stack}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RestartingServer:
        self.database_url = self.exits.enter_context(servers.fresh_database(self.stack, self.workdir))
        broadcast = "memory://" if self.stack.startswith("memory") else servers.REDIS_URL
        self.secret = secrets.token_hex(32)
        self.env = servers.server_env(self.database_url, broadcast, self.secret)
        demo = servers.seed_demo(self.env, self.workdir)
        match = next(m for m in demo["matches"] if m["round"] == 1)
        player = next(p for p in demo["players"] if p["id"] == match["participant1_id"])
        process = self.start()
        servers.wait_until_up(process, self.port, self.log, health=True)
        url = f"http://127.0.0.1:{self.port}/api/matches/{match['id']}/start"
        servers.post_json(url, demo["organizer"]["token"], {})
        self.match_id = int(match["id"])
        self.match_url = f"ws://127.0.0.1:{self.port}/ws/match/{match['id']}/"
        self.participant_url = f"{self.match_url}?token={player['token']}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            servers.stop(self.process)
        self.exits.close()

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None and self.process.poll() is None else 0

    def start(self) -> subprocess.Popen[bytes]:
        command = [servers.MATCHCAST, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=servers.pinned(self.cpus),
            )
        return self.process

    def restart(self) -> dict[str, int]:
        """SIGTERM, wait for the exit, start again; the monotonic ns of each step."""
        assert self.process is not None
        sigterm_ns = time.monotonic_ns()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(SHUTDOWN_TIMEOUT)
        exit_ns = time.monotonic_ns()
        process = self.start()
        return {"sigterm_ns": sigterm_ns, "exit_ns": exit_ns, "answer_ns": self.answering(process)}

    def answering(self, process: subprocess.Popen[bytes]) -> int:
        """The monotonic ns at which `process` first accepted a connection on the port."""
        end = time.monotonic() + servers.START_TIMEOUT
        while time.monotonic() < end:
            if process.poll() is not None:
                tail = self.log.read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError(f"the restarted server exited with {process.returncode}:\n" + "\n".join(tail))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return time.monotonic_ns()
            except OSError:
                time.sleep(ANSWER_PROBE_PERIOD)
        raise RuntimeError(f"the restarted server did not answer within {servers.START_TIMEOUT:.0f}s; see {self.log}")
