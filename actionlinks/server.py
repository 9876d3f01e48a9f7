"""Running the app under uvicorn, on a socket bound before anything is printed.

:func:`listen` binds the address itself, so that a port in use or an unknown
host is one line from the CLI (exit 2), not a uvicorn traceback. uvicorn's
access log stays off (it would print link tokens); the app logs each request
itself with tokens redacted (:mod:`actionlinks.web.metrics`). Settings reach the
workers through the environment they inherit.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.supervisors import Multiprocess

from actionlinks.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "actionlinks": {"handlers": ["stderr"], "level": "INFO"},
        "uvicorn.error": {"handlers": ["stderr"], "level": "INFO"},
    },
}


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port``, ready for uvicorn.

    Raises:
        ConfigurationError: the host does not resolve, or the address cannot
            be bound (in use, not this machine's, not permitted).
    """
    try:
        found = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(
            f"cannot listen on {host[:64]!r}: the host does not resolve"
        ) from exc
    family, kind, _, _, address = found[0]
    # Named TCP: asyncio sets TCP_NODELAY only on sockets whose protocol says
    # so, and accepted ones inherit it, in every worker process. Without it
    # Nagle's algorithm meets delayed ACKs and a keep-alive request waits 40 ms.
    sock = socket.socket(family, kind, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host[:64]}:{port}: {exc.strerror or exc}"
        ) from exc
    sock.set_inheritable(True)  # the worker processes serve it too
    return sock


def serve_forever(sock: socket.socket, *, workers: int, env: Mapping[str, str]) -> None:
    """Serve ``actionlinks.web:app_from_env`` on ``sock`` until interrupted.

    Args:
        sock: the bound socket (see :func:`listen`).
        workers: how many worker processes (one serves in this process).
        env: ``ACTIONLINKS_*`` settings for the app (and the workers).
    """
    os.environ.update(env)
    config = uvicorn.Config(
        "actionlinks.web:app_from_env",
        factory=True,
        workers=workers,
        access_log=False,
        log_config=LOG_CONFIG,
        server_header=False,
        proxy_headers=False,
        # asyncio and h11 whatever else is installed: httptools buffers a header
        # of any size (one client trickling an endless header grows a worker and
        # stalls its loop; h11 refuses a request head past 16 KiB), and uvloop
        # with h11 served no more GETs and fewer POSTs here (bench/run).
        loop="asyncio",
        http="h11",
        timeout_graceful_shutdown=10,
    )
    if workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
