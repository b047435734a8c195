"""Pages: JSON or server-sent events for storefronts, HTML for browsers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, ClassVar

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from composer.api.errors import FieldError
from composer.api.pages import PageService, StreamItem
from composer.api.schemas import PageBody, PageOut
from composer.api.state import Api
from composer.layout import Locale, PageKind
from composer.page_request import PageRequest

SSE = "text/event-stream"
NO_STORE = {"Cache-Control": "private, no-store"}


class PageController(Controller):
    tags: ClassVar[list[str]] = ["pages"]

    @post(
        "/v1/pages",
        status_code=200,
        summary="Compose a page",
        raises=[FieldError],
        description=(
            "One page for one shopper (or an anonymous session with recent items, or a cold "
            "start). JSON by default: layout, html (format html or both) and trace. With "
            "`Accept: text/event-stream` the page streams as server-sent events: `retrieval` "
            "(the candidates), one `section` per section as soon as it is complete "
            "(index, layout section, HTML), `page` (layout, html, trace), then `done`. "
            "If the LLM misses the deadline, fails or its queue is full, the page is the "
            "`rules` page and `trace.fallback_reason` says why."
        ),
    )
    async def create_page(self, request: Request, data: PageBody, api: Api) -> Response[PageOut]:
        _, pages = api.require()
        if request.accept.best_match(["application/json", SSE], "application/json") == SSE:
            return await _event_stream(pages, data)
        result, cached = await pages.page(data)
        body = result.to_dict(include_html=data.format != "json")
        body["cache"] = "hit" if cached else "miss"
        return Response(body, headers={**NO_STORE, "X-Cache": body["cache"]})

    @get(
        "/pages/{shopper_id:str}",
        media_type=MediaType.HTML,
        summary="A shopper's page as HTML, for a browser",
        raises=[FieldError],
    )
    async def page_html(
        self,
        shopper_id: FromPath[str],
        api: Api,
        kind: Annotated[PageKind, QueryParameter()] = PageKind.HOME,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
        locale: Annotated[Locale, QueryParameter()] = Locale.EN,
    ) -> Response[str]:
        _, pages = api.require()
        request = PageRequest(
            shopper_id=shopper_id, kind=kind, query=q, locale=locale, format="html"
        )
        result, cached = await pages.page(request)
        return Response(
            result.html or "",
            media_type=MediaType.HTML,
            headers={**NO_STORE, "X-Cache": "hit" if cached else "miss"},
        )


async def _event_stream(pages: PageService, data: PageRequest) -> ServerSentEvent:
    items = pages.stream(data)
    # Errors before the first event (filters that match nothing, an unknown prompt) are
    # still ordinary 4xx answers; after it, the stream has started.
    first = await items.__anext__()

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        n = 0
        try:
            item: StreamItem | None = first
            while item is not None:
                yield ServerSentEventMessage(data=item.data, event=item.event, id=str(n))
                n += 1
                item = await anext(items, None)
        finally:
            await items.aclose()

    return ServerSentEvent(messages(), headers=NO_STORE)
