"""Mail throughput: the durable outbox and its worker against a bare aiosmtplib loop.

An SMTP server (aiosmtpd, taking every mail with 250) runs in its own process.
The bare loop sends N already rendered password-reset mails over one
aiosmtplib connection, one after the other. actionlinks sends the same number:

- *worker*: N mails accepted beforehand (each minted, rendered, stored in
  SQLite); the clock runs from the service's start to the last attempt
  recorded as delivered: claim, send over its reused connections, record;
  with one connection (as the bare loop) and with the default four;
- *accept + send*: the clock runs from the first ``MailHub.send`` (mint,
  render, compose, store) to the last delivery, the worker sending meanwhile.

Run with ``.venv/bin/python bench/mail.py`` after ``pip install '.[test]'``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

from actionlinks.clock import SystemClock
from actionlinks.home import initialize
from actionlinks.service import Service
from actionlinks.settings import Settings

N = 2000
SERVER = """
import asyncio, sys
from aiosmtpd.controller import Controller

class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(directory: Path) -> tuple[subprocess.Popen[str], int]:
    (directory / "smtp_sink.py").write_text(SERVER)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(directory / "smtp_sink.py"), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if process.stdout is None or process.stdout.readline().strip() != "ready":
        raise RuntimeError("the SMTP server did not start")
    return process, port


def environment(home: Path, port: int, connections: int = 4) -> dict[str, str]:
    return {
        "ACTIONLINKS_SMTP_CONNECTIONS": str(connections),
        "ACTIONLINKS_HOME": str(home),
        "ACTIONLINKS_SMTP_HOST": "127.0.0.1",
        "ACTIONLINKS_SMTP_PORT": str(port),
        "ACTIONLINKS_SMTP_FROM": "Acme <links@acme.test>",
    }


async def accept(service: Service, count: int) -> None:
    for number in range(count):
        await service.mail.send(
            "password-reset", to=f"user{number}@example.org", subject=f"user:{number}"
        )


async def delivered(service: Service) -> int:
    database = service.store.database  # type: ignore[attr-defined]
    (done,) = await database.fetchone(
        "SELECT count(*) FROM outbox_deliveries WHERE state = 'delivered'"
    )
    return int(done)


async def wait_delivered(service: Service, count: int) -> None:
    while True:
        if await delivered(service) >= count:
            return
        await asyncio.sleep(0.005)


async def rendered_mails(home: Path, port: int) -> list[tuple[str, bytes]]:
    """N mails as the service stores them, to send with the bare loop."""
    settings = Settings.from_env(environment(home, port))
    async with Service(settings, log_warnings=False, deliver=False) as service:
        await accept(service, N)
        database = service.store.database  # type: ignore[attr-defined]
        rows = await database.fetchall(
            "SELECT d.destination, m.body FROM outbox_deliveries d "
            "JOIN outbox_messages m ON m.seq = d.message_seq"
        )
    return [(str(to), bytes(body)) for to, body in rows]


async def bare(port: int, mails: list[tuple[str, bytes]]) -> float:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await client.connect()
    started = time.perf_counter()
    for to, body in mails:
        await client.sendmail("links@acme.test", [to], body)
    elapsed = time.perf_counter() - started
    await client.quit()
    return elapsed


async def worker(home: Path, port: int, connections: int) -> float:
    """N mails stored beforehand; the time the worker takes to send them."""
    settings = Settings.from_env(environment(home, port, connections))
    async with Service(settings, log_warnings=False, deliver=False) as service:
        await accept(service, N)
    started = time.perf_counter()
    async with Service(settings, log_warnings=False) as service:
        await wait_delivered(service, N)
        return time.perf_counter() - started


async def end_to_end(home: Path, port: int) -> float:
    settings = Settings.from_env(environment(home, port))
    async with Service(settings, log_warnings=False) as service:
        started = time.perf_counter()
        await accept(service, N)
        await wait_delivered(service, N)
        return time.perf_counter() - started


def fresh_home(directory: Path, name: str, port: int) -> Path:
    home = directory / name
    home.mkdir()
    initialize(Settings.from_env(environment(home, port)), clock=SystemClock())
    return home


def measure() -> tuple[float, float, float, float]:
    """Seconds for N mails: bare loop, worker with 1 and 4 connections, end to end."""
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        process, port = start_server(directory)
        try:
            mails = asyncio.run(rendered_mails(fresh_home(directory, "r", port), port))
            if len(mails) != N or not all(b"\r\n" in body for _, body in mails):
                raise RuntimeError("the stored mails are not what is sent")
            asyncio.run(bare(port, mails[:200]))  # warm the server
            bare_s = asyncio.run(bare(port, mails))
            one_s = asyncio.run(worker(fresh_home(directory, "o", port), port, 1))
            worker_s = asyncio.run(worker(fresh_home(directory, "w", port), port, 4))
            both_s = asyncio.run(end_to_end(fresh_home(directory, "e", port), port))
        finally:
            if process.stdin is not None:
                process.stdin.close()
            process.wait()
    return bare_s, one_s, worker_s, both_s


def main() -> None:
    bare_s, one_s, worker_s, both_s = measure()
    version = sys.version.split()[0]
    print(f"Python {version}; {N} password-reset mails to aiosmtpd; one run\n")
    print("| sender | mails/s | × bare aiosmtplib |")
    print("|---|---:|---:|")
    print(f"| bare aiosmtplib loop, one connection | {N / bare_s:.0f} | 1.00× |")
    print(
        f"| actionlinks worker, one connection (claimed, sent, recorded) | "
        f"{N / one_s:.0f} | {bare_s / one_s:.2f}× |"
    )
    print(
        f"| actionlinks worker, 4 connections (the default) | "
        f"{N / worker_s:.0f} | {bare_s / worker_s:.2f}× |"
    )
    print(
        f"| actionlinks accept + send (minted, rendered, stored, sent) | "
        f"{N / both_s:.0f} | {bare_s / both_s:.2f}× |"
    )


if __name__ == "__main__":
    main()
