"""Real servers on 127.0.0.1 for integration and browser tests.

``ServeProcess`` runs the installed ``actionlinks serve``; ``Receiver`` is a
webhook receiver under uvicorn in a thread that verifies every delivery with the
reference ``standardwebhooks`` library.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

import anyio
import httpx
import pytest
import redis
import uvicorn
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from starlette.requests import Request

SCRIPT = Path(sys.executable).with_name("actionlinks")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONLINKS_")}
    env.update(extra)
    return env


class ServeProcess:
    """`actionlinks serve` in a subprocess, stopped by ``stop()``."""

    def __init__(
        self,
        home: Path,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        base_url: bool = True,
        wait: bool = True,
    ):
        self.home = home
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = home / "serve.log"
        self.env = clean_env(ACTIONLINKS_HOME=str(home), **(env or {}))
        if base_url:
            self.env["ACTIONLINKS_BASE_URL"] = self.base_url
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(SCRIPT),
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(workers),
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve did not start: {self.log.read_text()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )

    def mint(self, action: str, sub: str = "user:42") -> str:
        return self.cli("mint", action, "--sub", sub).stdout.strip()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text()


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 answering with the statuses it is given.

    Every delivery is verified with the reference ``standardwebhooks`` library
    (against ``secret``, or against each of ``secrets`` alone when given). A
    status may come with headers (``(302, {"location": …})``); ``hold`` makes
    each answer wait that many seconds (set ``release`` to stop waiting).
    """

    secret: str = ""
    statuses: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    attempts: list[tuple[str, int]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    hold: float = 0.0
    release: threading.Event = field(default_factory=threading.Event)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def ids(self) -> set[str]:
        return {message_id for message_id, status in self.attempts if status < 300}

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        self.requests.append((headers, body))
        for secret in self.secrets or [self.secret]:
            payload = Webhook(secret).verify(body, headers)
        if self.hold:
            deadline = time.monotonic() + self.hold
            while time.monotonic() < deadline and not self.release.is_set():  # noqa: ASYNC110 - a thread's event
                await anyio.sleep(0.05)
        answer = self.statuses.pop(0) if self.statuses else 204
        status, extra = answer if isinstance(answer, tuple) else (answer, {})
        self.attempts.append((request.headers["webhook-id"], status))
        if 200 <= status < 300:
            self.events.append(payload)
        return Response(status_code=status, headers=extra)

    async def _elsewhere(self, request: Request) -> Response:
        self.elsewhere.append(request.method)
        return Response(status_code=204)

    def __enter__(self) -> Self:
        app = Starlette(
            routes=[
                Route("/hooks", self._hook, methods=["POST"]),
                Route("/elsewhere", self._elsewhere, methods=["GET", "POST"]),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def serve_with_handler(home: Path, receiver: Receiver, action: str) -> ServeProcess:
    """`actionlinks serve` whose ``action`` announces each use to ``receiver``."""
    (home / "actionlinks.toml").write_text(
        f"[actions.{action}]\n"
        f'handler_url = "{receiver.url}"\n'
        f'handler_secret = "{receiver.secret}"\n'
    )
    return ServeProcess(home, env={"ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1"})


class RedisServer:
    """redis-server on 127.0.0.1, in memory, stopped and started at will."""

    def __init__(self):
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not installed (Debian package redis-server)")
        self.executable = executable
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self, *extra):
        self.process = subprocess.Popen(
            [
                self.executable,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()
        return self

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.process = None

    def ledger_keys(self):
        client = redis.Redis.from_url(self.url)
        try:
            return [k.decode() for k in client.scan_iter(match="al:*")]
        finally:
            client.close()
