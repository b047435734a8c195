"""Shopper events: durable before the answer, and the shopper's cached pages are dropped."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from litestar import Controller, Request, post

from composer.api.errors import FieldError
from composer.api.schemas import EventsBody, EventsOut
from composer.api.security.access import caller
from composer.api.state import Api, Catalog
from composer.settings import Scope
from retrieval.errors import UnknownProductError
from retrieval.profile import pseudonymise
from retrieval.records import EventKind, Interaction

log = logging.getLogger("composer.api")


class EventController(Controller):
    tags: Sequence[str] | None = ("events",)

    @post(
        "/v1/events",
        status_code=201,
        summary="Record shopper events",
        raises=[FieldError],
        opt={"scope": Scope.EVENTS},
    )
    async def record_events(
        self, request: Request, data: EventsBody, api: Api, catalog: Catalog
    ) -> EventsOut:
        """Views, clicks, cart adds and purchases, written in one transaction before the
        answer. The shopper's next page folds them in; any cached page of theirs is
        invalidated. ``page_id`` and ``slot`` say which served page and product position an
        event came from: experiments attribute it there (a cart or purchase without them goes
        to the shopper's last page within the attribution window).

        An event time may not lie further ahead than a small clock skew (a far-future event
        would stay a shopper's latest forever); an event identical to a recorded one is
        left out; events per key and per shopper are rate-limited (429, ``Retry-After``)."""
        now = time.time()
        ts = data.timestamp if data.timestamp is not None else now
        skew = api.api.event_clock_skew_s
        if ts > now + skew:
            raise FieldError(
                "timestamp",
                f"{ts:.0f} is {ts - now:,.0f} s ahead of this server's clock; at most "
                f"{skew:g} s ahead is accepted",
            )
        products = data.products()
        key = caller(request)
        api.events_per_key.take(key.id if key else "-", len(products))
        api.events_per_shopper.take(data.shopper_id, len(products))
        kind = EventKind(data.kind)
        events = [
            Interaction(data.shopper_id, pid, kind, ts, page_id=data.page_id, slot=data.slot)
            for pid in products
        ]
        try:
            ids, dropped = await catalog.record(data.shopper_id, events)
        except UnknownProductError as exc:
            missing = exc.product_ids[0]
            raise FieldError(
                data.field_of(products.index(missing)),
                f"unknown product id '{missing}' (nothing was recorded)",
            ) from None
        api.metrics.events.labels(kind.value).inc(len(ids))
        shopper = pseudonymise(data.shopper_id, api.settings.pseudonym_salt)
        log.info(
            "events recorded",
            extra={
                "shopper": shopper,
                "kind": kind.value,
                "count": len(ids),
                "invalidated": dropped,
            },
        )
        return EventsOut(
            event_ids=ids, duplicates=len(events) - len(ids), invalidated_pages=dropped
        )
