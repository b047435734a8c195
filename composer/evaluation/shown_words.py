"""The words a page shows, field by field, with who wrote each: what the word judge reads
and what ``model_words_rate`` counts."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

from composer.copybook import copybook
from composer.pipeline import PageResult
from retrieval.themes import TOP_PICKS

Source = Literal["llm", "rules"]
# Between themes of one field; " & " is taken: categories use it ("Phones & Two-way Radios").
JOIN = " / "


@dataclass(frozen=True)
class ShownField:
    where: str  # "sections[0].headline" or "title"
    kind: Literal["headline", "title"]
    text: str
    source: Source  # who wrote the shown text: the model, or the rules templates
    theme: str  # what the field is about, as the writer was told
    products: tuple[str, ...]  # titles of the section's first products (a title: the page's)
    locale: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"products": list(self.products)}


def shown_fields(result: PageResult) -> list[ShownField]:
    """Every headline and the title of ``result``'s page, in page order."""
    trace = result.trace
    written = {w["where"]: w.get("source", "llm") for w in trace.words}
    no_model = trace.backend == "rules" or trace.fallback

    def source(where: str) -> Source:
        if where in written:
            return "llm" if written[where] == "llm" else "rules"
        return "rules" if no_model else "llm"

    page = result.page
    locale = page.locale.value
    book = copybook(page.locale)
    top = {TOP_PICKS, book.category(TOP_PICKS)}
    fields: list[ShownField] = []
    themes: list[str] = []
    for i, section in enumerate(page.sections):
        products = tuple(slot.product.title for slot in section.slots[:4])
        if section.theme and section.theme not in top:
            theme = section.theme
        else:  # a section of top picks is about its products' leading categories
            counts = Counter(
                book.category(c) for slot in section.slots for c in slot.product.categories[-2:]
            )
            theme = JOIN.join(c for c, _ in counts.most_common(2)) or section.theme
        themes.append(theme)
        where = f"sections[{i}].headline"
        fields.append(
            ShownField(where, "headline", section.headline, source(where), theme, products, locale)
        )
    # The title is about the page's two leading themes (as the writer is told).
    lead = list(dict.fromkeys(part for t in themes for part in t.split(JOIN)))[:2]
    title_products = tuple(
        slot.product.title for section in page.sections[:1] for slot in section.slots[:4]
    )
    fields.append(
        ShownField(
            "title", "title", page.title, source("title"), JOIN.join(lead), title_products, locale
        )
    )
    return fields
