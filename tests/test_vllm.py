"""The `vllm` backend against a real vLLM server (one per session, see vllm_server_fixture):
a grounded page through the whole pipeline, sections streamed while tokens arrive, copy with
n seeded variants, the API's event stream, and a server killed mid-page and restarted."""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

import html5lib
import pytest
import sqlalchemy as sa
from conftest import CACHE, BuiltShop
from test_api import KeyedClient, app_for, parse_sse

from composer.backends import BackendRegistry
from composer.copywriting import CopyRequest, Copywriter
from composer.evaluation import server_identity
from composer.layout import PageLayout
from composer.llm.base import Generation, GenerationRequest
from composer.llm.circuit import CircuitBreaker
from composer.llm.vllm_backend import VLLMBackend
from composer.llm.vllm_server import VLLMServer
from composer.page_request import PageRequest
from composer.pipeline import DoneEvent, PageComposer, PageResult, SectionEvent
from composer.prompting import PromptLibrary
from composer.settings import DEFAULT_MODEL, AheadSettings, ApiSettings, Settings
from retrieval import AheadStore, FusionParams
from retrieval.ahead_store import ahead_composes_table, ahead_pages_table, ahead_queue_table

# The session-scoped `vllm_server` fixture: one real server for all vLLM tests.
pytest_plugins = ["vllm_server_fixture"]
pytestmark = pytest.mark.slow

# Generous: CI machines are shared; a page that runs out of time would fall back and hide
# what the test is about.
DEADLINE_S = 300.0


class StreamWatch:
    """The real vLLM backend, with a count of the text deltas it has delivered so far and an
    event set at the first one. It observes; every request goes to the server."""

    def __init__(self, backend: VLLMBackend) -> None:
        self.inner = backend
        self.name, self.model = backend.name, backend.model
        self.supports_schema, self.can_stream, self.reads_prompt = True, True, True
        self.deltas = 0
        self.first_delta = threading.Event()

    def generate(self, request: GenerationRequest) -> list[Generation]:
        # A page's words are whole completions, one request per field: each counts once.
        self.deltas += 1
        self.first_delta.set()
        return self.inner.generate(request)

    def stream(self, request: GenerationRequest) -> Generator[str, None, Generation]:
        stream = self.inner.stream(request)
        try:
            while True:
                delta = next(stream)
                self.deltas += 1
                self.first_delta.set()
                yield delta
        except StopIteration as stop:
            return stop.value
        finally:
            stream.close()


def settings_for(shop: BuiltShop, server: VLLMServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "llm_backend": "vllm",
        "vllm_url": server.url,
        "page_deadline_s": DEADLINE_S,
        **overrides,
    }
    return Settings(
        artifacts_dir=shop.settings.artifacts_dir,
        cache_dir=CACHE,
        fusion=FusionParams(tune=False),
        **values,
    )


def composer_with(shop: BuiltShop, settings: Settings, backend: Any) -> PageComposer:
    registry = BackendRegistry(settings)
    registry.register(backend)
    return PageComposer(settings, shop.retriever, registry)


def assert_grounded(result: PageResult, composer: PageComposer) -> None:
    layout = PageLayout.model_validate(result.layout.model_dump())
    handles = layout.handles()
    assert handles and set(handles) <= {c["handle"] for c in result.trace.candidates}
    assert len(handles) == len(set(handles))
    catalog = composer.retriever.catalog
    for section in result.page.sections:
        for slot in section.slots:
            # Shown facts are the catalog's, never generated text.
            assert slot.product == catalog.products[catalog.index[slot.product.product_id]]


class BatchWatch(StreamWatch):
    """The real backend with its batch path, counting the batches and their requests."""

    def __init__(self, backend: VLLMBackend) -> None:
        super().__init__(backend)
        self.batches: list[int] = []

    def generate_batch(
        self, requests: Sequence[GenerationRequest], deadline: float | None = None
    ) -> list[list[Generation]]:
        self.batches.append(len(requests))
        self.deltas += len(requests)
        return self.inner.generate_batch(requests, deadline)


def test_page_is_valid_grounded_and_its_words_are_one_batch(
    vllm_server: VLLMServer, ml_shop: BuiltShop
) -> None:
    settings = settings_for(ml_shop, vllm_server)
    watch = BatchWatch(VLLMBackend.from_settings(settings))
    composer = composer_with(ml_shop, settings, watch)

    deltas_at_section: list[int] = []
    result: PageResult | None = None
    for event in composer.stream(PageRequest(shopper_id="196", seed=1, format="both")):
        if isinstance(event, SectionEvent):
            deltas_at_section.append(watch.deltas)
        elif isinstance(event, DoneEvent):
            result = event.result
    assert result is not None
    trace = result.trace
    assert trace.backend == "vllm" and trace.model == DEFAULT_MODEL
    assert not trace.fallback, trace.fallback_reason
    assert trace.tokens > 0 and trace.attempts and not trace.attempts[0].error
    # Words from the model through the completions endpoint, under the regex constraint.
    assert any(w["source"] == "llm" for w in trace.words)
    for w in trace.words:
        assert w["candidates"] and all("\n" not in c["text"] for c in w["candidates"])
    assert_grounded(result, composer)
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(result.html)
    # Every headline and the title went to the server at once, before any section.
    assert watch.batches == [len(result.page.sections) + 1]
    assert deltas_at_section and deltas_at_section[0] == watch.deltas
    assert watch.inner.breaker.state == "closed"


