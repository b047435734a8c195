"""Run the page API under uvicorn: ``serve(settings, host, port, workers)``.

One worker runs the app object built here. Several workers are processes started by
:mod:`composer.api.workers`, each with its own socket on the port; each calls
:func:`composer.api.factory.app_from_env`, which rebuilds the same settings from
``COMPOSER_SERVE_SETTINGS`` (the parent's settings as JSON) or else from the environment.

Every worker loads its own models and keeps its own page cache, shopper histories and
metrics; cached pages are keyed by the shopper's latest event id and cached histories read
the events after their last one, so neither is served stale after another worker recorded
an event.

``python -m composer.api.server [--host H] [--port P] [--workers N]`` serves with settings
from the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from composer.api.app import create_app

# app_from_env is re-exported: `uvicorn --factory composer.api.server:app_from_env` worked
# before it moved to factory.py.
from composer.api.factory import SETTINGS_ENV, app_from_env, limit_blas_threads, settings_json
from composer.api.logs import configure_logging
from composer.api.security.access import Access
from composer.api.security.exposure import check_exposure, with_local_credentials
from composer.api.workers import Supervisor
from composer.errors import UsageError
from composer.settings import Settings

GRACEFUL_SHUTDOWN_S = 10

__all__ = ["GRACEFUL_SHUTDOWN_S", "app_from_env", "serve"]


def _announce(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    announce: Callable[[str], None] = _announce,
) -> None:
    """Serve until SIGINT/SIGTERM. Loading the models happens after the socket is open:
    ``/healthz`` answers at once, ``/readyz`` turns 200 when the service can make pages.

    Off loopback it refuses loopback-only defaults (:func:`check_exposure`); on loopback
    without keys it makes a key for the run and ``announce``s it with a page link."""
    import uvicorn

    if workers < 1:
        raise ValueError("workers must be at least 1")
    check_exposure(settings, host)
    settings, made_key = with_local_credentials(settings)
    if made_key:
        base = f"http://{host}:{port}"
        announce(f"API key for this run (all scopes): {made_key}")
        shopper = _some_shopper(settings)
        if shopper is not None:
            access = Access.from_settings(settings.api)
            link = access.links.page_link(shopper, settings.api.link_ttl_s)
            minutes = settings.api.link_ttl_s // 60
            announce(f"a shopper's page, valid {minutes} min: {base}{link.path()}")
    level = settings.api.log_level
    configure_logging(level)
    limit_blas_threads(settings.api.blas_threads)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,  # keep the JSON-lines handlers configure_logging installed
        "access_log": False,  # it would log raw paths, raw shopper ids included
        "log_level": level.lower(),
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "proxy_headers": False,
        "limit_concurrency": settings.api.max_connections,
    }
    if workers == 1:
        uvicorn.run(create_app(settings), **common)
        return
    # The workers are new processes (spawned): they rebuild these settings from the
    # environment, and find the BLAS limit there too.
    os.environ[SETTINGS_ENV] = settings_json(settings)
    code = Supervisor(workers, common).run()
    if code:
        raise SystemExit(code)


def _some_shopper(settings: Settings) -> str | None:
    """A shopper to show a page of: the one with the latest event, if the store has any."""
    from retrieval import Store

    try:
        store = Store(settings.resolved_database_url())
    except Exception:  # the store is the service's business; the link is a convenience
        return None
    try:
        return store.latest_shopper()
    except Exception:
        return None
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the page API (settings: COMPOSER_*).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        serve(Settings(), host=args.host, port=args.port, workers=args.workers)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
