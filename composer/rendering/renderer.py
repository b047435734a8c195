"""HTML from `templates/`, autoescaped: catalog and generated text are untrusted."""

from __future__ import annotations

from pathlib import Path

from babel.numbers import format_currency
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from composer.hydration import HydratedPage, HydratedSection
from composer.layout import Locale
from composer.resources import resource_dir

_BABEL_LOCALE = {Locale.EN: "en_US", Locale.ZH: "zh_CN"}
_HTML_LANG = {Locale.EN: "en", Locale.ZH: "zh-Hans"}


class PageRenderer:
    def __init__(self, currency: str = "USD", folder: Path | None = None) -> None:
        self.currency = currency
        self.env = Environment(
            loader=FileSystemLoader(str(folder or resource_dir("templates"))),
            autoescape=select_autoescape(["html", "htm", "xml"], default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def price(self, amount: float, locale: Locale) -> str:
        return format_currency(amount, self.currency, locale=_BABEL_LOCALE[locale])

    def _common(self, locale: Locale) -> dict[str, object]:
        return {"price": lambda amount: self.price(amount, locale), "labels": _LABELS[locale]}

    def render(self, page: HydratedPage, trace_id: str | None = None) -> str:
        template = self.env.get_template("page.html")
        return template.render(
            page=page, lang=_HTML_LANG[page.locale], trace_id=trace_id, **self._common(page.locale)
        )

    def render_section(self, section: HydratedSection, locale: Locale) -> str:
        """One section with the page's own partial (``templates/sections/<kind>.html``)."""
        template = self.env.get_template(f"sections/{section.kind}.html")
        return template.render(section=section, **self._common(locale))


_LABELS = {
    Locale.EN: {"why": "Why this", "out_of_stock": "Out of stock", "view": "View"},
    Locale.ZH: {"why": "推荐理由", "out_of_stock": "暂时缺货", "view": "查看"},
}
