"""The serving socket: every accepted connection has TCP_NODELAY, in any worker."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from actionlinks.server import listen

pytestmark = pytest.mark.integration


async def nodelay_of_accepted(listening: socket.socket) -> int:
    """Serve ``listening`` with asyncio, as uvicorn does; TCP_NODELAY of a
    connection it accepts."""
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[int] = loop.create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport):
            option = transport.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY
            )
            seen.set_result(option)
            transport.close()

    server = await loop.create_server(Probe, sock=listening)
    try:
        host, port = listening.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        return await asyncio.wait_for(seen, 10)
    finally:
        server.close()


async def test_connections_accepted_by_a_worker_process_have_tcp_nodelay():
    """A worker gets the socket rebuilt from its family, type and protocol (as
    multiprocessing does); asyncio then sets TCP_NODELAY on what it accepts."""
    bound = listen("127.0.0.1", 0)
    try:
        rebuilt = socket.socket(
            bound.family, bound.type, bound.proto, fileno=os.dup(bound.fileno())
        )
        rebuilt.listen(8)
        rebuilt.settimeout(0.0)  # non-blocking, as asyncio wants
        assert bound.proto == socket.IPPROTO_TCP
        assert await nodelay_of_accepted(rebuilt) == 1
    finally:
        bound.close()


async def test_a_socket_without_its_protocol_would_leave_nagle_on():
    """Why listen() names TCP: the same socket made with protocol 0 (as a
    plain socket.socket() is) gets no TCP_NODELAY from asyncio."""
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(("127.0.0.1", 0))
    plain.listen(8)
    plain.settimeout(0.0)  # non-blocking, as asyncio wants
    try:
        assert await nodelay_of_accepted(plain) == 0
    finally:
        plain.close()
