"""Deterministic, localised copy (rules headlines, slot reasons) from `templates/copy/`."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import yaml

from composer.layout import Locale
from composer.resources import resource_dir
from retrieval import Product, Reason


class Copybook:
    def __init__(self, locale: Locale) -> None:
        self.locale = locale
        path = resource_dir("templates") / "copy" / f"{locale.value}.yaml"
        self.data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))

    def category(self, name: str) -> str:
        return self.data.get("categories", {}).get(name, name)

    def page_title(self, kind: str, query: str | None, category: str | None) -> str:
        template = self.data["page_titles"][kind]
        return _fit(template.format(query=query or "", category=self.category(category or "")))

    def headline(self, theme: str | None, index: int, query: str | None = None) -> str:
        if theme is None:
            return self.data["headlines"]["top_picks"]
        options = self.data["headlines"]["category"]
        return _fit(options[index % len(options)].format(category=self.category(theme)))

    def more_headline(self) -> str:
        return self.data["headlines"]["more"]

    def query_headline(self, query: str) -> str:
        return _fit(self.data["headlines"]["query"].format(query=query))

    def subhead(self, key: str, category: str | None = None) -> str:
        return self.data["subheads"][key].format(category=self.category(category or ""))

    def reason(self, reason: Reason, titles: Mapping[str, Product]) -> str:
        phrases = self.data["reasons"]
        names = [titles[p].title for p in reason.product_ids if p in titles][:2]
        if reason.code in ("similar_to_history", "matches_profile") and names:
            text = phrases[reason.code].format(items=self.data["list_join"].join(names))
        elif reason.code == "matches_query" and reason.query:
            text = phrases["matches_query"].format(query=reason.query)
        elif reason.code == "popular":
            text = phrases["popular"]
        else:
            text = phrases["chosen"]
        return _fit(text, 80)

    def copy_templates(self, kind: str) -> list[str]:
        return list(self.data["copy"][kind])


def _fit(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


@lru_cache(maxsize=4)
def copybook(locale: Locale) -> Copybook:
    return Copybook(locale)
