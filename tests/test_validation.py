"""Checks, repair and the streaming section scanner on hand-made pages."""

from __future__ import annotations

import json
import re

import pytest

from composer.layout import GeneratedPage, Locale, generation_schema
from composer.prompting import HandleMap
from composer.streaming import SectionScanner
from composer.validation import PageChecker, check_and_repair, parse, text_issues

HANDLES = HandleMap(
    products={f"P{i}": str(100 + i) for i in range(1, 9)},
    themes={"T1": "Top picks", "T2": "Comedy"},
    theme_products={"T1": ("P1", "P2", "P3"), "T2": ("P4", "P5", "P6", "P7", "P8")},
    theme_categories={"T1": None, "T2": "Comedy"},
)


def page(*sections: dict, title: str = "Movie night for you") -> GeneratedPage:
    return GeneratedPage.model_validate({"title": title, "sections": list(sections)})


def sec(
    items: list[str], headline: str = "Laughs worth sharing", kind: str = "grid", theme: str = "T2"
) -> dict:
    return {"kind": kind, "theme": theme, "headline": headline, "items": items}


@pytest.mark.parametrize(
    ("text", "locale", "codes"),
    [
        ("Only $9.99 this week", Locale.EN, {"unsupported_price"}),
        ("20% off every classic", Locale.EN, {"unsupported_discount"}),
        ("Top-rated thrillers", Locale.EN, {"unsupported_rating"}),
        ("Best-selling comedies", Locale.EN, {"unsupported_claim"}),
        ("Kick off the weekend", Locale.EN, set()),
        ("周末电影之夜", Locale.EN, {"wrong_script"}),
        ("周末电影之夜", Locale.ZH, set()),
        ("Weekend movie night", Locale.ZH, {"wrong_script"}),
        ("限时特价喜剧", Locale.ZH, {"unsupported_discount", "unsupported_claim"}),
    ],
)
def test_text_issues(text: str, locale: Locale, codes: set[str]) -> None:
    assert {i.code for i in text_issues(text, locale)} == codes


def test_repair_drops_unknown_and_repeated_handles_and_refills() -> None:
    result = check_and_repair(
        page(sec(["P1", "P2", "P99"], kind="hero", theme="T1"), sec(["P2", "P2", "P4"])),
        HANDLES,
        Locale.EN,
        3,
    )
    assert result.ok
    assert result.page.sections[0].items == ["P1", "P2"]
    # P2 is taken and repeated; P4 stays, and one unused Comedy product refills the slot.
    assert result.page.sections[1].items == ["P4", "P5"]
    assert any("unknown product handle 'P99'" in r for r in result.repairs)
    assert any("repeated product handle 'P2'" in r for r in result.repairs)
    assert any("refilled" in r for r in result.repairs)


def test_a_second_hero_becomes_a_grid_and_sections_over_the_limit_go() -> None:
    result = check_and_repair(
        page(
            sec(["P1", "P2"], kind="hero", theme="T1"),
            sec(["P4", "P5"], kind="hero"),
            sec(["P6", "P7"]),
        ),
        HANDLES,
        Locale.EN,
        2,
    )
    assert [s.kind.value for s in result.page.sections] == ["hero", "grid"]
    assert any("over the limit" in r for r in result.repairs)


def test_text_problems_are_issues_not_repairs() -> None:
    result = check_and_repair(
        page(sec(["P1", "P2"], headline="Save up to 50 today")), HANDLES, Locale.EN, 3
    )
    assert not result.ok
    assert any(
        i.code == "unsupported_discount" and i.where == "sections[0].headline"
        for i in result.issues
    )


def test_parse_reports_invalid_json_and_schema_errors() -> None:
    assert parse("{not json")[1][0].code == "invalid_json"
    _, issues = parse(json.dumps({"title": "x"}))
    assert issues and issues[0].code == "schema" and "sections" in issues[0].where


def test_generation_schema_enumerates_this_requests_handles() -> None:
    schema = generation_schema(["P1", "P2"], ["T1"], 2)
    section = schema["properties"]["sections"]
    assert section["maxItems"] == 2
    hero, rest = section["prefixItems"][0]["properties"], section["items"]["properties"]
    for props in (hero, rest):
        assert props["items"]["items"]["enum"] == ["P1", "P2"]
        assert props["theme"]["enum"] == ["T1"]
    assert hero["kind"]["enum"] == ["hero"] and "hero" not in rest["kind"]["enum"]
    assert schema["additionalProperties"] is False
    # sections before the title, so the first one streams without waiting for title words
    assert list(schema["properties"]) == ["sections", "title"]
    assert section["minItems"] == 1  # one theme: one section is all the page can hold


def test_generation_schema_asks_for_two_sections_when_themes_and_products_allow() -> None:
    handles = [f"P{i}" for i in range(1, 9)]
    assert generation_schema(handles, ["T1", "T2"], 3)["properties"]["sections"]["minItems"] == 2
    assert (
        generation_schema(handles[:3], ["T1", "T2"], 3)["properties"]["sections"]["minItems"] == 1
    )
    assert generation_schema(handles, ["T1", "T2"], 1)["properties"]["sections"]["minItems"] == 1


def test_scanner_yields_each_section_when_its_brace_closes() -> None:
    text = json.dumps(
        {
            "title": 'A {tricky} "title"',
            "sections": [sec(["P1", "P2"], headline='Quote " and } brace'), sec(["P3", "P4"])],
        },
        separators=(",", ":"),
    )
    scanner = SectionScanner()
    seen: list[tuple[int, dict]] = []
    for i, ch in enumerate(text):
        seen += [(i, s) for s in scanner.feed(ch)]
    assert [s["items"] for _, s in seen] == [["P1", "P2"], ["P3", "P4"]]
    assert seen[0][1]["headline"] == 'Quote " and } brace'
    assert seen[0][0] < text.index('"P3"')  # the first arrives before the second is written


def test_chinese_pages_are_constrained_to_chinese_characters() -> None:
    schema = generation_schema(["P1", "P2", "P3", "P4"], ["T1", "T2"], 3, Locale.ZH)
    headline = schema["properties"]["sections"]["items"]["properties"]["headline"]
    pattern = re.compile(headline["pattern"])
    assert pattern.match("开怀一笑的喜剧")
    assert not pattern.match("Laughs worth sharing")
    assert not pattern.match("特价99元")  # no digits, so no prices
    assert re.match(schema["properties"]["title"]["pattern"], "周末电影之夜")
    english = generation_schema(["P1", "P2"], ["T1"], 2, Locale.EN)
    assert "pattern" not in english["properties"]["title"]


def test_a_looping_title_is_an_issue_and_a_plain_one_is_not() -> None:
    checker = PageChecker(HANDLES, Locale.EN, 3)
    looping = checker.title_issues("Top picks: Drama, Action, Drama, Comedy, Drama")
    assert [i.code for i in looping] == ["repetitive"]
    assert checker.title_issues("Your weekend movie night") == []


def test_a_quoted_query_may_be_in_another_script() -> None:
    assert text_issues("“something comedy to watch”的搜索结果", Locale.ZH) == []
    assert text_issues("Results for “喜剧”", Locale.EN) == []
    # outside the quotation marks the locale's script still rules
    assert [i.code for i in text_issues("Results for comedy “喜剧”", Locale.ZH)] == ["wrong_script"]