class SlowAfterFirstAnswer(StreamWatch):
    """The real backend, whose first answer is held back until a given moment: the page's
    deadline then passes while the model's first headline is in flight, on any machine."""

    def __init__(self, backend: VLLMBackend) -> None:
        super().__init__(backend)
        self.hold_until = 0.0

    def generate(self, request: GenerationRequest) -> list[Generation]:
        answer = super().generate(request)
        if self.deltas == 1:
            time.sleep(max(0.0, self.hold_until - time.perf_counter()))
        return answer


def test_a_page_deadline_keeps_the_words_written_and_does_not_blame_the_server(
    vllm_server: VLLMServer, ml_shop: BuiltShop
) -> None:
    # The deadline passes while the server writes the first headline: the composer keeps it,
    # stops asking and serves the rules words for the rest. The server did answer, so the
    # breaker must neither open nor stay stuck waiting for a verdict. The deadline leaves
    # room for a cold start before the first request (a slow CI machine took over 0.5 s).
    deadline_s = 10.0
    settings = settings_for(ml_shop, vllm_server, page_deadline_s=deadline_s)
    backend = VLLMBackend.from_settings(settings)
    watch = SlowAfterFirstAnswer(backend)
    composer = composer_with(ml_shop, settings, watch)
    watch.hold_until = time.perf_counter() + deadline_s + 0.1
    result = composer.compose(PageRequest(shopper_id="22"))
    trace = result.trace
    assert trace.fallback and "deadline" in (trace.fallback_reason or "")
    assert watch.deltas == 1  # one request went out, none after the deadline
    written = [w for w in trace.words if w["candidates"]]
    assert len(written) == 1 and written[0] is trace.words[0]
    assert all(w["source"] == "rules" for w in trace.words[1:])
    assert len(result.page.sections) >= 2  # the rest of the page is still served
    assert backend.breaker.state == "closed"
    backend.breaker.before_call("the next page")  # not refused


def test_a_batch_goes_out_at_once_and_a_deadline_blames_nobody(
    vllm_server: VLLMServer, ml_shop: BuiltShop
) -> None:
    backend = VLLMBackend.from_settings(settings_for(ml_shop, vllm_server))
    lines = "Theme: Laptops | Headline: Laptops that keep up with you\n" * 3
    requests = [
        GenerationRequest(
            messages=(),
            prompt=f"A shop sells electronics.\n{lines}Theme: {theme} | Headline:",
            regex=r" ?[A-Z][A-Za-z ]{2,30}\n",
            stop=("\n",),
            max_tokens=12,
            temperature=0.8,
            seed=5,
            n=2,
        )
        for theme in ("TVs", "Monitors", "Smart Watches")
    ]
    answers = backend.generate_batch(requests)
    assert [len(a) for a in answers] == [2, 2, 2]
    assert all(re.fullmatch(r" ?[A-Z][A-Za-z ]{2,30}", g.text) for a in answers for g in a)
    # Banned runs of words (bad_words on the server) are not written.
    banned = [replace(r, avoid=("keep up with", "up with you")) for r in requests]
    for answer in backend.generate_batch(banned):
        assert all("keep up with" not in g.text and "up with you" not in g.text for g in answer)
    # Nothing answers within no time: every request is given up on, none is blamed.
    late = backend.generate_batch(requests, deadline=time.perf_counter())
    assert late == [[], [], []]
    assert backend.breaker.state == "closed"


def test_the_eval_cache_knows_the_served_model_and_the_server_version(
    vllm_server: VLLMServer,
) -> None:
    identity = server_identity(vllm_server.url)
    assert identity.startswith(f"server:{DEFAULT_MODEL}<") and ";version:" in identity
    assert not identity.endswith("version:None")


def test_copy_n_distinct_seeded_variants(vllm_server: VLLMServer, ml_shop: BuiltShop) -> None:
    settings = settings_for(ml_shop, vllm_server)
    writer = Copywriter(settings, ml_shop.retriever.catalog.by_id())
    request = CopyRequest(products=["1"], kind="tagline", n=3, seed=11, backend="vllm")
    variables = writer.variables(request)
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 3, "maxLength": 90}},
        "required": ["text"],
        "additionalProperties": False,
    }
    gen_request = GenerationRequest(
        messages=PromptLibrary().render("copy_v1", variables),  # the JSON copy prompt
        json_schema=schema,
        max_tokens=64,
        temperature=0.9,
        seed=11,
        n=3,
    )
    backend = VLLMBackend.from_settings(settings)
    first = backend.generate(gen_request)
    texts = [json.loads(g.text)["text"] for g in first]  # the schema holds: valid JSON
    assert len(texts) == 3 and len(set(texts)) == 3
    assert all(3 <= len(t) <= 90 for t in texts)
    # The seed makes the variants reproducible (vLLM seeds choice i with seed + i).
    assert [g.text for g in backend.generate(gen_request)] == [g.text for g in first]

    result = writer.write(request)
    assert result.backend == "vllm" and len(result.variants) == 3
    assert len({v.text.lower() for v in result.variants}) == 3


