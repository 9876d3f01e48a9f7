"""The web layer: everything Starlette serves for a service.

- :mod:`~actionlinks.web.app`: :func:`create_app` (routes only; mounted or
  standalone) and :func:`app_from_env` (what ``actionlinks serve`` runs).
- :mod:`~actionlinks.web.pages` and :mod:`~actionlinks.web.forms`: the
  confirmation pages and the strict form parser.
- :mod:`~actionlinks.web.api` and :mod:`~actionlinks.web.api_webhooks`: the
  ``/v1/`` HTTP API, described by :mod:`~actionlinks.web.openapi`.
- :mod:`~actionlinks.web.metrics`: Prometheus metrics and the redacted
  request log.
"""

from actionlinks.web.app import app_from_env, create_app

__all__ = ["app_from_env", "create_app"]
