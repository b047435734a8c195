"""Shopper events: durable before the answer, and the shopper's cached pages are dropped."""

from __future__ import annotations

import logging
import time
from typing import ClassVar

from litestar import Controller, post

from composer.api.errors import FieldError
from composer.api.schemas import EventsBody, EventsOut
from composer.api.state import Api
from retrieval.errors import UnknownProductError
from retrieval.profile import pseudonymise
from retrieval.records import EventKind, Interaction

log = logging.getLogger("composer.api")


class EventController(Controller):
    tags: ClassVar[list[str]] = ["events"]

    @post("/v1/events", status_code=201, summary="Record shopper events", raises=[FieldError])
    async def record_events(self, data: EventsBody, api: Api) -> EventsOut:
        """Views, cart adds and purchases, written in one transaction before the answer. The
        shopper's next page folds them in; any cached page of theirs is invalidated."""
        services, pages = api.require()
        ts = data.timestamp if data.timestamp is not None else time.time()
        products = data.products()
        kind = EventKind(data.kind)
        events = [Interaction(data.shopper_id, pid, kind, ts) for pid in products]
        try:
            ids = await pages.in_thread(services.store.add_events, events)
        except UnknownProductError as exc:
            missing = exc.product_ids[0]
            raise FieldError(
                data.field_of(products.index(missing)),
                f"unknown product id '{missing}' (nothing was recorded)",
            ) from None
        dropped = pages.invalidate(data.shopper_id)
        api.metrics.events.labels(kind.value).inc(len(ids))
        shopper = pseudonymise(data.shopper_id, services.settings.pseudonym_salt)
        log.info(
            "events recorded",
            extra={
                "shopper": shopper,
                "kind": kind.value,
                "count": len(ids),
                "invalidated": dropped,
            },
        )
        return EventsOut(event_ids=ids, shopper=shopper, invalidated_pages=dropped)