def test_sse_stream_from_vllm_has_sections_in_order(
    vllm_server: VLLMServer, ml_shop: BuiltShop
) -> None:
    app = app_for(ml_shop, llm_backend="vllm", vllm_url=vllm_server.url, page_deadline_s=DEADLINE_S)
    with KeyedClient(app, timeout=DEADLINE_S) as client:
        response = client.post(
            "/v1/pages",
            json={"shopper_id": "42", "seed": 2},
            headers={"Accept": "text/event-stream"},
        )
    assert response.status_code == 200
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    sections = [data for name, data in events if name == "section"]
    assert names == ["retrieval", *["section"] * len(sections), "page", "done"] and sections
    assert [s["index"] for s in sections] == list(range(len(sections)))
    page = events[-2][1]
    assert page["trace"]["backend"] == "vllm" and not page["trace"]["fallback"]
    assert [s["section"]["headline"] for s in sections] == [
        s["headline"] for s in page["layout"]["sections"]
    ]
    assert events[-1][1] == {
        "page_id": page["page_id"],
        "cache": "miss",
        "sections": len(sections),
        "fallback": False,
        "fallback_reason": None,
    }


def test_pages_composed_ahead_go_to_the_server_at_once_and_are_served_kept(
    vllm_server: VLLMServer, ml_shop: BuiltShop
) -> None:
    with ml_shop.store.engine.begin() as conn:  # the session's shop: no earlier queue
        for table in (ahead_queue_table, ahead_pages_table, ahead_composes_table):
            conn.execute(table.delete())
    shoppers = ["301", "302", "303", "304"]
    settings = AheadSettings(enabled=True, sweep_s=0, concurrency=4, budget_per_minute=60)
    # No model swap mid-test (other tests train versions of the shared shop).
    app = app_for(ml_shop, llm_backend="vllm", vllm_url=vllm_server.url,
                  page_deadline_s=DEADLINE_S, ahead=settings,
                  api=ApiSettings(model_poll_s=0))  # fmt: skip
    with KeyedClient(app, timeout=DEADLINE_S) as client:
        for shopper in shoppers:
            first = client.post("/v1/pages", json={"shopper_id": shopper}).json()
            assert first["trace"]["ahead"] == "composing"
        store = AheadStore(ml_shop.store.engine)
        deadline = time.monotonic() + 240
        while store.outcomes().get("kept", 0) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.outcomes() == {"kept": 4}
        for shopper in shoppers:
            page = client.post("/v1/pages", json={"shopper_id": shopper}).json()
            trace = page["trace"]
            assert trace["backend"] == "vllm" and not trace["fallback"], trace
            assert trace["ahead"] == "kept" and page["layout"]["sections"]
    # Four claimers: the pages were composed side by side (the server batches them).
    with ml_shop.store.engine.connect() as conn:
        spans = conn.execute(
            sa.select(ahead_composes_table.c.started_at, ahead_composes_table.c.finished_at)
        ).all()
    ordered = sorted(spans)
    overlapping = sum(1 for a, b in itertools.pairwise(ordered) if b[0] < a[1])
    assert overlapping >= 1, spans


def test_server_killed_mid_page_falls_back_then_recovers_after_restart(
    vllm_server: VLLMServer, ml_shop: BuiltShop
) -> None:
    settings = settings_for(ml_shop, vllm_server)
    backend = VLLMBackend.from_settings(settings, breaker=CircuitBreaker(cooldown_s=5.0))
    watch = StreamWatch(backend)
    composer = composer_with(ml_shop, settings, watch)

    pages: list[PageResult] = []
    worker = threading.Thread(
        target=lambda: pages.append(composer.compose(PageRequest(shopper_id="186", seed=3)))
    )
    worker.start()
    assert watch.first_delta.wait(DEADLINE_S), "the server never started answering"
    vllm_server.kill()
    worker.join(DEADLINE_S)
    (killed,) = pages
    assert killed.trace.fallback and killed.trace.backend == "vllm"
    assert "vLLM at" in (killed.trace.fallback_reason or "")
    assert killed.layout.sections  # the shopper still got the rules page
    assert backend.breaker.state == "open"

    # While open, the breaker refuses at once: no connection is tried.
    refused = composer.compose(PageRequest(shopper_id="186", seed=4))
    assert refused.trace.fallback and "failed recently" in (refused.trace.fallback_reason or "")

    vllm_server.start()
    while backend.breaker.state == "open":  # a restart outlasts the cool-down; to be sure
        time.sleep(0.2)
    # The next call is the probe, and it succeeds.
    back = composer.compose(PageRequest(shopper_id="186", seed=5))
    assert not back.trace.fallback, back.trace.fallback_reason
    assert back.trace.tokens > 0
    assert backend.breaker.state == "closed"
    assert_grounded(back, composer)
