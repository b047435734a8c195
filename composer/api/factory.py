"""The app as uvicorn's worker processes build it: settings from the parent, or the
environment (``uvicorn --factory composer.api.factory:app_from_env`` works on its own)."""

from __future__ import annotations

import json
import os

from litestar import Litestar

from composer.api.app import create_app
from composer.api.logs import configure_logging
from composer.api.security.exposure import check_exposure
from composer.settings import Settings

SETTINGS_ENV = "COMPOSER_SERVE_SETTINGS"


def limit_blas_threads(threads: int) -> None:
    """BLAS thread pools of this process and of the processes it starts: the libraries
    loaded already (numpy's OpenBLAS) now, the ones loaded later through the environment."""
    from threadpoolctl import threadpool_limits

    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    threadpool_limits(threads, user_api="blas")


def app_from_env() -> Litestar:
    """The app factory uvicorn's worker processes call (``--factory``).

    `serve` checked the exposure of its workers' settings before it started them. Started
    by hand (``uvicorn --factory …``), the factory cannot know which address uvicorn
    binds, so it demands what an exposed server needs."""
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings(**json.loads(raw)) if raw else Settings()
    if not raw:
        check_exposure(settings, "an address chosen outside `composer serve`")
    api = settings.api
    configure_logging(api.log_level)
    limit_blas_threads(api.blas_threads)
    return create_app(settings)


def settings_json(settings: Settings) -> str:
    """``settings`` as JSON for the worker processes, secrets included (pydantic masks
    them): the environment of our own children, never a log or a file."""
    data = json.loads(settings.model_dump_json())
    secret = settings.api.link_secret
    data["api"]["link_secret"] = secret.get_secret_value() if secret else None
    return json.dumps(data)
