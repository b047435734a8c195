"""Semantic checks and repair of a generated page, before it becomes a :class:`PageLayout`.

Slot problems (unknown or repeated handles, too few items) are repaired from unused
candidates; text problems (claims, script, length) cannot be, and go back to the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from composer.layout import (
    MAX_ITEMS,
    MIN_ITEMS,
    GeneratedPage,
    GeneratedSection,
    Locale,
    SectionKind,
)
from composer.layout.model import HEADLINE_MAX, HEADLINE_MIN, TITLE_MAX
from composer.llm.base import ChatMessage
from composer.prompting import HandleMap
from composer.validation.grounding import text_issues
from composer.validation.words import word_issues

_QUOTED = re.compile(r'"([^"\\]{3,80})"')


@dataclass(frozen=True)
class Issue:
    code: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class CheckResult:
    page: GeneratedPage | None
    issues: list[Issue] = field(default_factory=list)  # what is still wrong
    repairs: list[str] = field(default_factory=list)  # what was fixed

    @property
    def ok(self) -> bool:
        return self.page is not None and not self.issues


def parse(text: str) -> tuple[GeneratedPage | None, list[Issue]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [Issue("invalid_json", "output", f"not valid JSON ({exc.msg})")]
    try:
        return GeneratedPage.model_validate(data), []
    except ValidationError as exc:
        return None, [
            Issue("schema", ".".join(map(str, e["loc"])) or "output", e["msg"])
            for e in exc.errors()[:5]
        ]


REPEATS_MAX = 3


class PageChecker:
    """Checks and repairs sections one at a time, remembering which products are placed, so
    the same rules apply to a finished page and to sections arriving in a stream."""

    def __init__(
        self,
        handles: HandleMap,
        locale: Locale,
        max_sections: int,
        examples: Sequence[str] = (),
        prompt_fields: Sequence[str] = (),
        word_checks: bool = True,
    ) -> None:
        self.handles = handles
        self.locale = locale
        self.max_sections = max_sections
        # The prompt's own example words and request fields: shown words must not repeat them.
        self.examples = list(examples)
        self.prompt_fields = list(prompt_fields)
        self.word_checks = word_checks
        self.used: set[str] = set()
        self.accepted: list[GeneratedSection] = []

    def title_issues(self, title: str) -> list[Issue]:
        return text_checks("title", title, self.locale, 3, TITLE_MAX) + self._word_checks(
            "title", title
        )

    def section(
        self, raw: GeneratedSection | dict, where: str
    ) -> tuple[GeneratedSection | None, list[Issue], list[str]]:
        """A repaired section, or None with the issues that block it. Accepted sections
        reserve their products."""
        repairs: list[str] = []
        if len(self.accepted) >= self.max_sections:
            return None, [], [f"{where}: dropped, over the limit of {self.max_sections}"]
        if isinstance(raw, dict):
            try:
                raw = GeneratedSection.model_validate(raw)
            except ValidationError as exc:
                return None, [Issue("schema", where, exc.errors()[0]["msg"])], []
        theme = raw.theme
        if theme not in self.handles.themes:
            theme = next(iter(self.handles.themes), theme)
            repairs.append(f"{where}: unknown theme '{raw.theme}' replaced by {theme}")
        kind = raw.kind
        if kind == SectionKind.HERO and self.accepted:
            kind = SectionKind.GRID
            repairs.append(f"{where}: only the first section can be a hero; made a grid")
        items: list[str] = []
        for h in raw.items:
            if h not in self.handles.products:
                repairs.append(f"{where}: dropped unknown product handle '{h}'")
            elif h in self.used or h in items:
                repairs.append(f"{where}: dropped repeated product handle '{h}'")
            else:
                items.append(h)
        items = items[:MAX_ITEMS]
        if len(items) < MIN_ITEMS:
            pool = [h for h in self.handles.theme_products.get(theme, ())]
            pool += [h for h in self.handles.products if h not in pool]
            for h in pool:
                if len(items) >= MIN_ITEMS:
                    break
                if h not in self.used and h not in items:
                    items.append(h)
                    repairs.append(f"{where}: refilled with unused candidate {h}")
        if len(items) < MIN_ITEMS:
            return None, [], [*repairs, f"{where}: dropped, too few products left"]
        issues = text_checks(
            f"{where}.headline", raw.headline, self.locale, HEADLINE_MIN, HEADLINE_MAX
        ) + self._word_checks(f"{where}.headline", raw.headline)
        if issues:
            return None, issues, repairs
        section = GeneratedSection(
            kind=kind, theme=theme, headline=raw.headline.strip(), items=items
        )
        self.used.update(items)
        self.accepted.append(section)
        return section, [], repairs

    def _word_checks(self, where: str, text: str) -> list[Issue]:
        if not self.word_checks:
            return []
        return [
            Issue(i.code, where, i.message)
            for i in word_issues(text, self.examples, self.prompt_fields)
        ]


def prompt_fragments(messages: Sequence[ChatMessage]) -> list[str]:
    """Quoted words of the system prompt (its example's title and headlines): what a model
    that copies instead of writing repeats."""
    out: list[str] = []
    for m in messages:
        if m.role == "system":
            out += [f for f in _QUOTED.findall(m.content) if len(f) >= 3 and " " in f]
    return list(dict.fromkeys(out))


def check_and_repair(
    page: GeneratedPage, handles: HandleMap, locale: Locale, max_sections: int
) -> CheckResult:
    """A whole page at once: sections with text issues are reported, not dropped silently."""
    checker = PageChecker(handles, locale, max_sections)
    issues = checker.title_issues(page.title)
    repairs: list[str] = []
    for n, sec in enumerate(page.sections):
        _, sec_issues, sec_repairs = checker.section(sec, f"sections[{n}]")
        issues += sec_issues
        repairs += sec_repairs
    if not checker.accepted and not issues:
        issues.append(Issue("empty_page", "sections", "no section with products"))
    page_out = (
        GeneratedPage(title=page.title, sections=checker.accepted) if checker.accepted else None
    )
    return CheckResult(page_out, issues, repairs)


def text_checks(where: str, text: str, locale: Locale, lo: int, hi: int) -> list[Issue]:
    out = [Issue(i.code, where, i.message) for i in text_issues(text, locale)]
    if not lo <= len(text.strip()) <= hi:
        out.append(Issue("length", where, f"must be {lo} to {hi} characters"))
    words = [w.strip(",.:;!?").lower() for w in text.split()]
    if any(words.count(w) >= REPEATS_MAX for w in set(words) if len(w) > 2):
        # Greedy decoding of a small model can loop ("Drama, Action, Drama, Drama, …").
        out.append(Issue("repetitive", where, f"repeats a word {REPEATS_MAX} times or more"))
    return out
