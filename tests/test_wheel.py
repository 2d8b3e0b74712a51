"""The package as a user gets it: an sdist and a wheel built from the repository, the wheel installed
into a fresh virtualenv, and `matchcast` run from an empty directory, far from the source tree.

The repository is copied first (without .venv, caches and build output), so the build writes
nothing into the working tree and cannot pick up a stale `build/` from it. `python -m build` makes
the sdist, then the wheel from that sdist, as pip does for `pip install matchcast-X.tar.gz`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
SECRET = "wheel-test-secret-of-more-than-32-bytes"
# Not part of the project: version control, virtualenvs, caches, build output, local databases.
NOT_COPIED_AT_THE_TOP = {"build", "dist"}
NOT_COPIED = shutil.ignore_patterns(".*", "*.egg-info", "__pycache__", "*.db", "*.db-*")
BUILD_TIMEOUT = 180.0  # two isolated build environments (setuptools from pip's cache)
INSTALL_TIMEOUT = 240.0  # every dependency, from pip's cache when it is warm
COMMAND_TIMEOUT = 60.0
HTTP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Installed:
    source: Path  # the copy of the repository that was built
    sdist: Path
    wheel: Path
    venv: Path

    @property
    def matchcast(self) -> Path:
        return self.venv / "bin" / "matchcast"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def run(command: list[str | Path], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `command`; fail with its output when it exits non-zero."""
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )
    assert result.returncode == 0, (
        f"{command} exited {result.returncode}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )
    return result


def clean_environment(**extra: str) -> dict[str, str]:
    """This environment without matchcast's variables or anything that would reach the source tree."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MATCHCAST_") and k not in dropped}
    return environ | extra


def not_copied(directory: str, names: list[str]) -> set[str]:
    top = NOT_COPIED_AT_THE_TOP if Path(directory) == ROOT else set()
    return set(NOT_COPIED(directory, names)) | (top & set(names))


def files_under(directory: Path) -> list[str]:
    return sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=not_copied)
    dist = base / "dist"
    run([sys.executable, "-m", "build", "--outdir", dist, source], BUILD_TIMEOUT, env=clean_environment())
    [sdist] = dist.glob("matchcast-*.tar.gz")
    [wheel] = dist.glob("matchcast-*.whl")
    venv = base / "venv"
    # Without a pip of its own: this environment's pip installs into it (pip --python), twice as fast.
    run([sys.executable, "-m", "venv", "--without-pip", venv], COMMAND_TIMEOUT, env=clean_environment())
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install"]
    pip += ["--disable-pip-version-check", "-c", ROOT / "constraints.txt", wheel]
    run(pip, INSTALL_TIMEOUT, env=clean_environment(), cwd=base)
    return Installed(source, sdist, wheel, venv)


@pytest.mark.timeout(360)
def test_sdist_and_wheel_ship_templates_static_files_and_every_module(installed: Installed) -> None:
    source = installed.source
    package = source / "src" / "matchcast"
    with zipfile.ZipFile(installed.wheel) as wheel:
        in_wheel = wheel.namelist()
    assert len(in_wheel) == len(set(in_wheel)), "a file is in the wheel twice"
    expected = [f"matchcast/{name}" for name in files_under(package)]
    expected += [f"matchcast/{kind}/{name}" for kind in ("templates", "static") for name in files_under(source / kind)]
    assert "matchcast/templates/base.html" in expected and "matchcast/static/live.js" in expected
    assert "matchcast/templates/organize/index.html" in expected
    missing = sorted(set(expected) - set(in_wheel))
    assert not missing, f"not in the wheel (a package missing from [tool.setuptools] packages?): {missing}"

    with tarfile.open(installed.sdist) as sdist:
        in_sdist = {member.name for member in sdist.getmembers() if member.isfile()}
    top = installed.sdist.name.removesuffix(".tar.gz")
    laid_out = ["pyproject.toml", *(f"src/matchcast/{name}" for name in files_under(package))]
    laid_out += [f"{kind}/{name}" for kind in ("templates", "static") for name in files_under(source / kind)]
    missing = sorted({f"{top}/{name}" for name in laid_out} - in_sdist)
    assert not missing, f"not in the sdist (MANIFEST.in?): {missing}"


class InstalledServer(ServerProcess):
    """`matchcast serve` of the fresh virtualenv, in an empty working directory, on a free port."""

    def __init__(self, matchcast: Path, cwd: Path, env: Mapping[str, str]) -> None:
        super().__init__(env, log_dir=cwd.parent)
        self.env = {**env, "PYTHONUNBUFFERED": "1"}  # not the test's environment: nothing of the source tree
        self.executable = matchcast
        self.cwd = cwd

    def _launch(self) -> subprocess.Popen[bytes]:
        command = [str(self.executable), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "wb") as log:
            return subprocess.Popen(command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    empty = tmp_path / "run"
    empty.mkdir()
    return empty


@pytest.mark.timeout(360)
async def test_installed_wheel_serves_every_page_from_an_empty_directory(installed: Installed, workdir: Path) -> None:
    env = clean_environment(
        MATCHCAST_DATABASE_URL=f"sqlite:///{workdir / 'wheel.db'}",
        MATCHCAST_JWT_SECRET=SECRET,
        PATH=f"{installed.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    )

    def matchcast(*args: str | Path, command: Path = installed.matchcast) -> subprocess.CompletedProcess[str]:
        return run([command, *args], COMMAND_TIMEOUT, env=env, cwd=workdir)

    # The package finds its templates and static files in itself, not in the repository.
    where = await asyncio.to_thread(
        matchcast,
        "-c",
        "import matchcast.web.templating as t; print(t.TEMPLATES_DIR); print(t.STATIC_DIR)",
        command=installed.python,
    )
    site_packages = next(installed.venv.glob("lib/python*/site-packages"))
    assert where.stdout.split() == [str(site_packages / "matchcast" / kind) for kind in ("templates", "static")]

    await asyncio.to_thread(matchcast, "db", "upgrade")
    demo = json.loads((await asyncio.to_thread(matchcast, "demo", "--json")).stdout)
    tournament_id = demo["tournament_id"]
    match = next(m for m in demo["matches"] if m["participant1_id"] is not None)
    usernames = {player["id"]: player["username"] for player in demo["players"]}

    server = InstalledServer(installed.matchcast, workdir, env)
    try:
        await server.start()  # waits for /healthz, bounded by the helper's START_TIMEOUT
        launched = server.process.args if server.process is not None else None  # our _launch, not the dev venv's
        assert isinstance(launched, list) and launched[0] == str(installed.matchcast), launched
        async with httpx.AsyncClient(base_url=server.http, timeout=HTTP_TIMEOUT) as http:
            snapshot = await http.get(f"/api/tournaments/{tournament_id}")
            assert snapshot.status_code == 200, snapshot.text
            name = snapshot.json()["name"]
            pages = {
                "/": [name, f'href="/tournaments/{tournament_id}"'],
                f"/tournaments/{tournament_id}": [name, *usernames.values(), '<script src="/static/live.js"'],
                f"/matches/{match['id']}": [
                    name,
                    usernames[match["participant1_id"]],
                    usernames[match["participant2_id"]],
                    '<script src="/static/live.js"',
                ],
                f"/overlay/matches/{match['id']}?theme=light": [
                    usernames[match["participant1_id"]],
                    '<script src="/static/overlay.js"',
                ],
                "/login": ["<h1>Log in</h1>", 'name="csrf_token"'],
            }
            assets: set[str] = set()
            for path, expected in pages.items():
                page = await http.get(path)
                assert page.status_code == 200, (
                    f"{path}: {page.status_code}\n{page.text[:2000]}\n{server.log()[-3000:]}"
                )
                assert page.headers["content-type"].startswith("text/html"), path
                for text in expected:
                    assert text in page.text, f"{path}: {text!r} not in the page"
                assets.update(re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text))
            assert {"/static/live.js", "/static/style.css", "/static/overlay.css"} <= assets  # what the pages link

            types = {".js": "javascript", ".css": "text/css"}
            for asset in sorted(assets):
                served = await http.get(asset)
                assert served.status_code == 200, asset
                kind = types.get(Path(asset).suffix)
                assert kind is None or kind in served.headers["content-type"], (asset, served.headers)
                assert served.content == (installed.source / asset.removeprefix("/")).read_bytes(), asset
    finally:
        await server.stop()
    left = os.listdir(workdir)
    assert all(name.startswith("wheel.db") for name in left), f"written into the working directory: {left}"
