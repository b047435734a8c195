"""Everything one app instance holds: settings, access, limits, metrics, and once the models
are loaded the three services handlers are given (pages, copy, catalog) with their worker
pools. Handlers reach them through dependency injection, each asking only for what it uses."""

from __future__ import annotations

import gc
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TypeAlias, TypeVar

from litestar.di import NamedDependency

from composer.ahead import AheadWorker, ComposeAhead
from composer.api.catalog import CatalogService
from composer.api.copy import CopyService
from composer.api.errors import NotReady
from composer.api.llm_queue import LLMQueue
from composer.api.metrics import ApiMetrics
from composer.api.model_watch import ModelWatcher
from composer.api.pages import PageService
from composer.api.security.access import Access
from composer.api.security.limits import WindowLimiter
from composer.api.services import Services
from composer.experiments import ExperimentRegistry, ExperimentWatch, ExposureLog
from composer.settings import ApiSettings, BackendName, Settings
from retrieval import AheadStore
from retrieval.exposures import ExposureStore

log = logging.getLogger("composer.api")
T = TypeVar("T")


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
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._executor_lock = threading.Lock()
        self.services: Services | None = None
        self.pages: PageService | None = None
        self.copy: CopyService | None = None
        self.catalog: CatalogService | None = None
        self.load_error: str | None = None
        self.watcher: ModelWatcher | None = None
        self.experiment_watch: ExperimentWatch | None = None
        self.exposures: ExposureLog | None = None
        self.ahead_worker: AheadWorker | None = None
        self._closed = False
        self._owns_services = services is None
        self._loader: threading.Thread | None = None
        if services is not None:
            self._install(services)

    def executor(self) -> ThreadPoolExecutor:
        """The pages' worker pool (made on first use, again after :meth:`close`)."""
        # LLM jobs hold a thread each for as long as they generate; the pool has room for
        # all of them on top of the threads for everything else.
        return self._pool("pages", self.api.threads + self.api.llm_slots(self.settings.llm_backend))

    def store_executor(self) -> ThreadPoolExecutor:
        """The pool of product lookups and event writes."""
        return self._pool("store", self.api.threads)

    def _pool(self, name: str, size: int) -> ThreadPoolExecutor:
        with self._executor_lock:
            if name not in self._executors:
                self._executors[name] = ThreadPoolExecutor(
                    size, thread_name_prefix=f"composer-{name}"
                )
            return self._executors[name]

    # -- loading ----------------------------------------------------------------------------

    def _install(self, services: Services) -> None:
        queue = LLMQueue(self.settings, self.api, self.metrics, self.executor)
        store = ExposureStore(services.store.engine)
        conf = self.settings.experiments
        registry = ExperimentRegistry(self.settings.resolved_experiments_dir())
        if conf.exposure_log and not self._closed:
            self.exposures = ExposureLog(
                store, conf.flush_s, conf.batch_size, on_written=self.metrics.exposures_written
            )
        ahead = None
        # With the rules backend served, every page is there at once: nothing to compose.
        if self.settings.ahead.enabled and self.settings.llm_backend != BackendName.RULES:
            ahead = ComposeAhead(
                self.settings.ahead,
                AheadStore(services.store.engine),
                lambda: services.retriever.catalog.by_id(),
            )
        pages = PageService(
            services, self.api, self.metrics, queue, self.executor, registry, self.exposures,
            ahead,
        )  # fmt: skip
        if ahead is not None and not self._closed:
            self.ahead_worker = AheadWorker(ahead, pages, self.metrics)
            self.ahead_worker.start()
        registry.check = pages.check_experiment
        if not self._closed:
            self.experiment_watch = ExperimentWatch(
                registry, store, conf.poll_s, conf.guardrail_check_s, self.metrics.experiments
            )
            self.experiment_watch.start()
        copy = CopyService(services, self.metrics, queue)
        catalog = CatalogService(services, pages.invalidate, self.store_executor)
        self.services, self.pages, self.copy = services, pages, copy
        if self.api.model_poll_s > 0 and not self._closed:
            self.watcher = ModelWatcher(services, self.api.model_poll_s, self.metrics)
            self.watcher.start()
        self.catalog = catalog  # last: /readyz says ready once it is set

    def start_loading(self) -> None:
        """Load the services in the background: ``/healthz`` answers at once, ``/readyz`` and
        the page endpoints say 503 until the models are in memory."""
        self._closed = False
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

    def _loaded(self, service: T | None) -> T:
        if service is None:
            if self.load_error:
                raise NotReady(f"the service failed to load: {self.load_error}", 30)
            raise NotReady("the service is loading its models; retry shortly")
        return service

    def page_service(self) -> PageService:
        return self._loaded(self.pages)

    def copy_service(self) -> CopyService:
        return self._loaded(self.copy)

    def catalog_service(self) -> CatalogService:
        return self._loaded(self.catalog)

    def close(self) -> None:
        self._closed = True
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.experiment_watch is not None:
            self.experiment_watch.stop()
            self.experiment_watch = None
        if self.ahead_worker is not None:
            self.ahead_worker.stop()
            self.ahead_worker = None
        if self.exposures is not None:
            # Before the store closes: a clean stop loses no exposure.
            self.exposures.close()
            self.exposures = None
        with self._executor_lock:
            executors, self._executors = list(self._executors.values()), {}
        for executor in executors:
            executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_services and self.services is not None:
            self.services.close()
            self.services = self.pages = self.copy = self.catalog = None
            self._loader = None
            # Frozen objects are never freed; extension modules report them as leaks at exit.
            gc.unfreeze()


def freeze_loaded_objects() -> None:
    """Keep the half a million objects of the loaded models and catalog out of every later
    garbage collection. A full collection over them took over half a second, and under
    load every request in flight waited for it: the p99 at concurrency 16 was that pause."""
    gc.collect()
    gc.freeze()


# How handlers ask for what they use, injected by name: ``api: Api`` (settings, access,
# limits, metrics), ``pages: Pages``, ``copy: Copy``, ``catalog: Catalog`` (503 until loaded).
Api: TypeAlias = NamedDependency[ApiState]
Pages: TypeAlias = NamedDependency[PageService]
Copy: TypeAlias = NamedDependency[CopyService]
Catalog: TypeAlias = NamedDependency[CatalogService]
