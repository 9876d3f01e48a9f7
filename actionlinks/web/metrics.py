"""Prometheus metrics and the request log, with tokens redacted from every path.

Counters of links minted, viewed, used and rejected (by reason) and a request
latency histogram per route, rendered in the Prometheus text format. The ASGI
middleware times each request and logs it by the route it matched, wherever the
app is mounted: ``/links/a/{token}`` is logged as ``/links/a/…``. A path that
matched no route is logged percent-encoded (no forged lines) with every long
segment, where a token could hide, shown as ``…``.
"""

from __future__ import annotations

import logging
import re
import time
from bisect import bisect_left
from collections import defaultdict
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.routing import Mount

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_log = logging.getLogger("actionlinks.access")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
_SECRET_PARAMS = frozenset({"token"})
# Label values come from this set only: a client inventing methods must not
# invent time series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LONGEST_SEGMENT = 32
_SAFE = "/:@!$&'()*+,;=-._~"


def _encoded(text: str) -> str:
    """``text`` percent-encoded: no control character reaches the log."""
    return quote(text, safe=_SAFE)


def loggable_path(scope: Scope) -> str:
    """The request path for the log: its route with secrets redacted, escaped."""
    root = _encoded(scope.get("root_path", ""))
    route = scope.get("route")
    template = getattr(route, "path", None)
    if template is None or isinstance(route, Mount):
        segments = _encoded(scope["path"]).split("/")
        return "/".join(s if len(s) <= _LONGEST_SEGMENT else "…" for s in segments)
    params = scope.get("path_params", {})

    def shown(found: re.Match[str]) -> str:
        name = found.group(1)
        return "…" if name in _SECRET_PARAMS else _encoded(str(params.get(name, "")))

    return root + _PARAM.sub(shown, template)  # route templates are our own text


class Metrics:
    """The service's counters and latency histogram (per process)."""

    __slots__ = ("_counts", "_latency", "_latency_count", "_latency_sum")

    def __init__(self) -> None:
        """Start from zero."""
        self._counts: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[tuple[str, str], list[int]] = {}
        self._latency_sum: dict[tuple[str, str], float] = defaultdict(float)
        self._latency_count: dict[tuple[str, str], int] = defaultdict(int)

    def count(self, name: str, label: str, value: str) -> None:
        """Add one to counter ``name`` with one label."""
        self._counts[name, label, value] += 1

    def observe(self, route: str, method: str, seconds: float) -> None:
        """Record one request's latency."""
        key = (route, method)
        buckets = self._latency.setdefault(key, [0] * len(_BUCKETS))
        index = bisect_left(_BUCKETS, seconds)
        if index < len(buckets):
            buckets[index] += 1
        self._latency_sum[key] += seconds
        self._latency_count[key] += 1

    def render(self) -> str:
        """The Prometheus text exposition."""
        lines: list[str] = []
        helps = {
            "actionlinks_links_minted_total": "Links minted, by action.",
            "actionlinks_links_viewed_total": "Confirmation pages shown, by action.",
            "actionlinks_links_used_total": "Links redeemed, by action.",
            "actionlinks_links_rejected_total": "Rejected link attempts, by reason.",
        }
        for name, description in helps.items():
            lines += [f"# HELP {name} {description}", f"# TYPE {name} counter"]
            for (metric, label, value), count in sorted(self._counts.items()):
                if metric == name:
                    lines.append(f'{name}{{{label}="{_escape(value)}"}} {count}')
        histogram = "actionlinks_request_duration_seconds"
        lines += [
            f"# HELP {histogram} Request latency, by route and method.",
            f"# TYPE {histogram} histogram",
        ]
        for (route, method), buckets in sorted(self._latency.items()):
            labels = f'route="{_escape(route)}",method="{method}"'
            cumulative = 0
            for bound, count in zip(_BUCKETS, buckets, strict=True):
                cumulative += count
                lines.append(
                    f'{histogram}_bucket{{{labels},le="{bound}"}} {cumulative}'
                )
            total = self._latency_count[route, method]
            lines.append(f'{histogram}_bucket{{{labels},le="+Inf"}} {total}')
            lines.append(
                f"{histogram}_sum{{{labels}}} {self._latency_sum[route, method]:.6f}"
            )
            lines.append(f"{histogram}_count{{{labels}}} {total}")
        return "\n".join(lines) + "\n"


class TimingMiddleware:
    """Times every HTTP request into :class:`Metrics` and logs it, redacted."""

    __slots__ = ("_app", "_metrics")

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        """Wrap ``app``."""
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and log method, redacted path, status and latency."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "other"
            self._metrics.observe(template, method, elapsed)
            if _log.isEnabledFor(logging.INFO):  # the redaction is not free
                _log.info(
                    "%s %s %d %.1fms",
                    _encoded(scope["method"]),
                    loggable_path(scope),
                    status,
                    elapsed * 1000,
                )
