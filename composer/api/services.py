"""The heavy parts the API serves from, built once per process (loading takes seconds)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from composer.backends import BackendRegistry
from composer.copywriting import Copywriter
from composer.layout import Locale
from composer.page_request import PageRequest
from composer.pipeline import PageComposer
from composer.prompting import PromptLibrary
from composer.rendering import PageRenderer
from composer.settings import BackendName, Settings
from retrieval import Retriever, Store, load_retriever
from retrieval.loader import LoadedModels

log = logging.getLogger("composer.api")


@dataclass
class Services:
    """Store, retriever (embedding model, Chroma, MF), LLM backends, composer, copywriter."""

    settings: Settings
    store: Store
    retriever: Retriever
    backends: BackendRegistry
    prompts: PromptLibrary = field(default_factory=PromptLibrary)
    owns_store: bool = False
    llm_error: str | None = None
    load_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.renderer = PageRenderer(self.settings.currency, links=self.settings.link_policy())
        self.composer = PageComposer(
            self.settings, self.retriever, self.backends, self.prompts, self.renderer
        )
        self.copywriter = Copywriter(
            self.settings,
            self.retriever.catalog.by_id(),
            self.backends,
            self.prompts,
            self.composer.similarity(),
        )

    @classmethod
    def from_parts(
        cls,
        settings: Settings,
        store: Store,
        retriever: Retriever,
        backends: BackendRegistry | None = None,
    ) -> Services:
        """Services over components someone else owns (tests, an embedding program)."""
        return cls(settings, store, retriever, backends or BackendRegistry(settings))

    @classmethod
    def load(cls, settings: Settings) -> Services:
        """Open the store, load the retriever and the configured LLM backend.

        A backend that fails to load does not stop the service (pages fall back to ``rules``);
        it is reported by ``/readyz``.
        """
        from composer.provision import open_store

        t = time.perf_counter()
        store = open_store(settings)
        try:
            retriever = load_retriever(settings.retrieval_config(), store)
        except BaseException:
            store.close()
            raise
        services = cls(settings, store, retriever, BackendRegistry(settings), owns_store=True)
        services.llm_error = services.preload_backend()
        services.load_seconds = round(time.perf_counter() - t, 2)
        return services

    def swap_models(self, models: LoadedModels) -> None:
        """Serve ``models`` from the next request on (one assignment each: a request holds
        the retriever it started with)."""
        retriever = self.retriever.with_models(
            models.version, models.mf, models.popular, models.weights
        )
        self.retriever = retriever
        self.composer.retriever = retriever

    def warm_up(self) -> None:
        """Make one rules page per locale before the service says it is ready: templates
        compile, SQL statements and the vector index get their first use here, not in the
        first shoppers' requests (a cold worker added its first-use costs to the p99)."""
        # A session with one recent item: every candidate source runs, the vector index too.
        recent = self.retriever.catalog.ids[:1]
        for locale in Locale:
            self.composer.compose(
                PageRequest(
                    recent_items=recent, backend=BackendName.RULES, format="both", locale=locale
                )
            )
        self.store.history_state("")
        self.store.events_for("")

    def preload_backend(self) -> str | None:
        try:
            self.backends.get(self.settings.llm_backend)
        except Exception as exc:  # a model that is missing or broken: serve rules pages
            log.error(
                "LLM backend failed to load; pages fall back to rules",
                extra={"backend": self.settings.llm_backend, "error": str(exc)},
            )
            return f"{type(exc).__name__}: {exc}"
        ahead = self.settings.ahead
        if ahead.enabled and ahead.words_model and self.settings.llm_backend != "rules":
            # Loaded before the service is ready, like the page model: a first compose ahead
            # must not spend its deadline loading (or fetching) a model. Failing here costs
            # the pages composed ahead (their composes fail and are logged), not the others.
            try:
                self.backends.get(self.settings.llm_backend, ahead.words_model)
            except Exception as exc:
                log.error(
                    "words model for pages composed ahead failed to load",
                    extra={"model": ahead.words_model, "error": str(exc)},
                )
        return None

    def checks(self) -> dict[str, Any]:
        """What ``/readyz`` reports; raises when the store cannot be reached."""
        last_event = self.store.last_event_id()
        return {
            "store": "ok",
            "last_event_id": last_event,
            "products": len(self.retriever.catalog),
            "embedding_model": self.settings.embedding_model,
            "llm_backend": self.settings.llm_backend,
            "model_version": self.retriever.model_version,
            "llm": "ok" if self.llm_error is None else f"failed: {self.llm_error}",
            # Which server process answered: with several workers each loads on its own.
            "pid": os.getpid(),
        }

    def close(self) -> None:
        if self.owns_store:
            self.store.close()
