"""Requests per second of the link endpoint against a bare Starlette endpoint.

Both run under the same uvicorn settings (one worker, no access log) in their
own processes; a keep-alive load generator in a third process sends
``GET /a/{token}`` for a fixed time, then ``POST /a/{token}`` with fresh tokens
(each with its form nonce), and prints the ratios from one run. Run with
``python bench/service.py`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(app: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            *app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit("server did not start")


async def _one(reader, writer, request: bytes) -> int:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def _load(port: int, requests: list[bytes], seconds: float, connections: int):
    """Send requests round-robin (or each once if seconds == 0)."""
    queue = iter(requests)
    ok = 0
    done = 0
    stop_at = time.perf_counter() + seconds if seconds else None

    async def worker() -> None:
        nonlocal ok, done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        index = 0
        while True:
            if stop_at is not None:
                if time.perf_counter() >= stop_at:
                    break
                request = requests[index % len(requests)]
                index += 1
            else:
                request = next(queue, None)
                if request is None:
                    break
            status = await _one(reader, writer, request)
            done += 1
            ok += status < 300
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return done / elapsed, ok, done


def load(port, requests, seconds, connections, out):
    out.put(asyncio.run(_load(port, requests, seconds, connections)))


def measure(port, requests, seconds, connections):
    queue = multiprocessing.Queue()
    worker = multiprocessing.Process(
        target=load, args=(port, requests, seconds, connections, queue)
    )
    worker.start()
    result = queue.get()
    worker.join()
    return result


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def post_request(path: str, body: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--posts", type=int, default=3000)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="actionlinks-bench-"))
    ours, bare = free_port(), free_port()
    env = {
        **os.environ,
        "ACTIONLINKS_HOME": str(home),
        "ACTIONLINKS_BASE_URL": f"http://127.0.0.1:{ours}",
    }
    subprocess.run(
        [sys.executable, "-m", "actionlinks", "init"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tokens = asyncio.run(_mint(env, args.posts + 1))
    servers = [
        start(["--factory", "actionlinks.web:app_from_env"], ours, env),
        start(["--app-dir", str(ROOT), "bare_app:app"], bare, env),
    ]
    try:
        view_token, _ = tokens[0]
        gets = [get_request(f"/a/{view_token}")]
        posts = [post_request(f"/a/{t}", f"nonce={n}") for t, n in tokens[1:]]
        with httpx.Client() as client:  # warm up both
            for port in (ours, bare):
                for _ in range(200):
                    client.get(f"http://127.0.0.1:{port}/a/{view_token}")
        rows = []
        for name, port in (("actionlinks", ours), ("bare Starlette", bare)):
            get_rate, get_ok, _ = measure(port, gets, args.seconds, args.connections)
            post_rate, post_ok, post_done = measure(port, posts, 0, args.connections)
            rows.append((name, get_rate, get_ok, post_rate, post_ok, post_done))
    finally:
        for server in servers:
            server.terminate()
            server.wait()
    base = rows[1]
    print(f"uvicorn, 1 worker, {args.connections} keep-alive connections; one run\n")
    print("| endpoint | GET /a/{token} req/s | × bare | POST (fresh) req/s | × bare |")
    print("|---|---:|---:|---:|---:|")
    for name, get_rate, _, post_rate, _, _ in rows:
        print(
            f"| {name} | {get_rate:,.0f} | {get_rate / base[1]:.2f}× "
            f"| {post_rate:,.0f} | {post_rate / base[3]:.2f}× |"
        )
    ours_row = rows[0]
    if ours_row[4] != ours_row[5]:
        print(
            f"\nwarning: {ours_row[5] - ours_row[4]} POSTs were not 2xx",
            file=sys.stderr,
        )


async def _mint(env: dict[str, str], count: int) -> list[tuple[str, str]]:
    from actionlinks.clock import SystemClock
    from actionlinks.service import Service
    from actionlinks.settings import Settings
    from actionlinks.web.app import LinkSite
    from actionlinks.web.metrics import Metrics

    settings = Settings.from_env(env)
    async with Service(settings, clock=SystemClock(), log_warnings=False) as service:
        site = LinkSite(service, metrics=Metrics())
        result = []
        for _ in range(count):
            link = await service.registry.mint(
                "email-confirm", subject="bench@example.test"
            )
            result.append((link.token, site.nonce_for(link.claims.token_id)))
        return result


if __name__ == "__main__":
    main()
