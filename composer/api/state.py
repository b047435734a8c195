"""Everything one app instance holds: settings, the services (once loaded), the page service,
the worker pool, metrics. Handlers reach it through dependency injection."""

from __future__ import annotations

import gc
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TypeAlias

from litestar.di import NamedDependency

from composer.api.config import ApiSettings
from composer.api.errors import NotReady
from composer.api.metrics import ApiMetrics
from composer.api.pages import PageService
from composer.api.security.access import Access
from composer.api.security.limits import WindowLimiter
from composer.api.services import Services
from composer.settings import Settings

log = logging.getLogger("composer.api")


class ApiState:
    def __init__(
        self, settings: Settings, api: ApiSettings, services: Services | None = None
    ) -> None:
        self.settings = settings
        self.api = api
        self.metrics = ApiMetrics()
        self.access = Access.from_settings(api)
        self.requests_per_key = WindowLimiter(
            "page and copy requests per API key", api.requests_per_minute_per_key
        )
        self.events_per_key = WindowLimiter("events per API key", api.events_per_minute_per_key)
        self.events_per_shopper = WindowLimiter(
            "events per shopper", api.events_per_minute_per_shopper
        )
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        self.services: Services | None = None
        self.pages: PageService | None = None
        self.load_error: str | None = None
        self._owns_services = services is None
        self._loader: threading.Thread | None = None
        if services is not None:
            self._install(services)

    def executor(self) -> ThreadPoolExecutor:
        """The worker pool (made on first use, again after :meth:`close`)."""
        with self._executor_lock:
            if self._executor is None:
                # LLM jobs hold a thread each for as long as they generate; the pool has
                # room for all of them on top of the threads for everything else.
                size = self.api.threads + self.api.llm_slots(self.settings.llm_backend)
                self._executor = ThreadPoolExecutor(size, thread_name_prefix="composer-api")
            return self._executor

    # -- loading ----------------------------------------------------------------------------

    def _install(self, services: Services) -> None:
        self.pages = PageService(services, self.api, self.metrics, self.executor)
        self.services = services

    def start_loading(self) -> None:
        """Load the services in the background: ``/healthz`` answers at once, ``/readyz`` and
        the page endpoints say 503 until the models are in memory."""
        if self.services is not None or self._loader is not None:
            return

        def load() -> None:
            try:
                services = Services.load(self.settings)
            except Exception as exc:
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.error("services failed to load", extra={"error": self.load_error})
                return
            try:
                services.warm_up()
            except Exception as exc:  # the first real request will say what is wrong
                log.warning("warm-up page failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            freeze_loaded_objects()
            self._install(services)
            log.info(
                "services loaded",
                extra={"seconds": services.load_seconds, "llm_backend": self.settings.llm_backend},
            )

        self._loader = threading.Thread(target=load, name="composer-api-load", daemon=True)
        self._loader.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        if self._loader is not None:
            self._loader.join(timeout)
        return self.services is not None

    def require(self) -> tuple[Services, PageService]:
        if self.services is None or self.pages is None:
            if self.load_error:
                raise NotReady(f"the service failed to load: {self.load_error}", 30)
            raise NotReady("the service is loading its models; retry shortly")
        return self.services, self.pages

    def close(self) -> None:
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_services and self.services is not None:
            self.services.close()
            self.services = self.pages = None
            self._loader = None
            # Frozen objects are never freed; extension modules report them as leaks at exit.
            gc.unfreeze()


def freeze_loaded_objects() -> None:
    """Keep the half a million objects of the loaded models and catalog out of every later
    garbage collection. A full collection over them took over half a second, and under
    load every request in flight waited for it: the p99 at concurrency 16 was that pause."""
    gc.collect()
    gc.freeze()


Api: TypeAlias = NamedDependency[ApiState]
"""How handlers ask for the state: ``api: Api`` (injected by name)."""
