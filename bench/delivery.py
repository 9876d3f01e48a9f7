"""Webhook delivery throughput: the durable outbox against a bare httpx loop.

A receiver answering 204 runs in its own process (uvicorn, one worker). The bare
loop posts N signed-less bodies with httpx, at most C at a time. actionlinks
accepts the same N messages through its hub (each stored in SQLite with its
delivery before it is acknowledged) while its outbox worker delivers them, C at a
time to the one endpoint, signing each with v1 and the JWT header (EdDSA) and
recording every attempt; the
clock runs from the first accepted message to the last recorded delivery.
Run with ``.venv/bin/python bench/delivery.py`` after ``pip install '.[test]'``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from actionlinks.clock import SystemClock
from actionlinks.home import initialize
from actionlinks.service import Service
from actionlinks.settings import Settings

N = 2000
CONCURRENCY = 10  # the outbox's default bound per endpoint
RECEIVER = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_receiver(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    (directory / "receiver.py").write_text(RECEIVER)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "receiver:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=directory,
    )
    url = f"http://127.0.0.1:{port}/hooks"
    for _ in range(100):
        try:
            httpx.post(url, content=b"{}")
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the receiver did not start")


async def bare(url: str, body: bytes) -> float:
    limit = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient() as client:

        async def post() -> None:
            async with limit:
                response = await client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post() for _ in range(N)))
        return time.perf_counter() - started


async def outbox(home: Path, url: str) -> float:
    env = {"ACTIONLINKS_HOME": str(home), "ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1"}
    initialize(Settings.from_env(env), clock=SystemClock())
    async with Service(Settings.from_env(env), log_warnings=False) as service:
        hub = service.webhooks
        await hub.add_endpoint(url)
        database = service.store.database  # type: ignore[attr-defined]
        started = time.perf_counter()
        for number in range(N):
            await hub.send("order.paid", {"order": number, "total": "12.50"})
        while True:
            (done,) = await database.fetchone(
                "SELECT count(*) FROM outbox_deliveries WHERE state = 'delivered'"
            )
            if done == N:
                return time.perf_counter() - started
            await asyncio.sleep(0.005)


def measure() -> tuple[float, float]:
    """Seconds for N messages: the bare httpx loop, then the outbox."""
    body = (
        b'{"type":"order.paid","timestamp":"2026-12-02T08:00:00Z","data":{"order":1}}'
    )
    with tempfile.TemporaryDirectory() as directory:
        process, url = start_receiver(Path(directory))
        try:
            asyncio.run(bare(url, body))  # warm the receiver
            bare_s = asyncio.run(bare(url, body))
            ours_s = asyncio.run(outbox(Path(directory), url))
        finally:
            process.terminate()
            process.wait()
    return bare_s, ours_s


def main() -> None:
    bare_s, ours_s = measure()
    version = sys.version.split()[0]
    print(f"Python {version}; {N} messages, {CONCURRENCY} in flight; one run\n")
    print("| sender | messages/s | × bare httpx |")
    print("|---|---:|---:|")
    print(f"| bare httpx loop | {N / bare_s:.0f} | 1.00× |")
    print(
        f"| actionlinks outbox (stored, signed, every attempt recorded) | "
        f"{N / ours_s:.0f} | {bare_s / ours_s:.2f}× |"
    )


if __name__ == "__main__":
    main()
