"""Pages: JSON or server-sent events for storefronts, HTML for browsers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage, Stream

from composer.api.errors import FieldError
from composer.api.pages import PageService, StreamItem
from composer.api.schemas import PageBody, PageLinkBody, PageLinkOut, PageOut
from composer.api.security.access import LINK_EXPIRES, caller, is_admin, require
from composer.api.security.links import SESSION_COOKIE
from composer.api.security.redaction import for_caller
from composer.api.state import Api, ApiState, Pages
from composer.layout import Locale, PageKind
from composer.page_request import PageRequest
from composer.settings import Scope

SSE = "text/event-stream"
NO_STORE = {"Cache-Control": "private, no-store"}


class PageController(Controller):
    tags: Sequence[str] | None = ("pages",)

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
            "`rules` page and `trace.fallback_reason` says why. Choosing `backend` or "
            "`prompt` needs an admin key."
        ),
        opt={"scope": Scope.PAGES},
    )
    # The annotation is the OpenAPI schema (Litestar reads it): PageOut, whose body is built as
    # a dict trimmed for the caller; the event stream is the documented other answer.
    async def create_page(
        self, request: Request, data: PageBody, api: Api, pages: Pages
    ) -> Response[PageOut]:
        if data.backend is not None or data.prompt is not None or data.order != "ranked":
            require(request, Scope.ADMIN, "choosing a backend, prompt or order")
        key = caller(request)
        if key is not None:
            api.requests_per_key.take(key.id)
        full = is_admin(request)  # the trace's details
        who = key.id if key is not None else None
        if request.accept.best_match(["application/json", SSE], "application/json") == SSE:
            return await _event_stream(pages, data, full, who)  # type: ignore[return-value]
        served = await pages.page(data, who)
        body = for_caller(served.result.to_dict(include_html=data.format != "json"), full)
        served.plan.stamp(body)
        body["cache"] = "hit" if served.cached else "miss"
        headers = {**NO_STORE, "X-Cache": body["cache"], "X-Page-Id": served.page_id}
        return Response(body, headers=headers)  # type: ignore[arg-type]

    @get(
        "/pages/{shopper_id:str}",
        media_type=MediaType.HTML,
        summary="A shopper's page as HTML, for a browser",
        description=(
            "Opened with a signed link (`exp` and `sig`, from `POST /v1/page-links`) or an "
            "API key. A link also starts a browser session for the product pages it links to. "
            "A page the LLM composes on request streams (chunked): the head at once, each "
            "section as it is checked, the title last (shown on top); a rules page, or one "
            "composed ahead, comes whole."
        ),
        raises=[FieldError],
        opt={"scope": Scope.PAGES, "link": True},
    )
    async def page_html(
        self,
        request: Request,
        shopper_id: FromPath[str],
        api: Api,
        pages: Pages,
        kind: Annotated[PageKind, QueryParameter()] = PageKind.HOME,
        q: Annotated[str | None, QueryParameter(max_length=200)] = None,
        locale: Annotated[Locale, QueryParameter()] = Locale.EN,
        # Checked by the guard (composer.api.security.access); declared for the schema.
        exp: Annotated[str | None, QueryParameter(max_length=12)] = None,
        sig: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> Response[str]:
        page_request = PageRequest(
            shopper_id=shopper_id, kind=kind, query=q, locale=locale, format="html"
        )
        key = caller(request)  # a link or session has no key: the shopper's own page
        who = key.id if key is not None else None
        if pages.streams_html(page_request):
            first, chunks = await pages.html_stream(page_request, who)
            headers = {**NO_STORE, "X-Cache": "hit" if first.cached else "miss"}
            if first.page_id is not None:
                headers["X-Page-Id"] = first.page_id
            cookies = _session_cookies(request, api)
            return Stream(  # type: ignore[return-value]
                chunks, media_type=MediaType.HTML, headers=headers, cookies=cookies
            )
        served = await pages.page(page_request, who)
        cookies = _session_cookies(request, api)
        return Response(
            served.result.html or "",
            media_type=MediaType.HTML,
            headers={
                **NO_STORE,
                "X-Cache": "hit" if served.cached else "miss",
                "X-Page-Id": served.page_id,
            },
            cookies=cookies,
        )

    @post(
        "/v1/page-links",
        status_code=201,
        summary="Mint a signed, expiring link to a shopper's HTML page",
        opt={"scope": Scope.PAGES},
    )
    async def page_link(self, data: PageLinkBody, api: Api) -> PageLinkOut:
        """For the storefront's own shopper: the link opens that shopper's page (and the
        product pages it links to) in a browser until it expires; a raw id opens nothing."""
        ttl = data.ttl_s or api.api.link_ttl_s
        link = api.access.links.page_link(data.shopper_id, ttl)
        return PageLinkOut(path=link.path(), expires_at=link.expires_at)


def _session_cookies(request: Request, api: ApiState) -> list[Cookie]:
    """A signed link's page starts a browser session for the product pages it links to."""
    expires = request.scope.get("state", {}).get(LINK_EXPIRES)
    if expires is None:
        return []
    return [
        Cookie(
            key=SESSION_COOKIE,
            value=api.access.links.session(expires),
            max_age=max(0, expires - int(time.time())),  # Litestar's `expires` is relative
            path="/",
            httponly=True,
            secure=request.url.scheme == "https",
            samesite="lax",
        )
    ]


async def _event_stream(
    pages: PageService, data: PageRequest, full: bool, caller: str | None
) -> ServerSentEvent:
    items = pages.stream(data, full, caller)
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
