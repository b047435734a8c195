"""Products and shoppers' events over HTTP: store reads and writes, in a thread pool of their
own, so a burst of events does not wait behind pages being composed, nor pages behind it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

from composer.api.services import Services
from composer.api.threads import in_thread
from composer.rendering import PageRenderer
from retrieval import Product
from retrieval.records import Interaction

T = TypeVar("T")

MAX_ID = 128  # longer ids are never looked up in the store


class CatalogService:
    def __init__(
        self,
        services: Services,
        invalidate: Callable[[str], int],
        executor: Callable[[], Executor],
    ) -> None:
        self.services = services
        self.catalog = services.retriever.catalog
        self.store = services.store
        self.renderer: PageRenderer = services.renderer
        self.invalidate = invalidate
        self.executor = executor

    async def product(self, product_id: str) -> Product | None:
        i = self.catalog.index.get(product_id)
        if i is not None:
            return self.catalog.products[i]
        # Products ingested after start-up are in the store, not yet in the loaded catalog.
        if len(product_id) <= MAX_ID:
            return await in_thread(self.executor(), self.store.product, product_id)
        return None

    async def record(self, shopper_id: str, events: Sequence[Interaction]) -> tuple[list[int], int]:
        """Event ids written (in one transaction; repeats of recorded events left out) and
        the shopper's cached pages dropped. Raises ``UnknownProductError`` writing none."""
        ids = await in_thread(self.executor(), self.store.add_events, events, True)
        return ids, (self.invalidate(shopper_id) if ids else 0)

    async def checks(self) -> dict[str, Any]:
        """What ``/readyz`` reports; raises when the store cannot be reached."""
        return await in_thread(self.executor(), self.services.checks)
