"""HTML from `templates/`, autoescaped: catalog and generated text are untrusted."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from babel.numbers import format_currency
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from composer.hydration import HydratedPage, HydratedSection
from composer.layout import Locale, PageKind
from composer.rendering.styles import stylesheet
from composer.resources import resource_dir
from retrieval import Product
from retrieval.catalog_text import LinkPolicy

_BABEL_LOCALE = {Locale.EN: "en_US", Locale.ZH: "zh_CN"}
_HTML_LANG = {Locale.EN: "en", Locale.ZH: "zh-Hans"}


@lru_cache(maxsize=8192)
def _format_price(amount: float, currency: str, babel_locale: str) -> str:
    # A catalog has few distinct prices and Babel re-parses its pattern on every call; a
    # page shows a dozen or more prices.
    return format_currency(amount, currency, locale=babel_locale)


class PageRenderer:
    def __init__(
        self, currency: str = "USD", folder: Path | None = None, links: LinkPolicy | None = None
    ) -> None:
        self.currency = currency
        self.links = links or LinkPolicy()
        self.folder = folder or resource_dir("templates")
        self.env = Environment(
            loader=FileSystemLoader(str(self.folder)),
            autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            # Templates ship with the package: compiled once per process, never re-checked
            # against the file's mtime (a stat per include per page otherwise).
            auto_reload=False,
        )
        # Links are checked again here, not only at ingest: a store written by an older
        # version, or edited by hand, must not put a javascript: URL into an href.
        self.env.filters["safe_link"] = lambda url: url if self.links.allows(url) else ""
        # Verbatim, so that the block's bytes are the ones hashed for the CSP (styles.py).
        self.env.globals["stylesheet"] = lambda *names: Markup(stylesheet(self.folder, *names))
        self._helpers = {locale: self._make_helpers(locale) for locale in Locale}

    def price(self, amount: float, locale: Locale) -> str:
        return _format_price(float(amount), self.currency, _BABEL_LOCALE[locale])

    def _make_helpers(self, locale: Locale) -> dict[str, object]:
        return {"price": lambda amount: self.price(amount, locale), "labels": _LABELS[locale]}

    def render(self, page: HydratedPage, trace_id: str | None = None) -> str:
        template = self.env.get_template("page.html")
        return template.render(
            page=page, lang=_HTML_LANG[page.locale], trace_id=trace_id, **self._helpers[page.locale]
        )

    def render_open(self, kind: PageKind, locale: Locale, title: str) -> str:
        """A streamed page's document head, up to its first section."""
        template = self.env.get_template("page_stream_open.html")
        return template.render(
            document_title=title, kind=kind.value, lang=_HTML_LANG[locale], trace_id=None
        )

    def render_close(self, title: str) -> str:
        """A streamed page's end: its title (shown on top) and the closing tags."""
        return self.env.get_template("page_stream_close.html").render(title=title)

    def render_section(self, section: HydratedSection, locale: Locale) -> str:
        """One section with the page's own partial (``templates/sections/<kind>.html``)."""
        template = self.env.get_template(f"sections/{section.kind}.html")
        return template.render(section=section, **self._helpers[locale])

    def render_product(self, product: Product, locale: Locale, back_url: str | None) -> str:
        """A product's detail page (``templates/product.html``): the catalog record, nothing
        generated; ``back_url`` is the page the shopper came from, when known."""
        template = self.env.get_template("product.html")
        return template.render(
            product=product,
            lang=_HTML_LANG[locale],
            back_url=back_url,
            **self._helpers[locale],
        )

    def render_not_found(self, detail: str, locale: Locale, back_url: str | None) -> str:
        """The 404 page a browser gets for a product or page that does not exist."""
        template = self.env.get_template("not_found.html")
        return template.render(
            detail=detail, lang=_HTML_LANG[locale], back_url=back_url, **self._helpers[locale]
        )


_LABELS = {
    Locale.EN: {
        "why": "Why this",
        "out_of_stock": "Out of stock",
        "in_stock": "In stock",
        "view": "View",
        "back": "Back to your page",
        "year": "Year",
        "categories": "Categories",
        "product_id": "Product id",
        "not_found": "Not found",
    },
    Locale.ZH: {
        "why": "推荐理由",
        "out_of_stock": "暂时缺货",
        "in_stock": "有货",
        "view": "查看",
        "back": "返回您的页面",
        "year": "年份",
        "categories": "类别",
        "product_id": "商品编号",
        "not_found": "未找到",
    },
}
