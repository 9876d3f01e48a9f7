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
import re
import shutil
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


def measure_load(port, requests, seconds, connections):
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


def wrk_rate(port: int, path: str, seconds: float, connections: int) -> float | None:
    """Requests/s of ``wrk -t1`` on ``path``, or ``None`` without wrk."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    result = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in result.stdout:
        raise RuntimeError(f"wrk saw failed requests:\n{result.stdout}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    if found is None:
        raise RuntimeError(f"no rate in wrk's output:\n{result.stdout}")
    return float(found.group(1))


def measure(
    seconds: float, connections: int, posts: int, stack: tuple[str, ...] = ()
) -> dict[str, dict[str, float | None]]:
    """Requests/s of actionlinks and the bare app: GET, GET under wrk, POST.

    ``stack`` is extra uvicorn options (``--loop uvloop --http httptools``),
    the same for both sides.
    """
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
    tokens = asyncio.run(_mint(env, posts + 1))
    servers = [
        start(["--factory", "actionlinks.web:app_from_env", *stack], ours, env),
        start(["--app-dir", str(ROOT), "bare_app:app", *stack], bare, env),
    ]
    results: dict[str, dict[str, float | None]] = {}
    try:
        view_token, _ = tokens[0]
        gets = [get_request(f"/a/{view_token}")]
        posted = [post_request(f"/a/{t}", f"nonce={n}") for t, n in tokens[1:]]
        with httpx.Client() as client:  # warm up both
            for port in (ours, bare):
                for _ in range(200):
                    client.get(f"http://127.0.0.1:{port}/a/{view_token}")
        for name, port in (("actionlinks", ours), ("bare", bare)):
            get_rate, get_ok, get_done = measure_load(port, gets, seconds, connections)
            post_rate, post_ok, post_done = measure_load(port, posted, 0, connections)
            if get_ok != get_done or post_ok != post_done:
                raise RuntimeError(f"{name}: some requests were not 2xx")
            results[name] = {
                "get": get_rate,
                "wrk": wrk_rate(port, f"/a/{view_token}", seconds, connections),
                "post": post_rate,
            }
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        shutil.rmtree(home, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--posts", type=int, default=6000)
    parser.add_argument(
        "--fast-stack", action="store_true", help="uvloop and httptools on both"
    )
    args = parser.parse_args()
    stack = FAST_STACK if args.fast_stack else PLAIN_STACK
    results = measure(args.seconds, args.connections, args.posts, stack)
    base = results["bare"]
    print(
        f"uvicorn {' '.join(stack)}, 1 worker, "
        f"{args.connections} keep-alive connections; one run\n"
    )
    print(
        "| endpoint | GET /a/{token} req/s | × bare | GET (wrk) | × bare "
        "| POST (fresh) req/s | × bare |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, rates in results.items():
        wrk = rates["wrk"]
        wrk_text = (
            "— | —" if wrk is None else f"{wrk:,.0f} | {wrk / (base['wrk'] or 1):.2f}×"
        )
        get, post = rates["get"] or 0, rates["post"] or 0
        print(
            f"| {name} | {get:,.0f} | {get / (base['get'] or 1):.2f}× "
            f"| {wrk_text} | {post:,.0f} | {post / (base['post'] or 1):.2f}× |"
        )


PLAIN_STACK = ("--loop", "asyncio", "--http", "h11")  # what `actionlinks serve` runs
FAST_STACK = ("--loop", "uvloop", "--http", "httptools")  # pip install uvloop httptools


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
