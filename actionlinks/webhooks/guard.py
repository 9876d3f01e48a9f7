"""Where webhooks may go: public addresses only, checked on the connection itself.

A destination is refused when any address its host resolves to is not public:
private, loopback, link-local, shared, reserved, multicast, or an IPv6 form that
carries such an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4,
Teredo). The check runs inside the HTTP client's connect step, on the very
addresses it connects to, and the connected peer is checked again: a DNS answer
that changes between a check and the connection (rebinding) gains nothing.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpcore
import httpx
from anyio.lowlevel import RunVar

from actionlinks.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from httpcore import AsyncNetworkStream

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
_SITE_LOCAL = ipaddress.IPv6Network("fec0::/10")  # deprecated, still routed locally
_LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: local use
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
_UNSAFE = re.compile(r'[\x00-\x20\x7f"<>\\^`{|}]')


def is_public_address(address: str) -> bool:
    """Whether ``address`` (IPv4 or IPv6 text) is a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return embedded.is_global and not embedded.is_multicast
        if ip in _IPV4_COMPATIBLE or ip in _LOCAL_NAT64 or ip in _SITE_LOCAL:
            return False  # ::a.b.c.d (deprecated) and local NAT64 reach IPv4 hosts
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _TRANSLATED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def ipv4_literal(host: str) -> str | None:
    """The dotted form of ``host`` if it is an IPv4 address in any form.

    ``127.1``, ``2130706433``, ``0x7f000001`` and ``0177.0.0.1`` are all
    127.0.0.1 to the C resolver a connection uses.
    """
    if not host or not all(c in "0123456789abcdefxABCDEFX." for c in host):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    host = host.strip("[]")
    if host.endswith(".") and not host.endswith(".."):
        host = host[:-1]  # "127.0.0.1." resolves as 127.0.0.1
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        dotted = ipv4_literal(host)
        return None if dotted is None else ipaddress.IPv4Address(dotted)


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    name = host.rstrip(".").lower()  # "localhost." is localhost
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):  # RFC 6761
        return True
    ip = _ip(host)
    return ip is not None and ip.is_loopback


def is_private_literal(host: str) -> bool:
    """Whether ``host`` names this machine or is a literal non-public address.

    (A DNS name is only judged when a webhook connects.)
    """
    if is_loopback_host(host):
        return True
    ip = _ip(host)
    return ip is not None and not is_public_address(str(ip))


def check_url(url: str, *, what: str) -> str:
    """Return ``url`` if it is an absolute ``https`` URL (``http`` only to loopback).

    Webhooks carry what people typed (a new password): plain HTTP is allowed
    only to this machine.

    Raises:
        ConfigurationError: another scheme, no host, credentials, or plain
            ``http`` to another machine.
    """
    try:
        if _UNSAFE.search(url):
            raise ValueError(url)  # noqa: TRY301 - one message for every bad URL
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(f"{what} is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"{what} must be an https:// URL")
    try:
        httpx.URL(url)  # the parser that will send to it (IDNA, ports, …)
        url.encode("utf-8")
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ConfigurationError(f"{what} is not a valid URL") from exc
    if parts.username or parts.password:
        raise ConfigurationError(f"{what} must not carry credentials")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"{what} must be https:// (plain http only to localhost): "
            "webhooks carry what people typed"
        )
    return url


class DestinationRefusedError(httpcore.ConnectError):
    """A webhook destination resolved to, or connected to, a non-public address."""


RESOLVE_TIMEOUT = 5.0
"""Seconds a DNS lookup may take (as long as connecting may)."""
RESOLVER_THREADS = 64
"""Lookups in flight at once, in threads of their own (not the database's)."""
SLOW_FOR = 30.0
"""Seconds a name whose lookup timed out fails at once (its lookup goes on)."""


