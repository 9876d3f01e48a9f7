"""Running the app under uvicorn, with the access log off (it would log tokens).

The app logs each request itself with link tokens redacted
(:mod:`actionlinks.metrics`). Settings reach the workers through the
environment they inherit.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from actionlinks.settings import Settings

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


def serve_forever(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve ``actionlinks.web:app_from_env`` until interrupted."""
    os.environ["ACTIONLINKS_HOME"] = str(settings.home)
    uvicorn.run(
        "actionlinks.web:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=LOG_CONFIG,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
