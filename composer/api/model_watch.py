"""New model versions without a restart: a thread polls the served version's name
(``index/models/CURRENT``, one small file) and, when it changes, loads that version beside
the one serving and swaps it in with one assignment. Pages in flight finish on the models
they started with; the next page uses the new ones; nobody waits for the load."""

from __future__ import annotations

import logging

from composer.api.metrics import ApiMetrics
from composer.api.services import Services
from composer.polling import Poller
from retrieval.loader import load_models
from retrieval.versions import ModelVersions

log = logging.getLogger("composer.api")


class ModelWatcher:
    def __init__(self, services: Services, interval_s: float, metrics: ApiMetrics) -> None:
        self.services = services
        self.interval_s = interval_s
        self.metrics = metrics
        self.versions = ModelVersions(services.settings.retrieval_config().index_dir)
        self._failed: str | None = (
            None  # a version that did not load: not retried until CURRENT moves
        )
        self._poller = Poller("composer-models", interval_s, self.check, "model version check")

    def start(self) -> None:
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()

    def check(self) -> bool:
        """Swap in the served version if it changed; whether it did."""
        try:
            name = self.versions.current_name()
        except OSError as exc:
            log.warning("cannot read the served model version", extra={"error": str(exc)})
            return False
        serving = self.services.retriever.model_version
        if name is None or name == serving or name == self._failed:
            return False
        try:
            models = load_models(self.versions.get(name), self.services.retriever.catalog)
        except Exception as exc:  # a half-copied or broken version: keep serving the old one
            self._failed = name
            log.error(
                "model version failed to load; still serving the previous one",
                extra={
                    "version": name,
                    "serving": serving,
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            return False
        self._failed = None
        if self._poller.stopped:  # the app closed while the version loaded
            return False
        self.services.swap_models(models)
        self.metrics.model_swaps.inc()
        log.info("model version swapped", extra={"version": name, "previous": serving})
        return True
