"""Requests per second of `actionlinks serve` with 1, 2 and 4 worker processes.

Each run starts the installed command on a fresh home, mints one link, and a
keep-alive load generator in its own process sends ``GET /a/{token}`` over 8
connections for a fixed time (the load generator of ``bench/service.py``).
More workers must never be slower than one. Run with
``.venv/bin/python bench/workers.py`` from the repository root.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service import free_port, get_request, measure_load

SCRIPT = Path(sys.executable).with_name("actionlinks")


@contextmanager
def serving(
    workers: int, extra: dict[str, str] | None = None
) -> Iterator[tuple[int, dict[str, str]]]:
    """`actionlinks serve --workers N` on a fresh home: its port and environment."""
    with tempfile.TemporaryDirectory() as home:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONLINKS_")}
        env.update(extra or {})
        env.update(
            ACTIONLINKS_HOME=home, ACTIONLINKS_BASE_URL=f"http://127.0.0.1:{port}"
        )
        subprocess.run([SCRIPT, "init"], env=env, capture_output=True, check=True)
        server = subprocess.Popen(
            [SCRIPT, "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            time.sleep(1 + workers)  # every worker up before the clock starts
            yield port, env
        finally:
            server.terminate()
            server.wait()


def requests_per_second(workers: int, seconds: float, connections: int) -> float:
    with serving(workers) as (port, env):
        minted = subprocess.run(
            [SCRIPT, "mint", "email-confirm", "--sub", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        path = minted.stdout.strip().split(str(port), 1)[1]
        rate, ok, done = measure_load(port, [get_request(path)], seconds, connections)
        if ok != done:
            raise RuntimeError(f"{done - ok} of {done} requests failed")
        return float(rate)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    rates = {
        workers: requests_per_second(workers, args.seconds, args.connections)
        for workers in (1, 2, 4)
    }
    cores = os.cpu_count()
    print(
        f"Python {sys.version.split()[0]}; {cores} cores; GET /a/{{token}}, "
        f"{args.connections} keep-alive connections, {args.seconds:g} s; one run\n"
    )
    print("| serve --workers | req/s | × one worker |")
    print("|---:|---:|---:|")
    for workers, rate in rates.items():
        print(f"| {workers} | {rate:,.0f} | {rate / rates[1]:.2f}× |")


if __name__ == "__main__":
    main()