class _Lookup:
    """One DNS lookup that every concurrent caller for the same host shares."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.addresses: list[str] | None = None
        self.error: BaseException | None = None


# Per event loop: its events and limiter cannot serve another loop.
_LOOKUPS: RunVar[dict[tuple[str, int], _Lookup]] = RunVar("actionlinks_lookups")
_THREADS: RunVar[anyio.CapacityLimiter] = RunVar("actionlinks_resolver_threads")
_SLOW: RunVar[dict[str, float]] = RunVar("actionlinks_slow_names")


async def _resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host``, looked up once for all who ask at once.

    A DNS server that never answers must not take every thread (and with them
    every other endpoint's deliveries, or the database's work): lookups run
    in threads of their own, concurrent lookups of one host share one, and
    every wait ends after ``RESOLVE_TIMEOUT``. A literal needs no lookup.
    """
    literal = _ip(host)
    if literal is not None:
        return [str(literal)]
    try:
        lookups = _LOOKUPS.get()
    except LookupError:
        lookups = {}
        _LOOKUPS.set(lookups)
    try:
        slow = _SLOW.get()
    except LookupError:
        slow = {}
        _SLOW.set(slow)
    if slow.get(host, 0.0) > anyio.current_time():  # hung a moment ago
        raise httpcore.ConnectError(f"resolving {host[:64]!r} timed out recently")
    key = (host, port)
    lookup = lookups.get(key)
    with anyio.move_on_after(RESOLVE_TIMEOUT):
        if lookup is None:
            lookup = lookups[key] = _Lookup()
            try:
                lookup.addresses = await _lookup(host, port)
            except httpcore.ConnectError as exc:
                lookup.error = exc
            finally:
                lookups.pop(key, None)
                lookup.done.set()
        else:
            await lookup.done.wait()
        if lookup.addresses is not None:
            return lookup.addresses
        raise httpcore.ConnectError(f"cannot resolve {host[:64]!r}") from lookup.error
    if len(slow) > 10_000:  # bounded: forget the oldest half
        for name in sorted(slow, key=slow.__getitem__)[:5_000]:
            del slow[name]
    slow[host] = anyio.current_time() + SLOW_FOR
    raise httpcore.ConnectError(f"resolving {host[:64]!r} took too long")


async def _lookup(host: str, port: int) -> list[str]:
    try:
        threads = _THREADS.get()
    except LookupError:
        threads = anyio.CapacityLimiter(RESOLVER_THREADS)
        _THREADS.set(threads)
    try:
        found = await anyio.to_thread.run_sync(
            lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM),
            abandon_on_cancel=True,
            limiter=threads,
        )
    except (OSError, UnicodeError) as exc:
        raise httpcore.ConnectError(f"cannot resolve {host[:64]!r}") from exc
    addresses: list[str] = []
    for family, _, _, _, sockaddr in found:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
    return addresses


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects to public addresses only.

    Args:
        inner: the backend that makes the connections.
        allow_private: check nothing (``ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE``),
            but still resolve names with the bounded, shared lookups.
    """

    def __init__(
        self,
        inner: httpcore.AsyncNetworkBackend | None = None,
        *,
        allow_private: bool = False,
    ) -> None:
        """Wrap ``inner`` (anyio's backend by default)."""
        self._inner = inner or httpcore.AnyIOBackend()
        self._public_only = not allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> AsyncNetworkStream:
        """Resolve ``host``, refuse it unless every address is public, connect.

        Raises:
            DestinationRefusedError: a non-public address.
            httpcore.ConnectError: no address answered.
        """
        addresses = await _resolve(host, port)
        if not addresses:
            raise httpcore.ConnectError(f"{host[:64]!r} has no address")
        if self._public_only and not all(is_public_address(a) for a in addresses):
            raise DestinationRefusedError("the destination is not a public address")
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            peer = stream.get_extra_info("server_addr")
            if self._public_only and not (peer and is_public_address(str(peer[0]))):
                await stream.aclose()
                raise DestinationRefusedError("connected to a non-public address")
            return stream
        raise httpcore.ConnectError("no address of the destination answered") from (
            failure
        )

    async def connect_unix_socket(
        self,
        path: str,  # noqa: ARG002 - httpcore's signature
        timeout: float | None = None,  # noqa: ARG002, ASYNC109 - httpcore's signature
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,  # noqa: ARG002
    ) -> AsyncNetworkStream:
        """Never: a webhook does not go to a local socket.

        Raises:
            DestinationRefusedError: always.
        """
        raise DestinationRefusedError("unix sockets are not webhook destinations")

    async def sleep(self, seconds: float) -> None:
        """Sleep as the inner backend does."""
        await self._inner.sleep(seconds)


class PublicOnlyTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting through :class:`PublicOnlyBackend`.

    httpx does not take a network backend, so the connection pool it built is
    replaced by an equal one with the checking backend (tested: a private
    destination is refused at connect time).
    """

    def __init__(
        self, *, max_connections: int = 100, allow_private: bool = False
    ) -> None:
        """Build the pool; no proxies (they would be what is checked)."""
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=max_connections,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=PublicOnlyBackend(allow_private=allow_private),
        )


def is_refused_destination(exc: BaseException) -> bool:
    """Whether ``exc`` (an httpx error) comes from a refused destination."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, DestinationRefusedError):
            return True
        cause = cause.__cause__
    return False
