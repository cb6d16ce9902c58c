"""A small Lite0 model and real `patchcore serve` processes on free loopback ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import lite0_model

MODEL = "features/sample/hazelnut_toy/efficientnet_lite0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`patchcore serve` in its own process; ``call`` makes one HTTP request and returns (status, headers, body)."""

    def __init__(
        self,
        project: Path,
        state: Path,
        *args: str,
        host: str = "127.0.0.1",
        token: str | None = None,
        model: str = MODEL,
        logs: Path | None = None,
    ):
        self.port, self.host, self.token, self.state = free_port(), host, token, state
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **({"PATCHCORE_TOKEN": token} if token else {})}
        env.pop("PATCHCORE_TOKEN", None) if token is None else None
        command = [
            sys.executable,
            "-m",
            "patchcore",
            "serve",
            model,
            "--host",
            host,
            "--port",
            str(self.port),
            "--state",
            str(state),
            *args,
        ]
        self.log = open((logs or state.parent) / f"serve-{self.port}.log", "w")
        self.process = subprocess.Popen(command, cwd=project, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.process.poll() is None, Path(self.log.name).read_text()
            try:
                if self.call("GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not become ready: {Path(self.log.name).read_text()}")

    def call(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, token: str | None = None
    ):
        headers = dict(headers or {})
        if token or self.token:
            headers["Authorization"] = f"Bearer {token or self.token}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def json(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, **kw
    ) -> tuple[int, dict]:
        status, _, data = self.call(method, path, body, headers, **kw)
        return status, json.loads(data)

    def inspect(self, image: Path) -> tuple[int, dict]:
        return self.json(
            "POST",
            f"/v1/inspect?filename={image.name}",
            image.read_bytes(),
            {"Content-Type": "application/octet-stream"},
        )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="session")
def served_project(sample_root, tmp_path_factory) -> Path:
    """A Lite0 model of a reduced sample with label-free thresholds (verdicts, regions and normalised scores)."""
    return lite0_model(
        sample_root,
        tmp_path_factory.mktemp("served"),
        (10, 3, 5),
        **{"coreset.ratio": 0.25, "coreset.holdout_fraction": 0.2, "coreset.holdout_folds": 0},
    )


@pytest.fixture(scope="session")
def server(served_project, tmp_path_factory):
    running = Server(served_project, tmp_path_factory.mktemp("state") / "state", "--max-wait-ms", "200")
    yield running
    running.stop()


def images_of(project: Path) -> list[Path]:
    root = project / "data/sample/hazelnut_toy/test"
    return sorted(root.glob("*/*.jpg"))
