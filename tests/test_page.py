"""Pages end to end on the MovieLens shop: the real 135M model for quality-bearing tests,
scripted fault injectors (a backend that raises, stalls or returns garbage) for fallbacks."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import html5lib
import pytest
from conftest import CACHE, BuiltShop
from fault_injection import TWO_SECTIONS, ScriptedBackend

from composer.backends import BackendRegistry
from composer.layout import Locale, PageKind, PageLayout
from composer.page_request import PageRequest
from composer.pipeline import DoneEvent, PageComposer, RetrievalEvent, SectionEvent
from composer.settings import Settings


def composer_for(shop: BuiltShop, backend=None, **overrides) -> PageComposer:  # type: ignore[no-untyped-def]
    if backend is not None:
        # Scripted backends inject faults into the one-JSON-answer layout path (page_v3).
        overrides.setdefault("prompt", "page_v3")
    settings = Settings(artifacts_dir=shop.settings.artifacts_dir, cache_dir=CACHE, **overrides)
    registry = BackendRegistry(settings)
    if backend is not None:
        registry.register(backend)
    return PageComposer(settings, shop.retriever, registry)


def assert_valid_html_with_links(html: str, result) -> None:  # type: ignore[no-untyped-def]
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    parser.parse(html)  # raises on any parse error
    for sec in result.page.sections:
        for slot in sec.slots:
            assert f'href="{slot.url}"' in html


@pytest.fixture(scope="module")
def real_composer(ml_shop: BuiltShop) -> PageComposer:
    return composer_for(ml_shop, page_deadline_s=600.0)


@pytest.mark.slow
def test_real_model_page_is_valid_grounded_and_rendered(real_composer: PageComposer) -> None:
    result = real_composer.compose(PageRequest(shopper_id="196", format="both", seed=1))
    trace = result.trace
    assert trace.backend == "transformers" and trace.model == "smollm2-135m-instruct"
    # The real model made this page: no fallback, and most of its words are the model's.
    assert not trace.fallback, trace.fallback_reason
    assert sum(w["source"] == "llm" for w in trace.words) >= len(trace.words) - 1
    layout = PageLayout.model_validate(result.layout.model_dump())
    handles = layout.handles()
    candidate_handles = {c["handle"] for c in trace.candidates}
    assert handles and set(handles) <= candidate_handles
    assert len(handles) == len(set(handles))
    assert trace.tokens > 0 and trace.attempts
    assert {"retrieval", "prompt", "generation", "total"} <= set(trace.timings_ms)
    # Facts come from the catalog: every shown title and price is the catalog's.
    catalog = real_composer.retriever.catalog
    for sec in result.page.sections:
        for slot in sec.slots:
            assert slot.product == catalog.products[catalog.index[slot.product.product_id]]
            assert slot.reason
    assert_valid_html_with_links(result.html, result)


def test_backend_that_raises_gives_a_rules_page_with_the_reason(ml_shop: BuiltShop) -> None:
    broken = ScriptedBackend("transformers", error="connection refused by the model server")
    result = composer_for(ml_shop, broken).compose(PageRequest(shopper_id="42", format="html"))
    assert result.trace.fallback is True
    assert "connection refused" in result.trace.fallback_reason
    assert result.layout.sections and result.html
    assert_valid_html_with_links(result.html, result)


def test_garbage_is_retried_once_then_falls_back(ml_shop: BuiltShop) -> None:
    garbage = ScriptedBackend("transformers", texts=["<<not json>>", '{"title": 3}'])
    result = composer_for(ml_shop, garbage).compose(PageRequest(shopper_id="42"))
    assert garbage.calls == 2  # one retry with the errors fed back
    assert result.trace.fallback is True
    assert [a.issues != [] for a in result.trace.attempts] == [True, True]
    assert "invalid_json" not in result.trace.fallback_reason  # says what, in words
    assert "not valid JSON" in result.trace.attempts[0].issues[0]
    # The trace's own shallow to_dict gives what a deep asdict gives, and a copy.
    body = result.to_dict()["trace"]
    assert body == asdict(result.trace) and body["attempts"][0]["issues"]
    body["attempts"][0]["issues"].append("edited")
    body["candidates"][0]["score"] = -1.0
    assert "edited" not in result.trace.attempts[0].issues
    assert result.trace.candidates[0]["score"] != -1.0


def test_bad_copy_is_fed_back_and_the_fixed_answer_is_used(ml_shop: BuiltShop) -> None:
    def page(headline: str) -> str:
        return json.dumps(
            {
                "title": "Tonight's picks",
                "sections": [
                    {
                        "kind": "hero",
                        "theme": "T1",
                        "headline": headline,
                        "items": ["P1", "P2", "P3"],
                    }
                ],
            }
        )

    backend = ScriptedBackend(
        "transformers", texts=[page("Only $5 this week"), page("Stories chosen for tonight")]
    )
    result = composer_for(ml_shop, backend).compose(PageRequest(shopper_id="42"))
    assert backend.calls == 2 and not result.trace.fallback
    assert "unsupported_price" not in str(result.layout)
    assert result.layout.sections[0].headline == "Stories chosen for tonight"
    assert "states a price" in result.trace.attempts[0].issues[0]


def test_a_stalled_backend_hits_the_deadline_and_the_page_still_comes(ml_shop: BuiltShop) -> None:
    slow = ScriptedBackend("transformers", texts=['{"title":"x"' * 50], stall_s=0.05)
    t = time.perf_counter()
    result = composer_for(ml_shop, slow, page_deadline_s=0.5).compose(PageRequest(shopper_id="42"))
    assert time.perf_counter() - t < 5
    assert result.trace.fallback and "deadline" in result.trace.fallback_reason


def test_stream_sends_retrieval_then_sections_in_order_then_the_page(ml_shop: BuiltShop) -> None:
    text = TWO_SECTIONS
    events = list(
        composer_for(ml_shop, ScriptedBackend("transformers", texts=[text])).stream(
            PageRequest(shopper_id="42")
        )
    )
    assert isinstance(events[0], RetrievalEvent)
    assert [type(e) for e in events[1:]] == [SectionEvent, SectionEvent, DoneEvent]
    assert [e.index for e in events[1:3]] == [0, 1]
    assert events[1].section.headline == "Stories chosen for tonight"
    final = events[-1].result
    assert [s.headline for s in final.layout.sections] == [e.section.headline for e in events[1:3]]


def test_rules_page_in_chinese_with_local_prices(ml_shop: BuiltShop) -> None:
    result = composer_for(ml_shop).compose(
        PageRequest(shopper_id="42", locale=Locale.ZH, backend="rules", format="html")
    )
    assert not result.trace.fallback and result.trace.backend == "rules"
    assert 'lang="zh-Hans"' in result.html
    assert "US$" in result.html  # en_US shows "$", zh_CN marks the currency
    for sec in result.layout.sections:
        assert any("\u4e00" <= ch <= "\u9fff" for ch in sec.headline)
    assert_valid_html_with_links(result.html, result)


def test_search_page_needs_a_query_and_filters_that_match_nothing_say_so(
    ml_shop: BuiltShop,
) -> None:
    from pydantic import ValidationError

    from composer.pipeline import NoCandidatesError

    with pytest.raises(ValidationError, match="a search page needs a query"):
        PageRequest(kind=PageKind.SEARCH)
    with pytest.raises(NoCandidatesError, match="widen them"):
        composer_for(ml_shop).compose(
            PageRequest(shopper_id="42", backend="rules", min_price=1000.0)
        )
