"""Catalog records: JSON for storefronts, and the detail page the rendered pages link to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from litestar import Controller, MediaType, Request, Response, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter
from litestar.status_codes import HTTP_404_NOT_FOUND

from composer.api.catalog import MAX_ID
from composer.api.schemas import ProductOut
from composer.api.state import Catalog
from composer.layout import Locale
from composer.settings import Scope

NO_STORE = {"Cache-Control": "private, no-store"}


def back_link(referer: str | None) -> tuple[str | None, Locale | None]:
    """The page the shopper came from, as a path on this server, and that page's locale.

    Only one of our own pages (``/pages/...``) counts, and only its path and query are kept:
    a link from elsewhere never becomes a link off this site.
    """
    if not referer:
        return None, None
    parts = urlsplit(referer)
    if not parts.path.startswith("/pages/"):
        return None, None
    back = parts.path + (f"?{parts.query}" if parts.query else "")
    values = parse_qs(parts.query).get("locale", [])
    try:
        return back, Locale(values[0]) if values else None
    except ValueError:  # a locale we do not render: the default
        return back, None


class ProductController(Controller):
    tags: Sequence[str] | None = ("catalog",)

    @get(
        "/v1/products/{product_id:str}",
        summary="One product",
        raises=[NotFoundException],
        opt={"scope": Scope.PAGES},
    )
    async def product(self, product_id: FromPath[str], catalog: Catalog) -> ProductOut:
        p = await catalog.product(product_id)
        if p is None:
            raise NotFoundException(detail=f"unknown product id '{product_id[:MAX_ID]}'")
        links = catalog.renderer.links  # the store may predate today's rules
        return ProductOut(
            product_id=p.product_id,
            title=p.title,
            categories=list(p.categories),
            price=p.price,
            in_stock=p.in_stock,
            year=p.year,
            description=p.description,
            image_url=p.image_url if links.allows(p.image_url) else None,
            url=p.url if links.allows(p.url) else None,
        )

    @get(
        "/products/{product_id:str}",
        media_type=MediaType.HTML,
        summary="A product's detail page, for a browser (what page cards link to)",
        opt={"scope": Scope.PAGES, "session": True},
    )
    async def product_html(
        self,
        request: Request,
        product_id: FromPath[str],
        catalog: Catalog,
        locale: Annotated[Locale | None, QueryParameter()] = None,
    ) -> Response[str]:
        """The catalog facts with the price in the page's locale, and a link back to the page
        the shopper came from (its ``Referer``, when that is one of this server's pages; its
        locale too unless ``locale`` is given). An unknown id is a 404 page. Opened from a
        page (the session its signed link started) or with a key."""
        back, page_locale = back_link(request.headers.get("referer"))
        locale = locale or page_locale or Locale.EN
        renderer = catalog.renderer
        p = await catalog.product(product_id)
        if p is None:
            html = renderer.render_not_found(
                f"unknown product id '{product_id[:MAX_ID]}'", locale, back
            )
            return Response(
                html, media_type=MediaType.HTML, status_code=HTTP_404_NOT_FOUND, headers=NO_STORE
            )
        return Response(
            renderer.render_product(p, locale, back), media_type=MediaType.HTML, headers=NO_STORE
        )
