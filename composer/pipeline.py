"""One page request, steps 3–9: retrieve, prompt, generate, check and repair, hydrate, render.

Sections are checked as they stream out of the model; an accepted section is final. A
model that fails, stalls past the deadline or writes unusable text costs at most one retry,
then the shopper gets the deterministic `rules` page: a page always comes back.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from composer.backends import BackendRegistry
from composer.errors import ComposerError, UsageError
from composer.hydration import HydratedPage, HydratedSection, hydrate, to_layout
from composer.layout import (
    GeneratedPage,
    GeneratedSection,
    PageLayout,
    generation_schema,
)
from composer.llm.base import ChatMessage, Generation, GenerationRequest, LLMBackend, LLMError
from composer.page_request import PageRequest
from composer.prompting import HandleMap, PromptLibrary, page_variables
from composer.rendering import PageRenderer
from composer.settings import BackendName, Settings
from composer.shop import ProfileFile, ShopProfile
from composer.streaming import SectionScanner
from composer.trace import Attempt, PageTrace
from composer.validation import PageChecker, parse, prompt_fragments
from composer.wording import (
    Similarity,
    WordChoice,
    WordWriter,
    encoder_similarity,
    theme_words,
)
from retrieval import CandidateSet, Product, RetrievalRequest, Retriever


class NoCandidatesError(ComposerError):
    """Filters left no product to show."""


@dataclass
class PageResult:
    layout: PageLayout
    page: HydratedPage
    html: str | None
    trace: PageTrace

    def to_dict(self, include_html: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"layout": self.layout.model_dump(mode="json")}
        if include_html and self.html is not None:
            out["html"] = self.html
        out["trace"] = self.trace.to_dict()
        return out


@dataclass
class RetrievalEvent:
    candidates: list[dict[str, Any]]


@dataclass
class SectionEvent:
    index: int
    section: HydratedSection
    layout: dict[str, Any]


@dataclass
class DoneEvent:
    result: PageResult


PageEvent = RetrievalEvent | SectionEvent | DoneEvent


class _Deadline(Exception):
    pass


# The layout-as-JSON prompt the decoding benchmarks use when the page prompt writes words.
JSON_PROMPT = "page_v3"


class PageComposer:
    def __init__(
        self,
        settings: Settings,
        retriever: Retriever,
        backends: BackendRegistry | None = None,
        prompts: PromptLibrary | None = None,
        renderer: PageRenderer | None = None,
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.backends = backends or BackendRegistry(settings)
        self.prompts = prompts or PromptLibrary()
        self.renderer = renderer or PageRenderer(settings.currency, links=settings.link_policy())
        self.profile_file = ProfileFile(settings.resolved_profile_path())

    def load(self, backend: str | None = None) -> None:
        """Load the backend's model and the encoder now, so that their first use does not
        spend a page's deadline (the server does this before it says it is ready)."""
        self.backends.get(backend, self.settings.llm_model)
        vector = self.retriever.vector
        if vector is not None and vector.encoder is not None:
            vector.encoder.encode_one("warm")

    def compose(self, request: PageRequest) -> PageResult:
        for event in self.stream(request):
            if isinstance(event, DoneEvent):
                return event.result
        raise ComposerError("page stream ended without a page")  # pragma: no cover

    def stream(self, request: PageRequest) -> Iterator[PageEvent]:
        t0 = time.perf_counter()
        deadline = t0 + self.settings.page_deadline_s
        backend = self.backends.get(request.backend, self.settings.llm_model)
        prompt_name = request.prompt or self.settings.prompt
        trace = PageTrace(
            backend=backend.name,
            model=backend.model,
            prompt=prompt_name,
            prompt_hash=self.prompts.file_hash(prompt_name),
        )
        timings = trace.timings_ms

        t = time.perf_counter()
        candidates = self._retrieve(request)
        timings["retrieval"] = _ms(t)
        handles = HandleMap.build(candidates)
        cat = self.retriever.catalog
        products = {pid: cat.products[cat.index[pid]] for pid in handles.products.values()}
        trace.shopper = candidates.profile.pseudonym
        trace.sources_missing = dict(candidates.missing_sources)
        trace.model_version = candidates.model_version
        trace.candidates = [
            {
                "handle": handles.handle_of(c.product_id),
                "product_id": c.product_id,
                "score": c.score,
                "provenance": [p.value for p in c.provenance],
                "reason": c.reason.code,
                "theme": c.theme,
            }
            for c in candidates.candidates
        ]
        yield RetrievalEvent(trace.candidates)

        t = time.perf_counter()
        # A prompt with a `headline` block writes words field by field over the rules
        # layout; one with `system`/`user` blocks asks for the whole layout as JSON.
        words_mode = backend.reads_prompt and self.prompts.has_block(prompt_name, "headline")
        variables, messages, schema = self.prompt_for(
            request,
            candidates,
            handles,
            products,
            prompt_name,
            backend.reads_prompt and not words_mode,
        )
        timings["prompt"] = _ms(t)

        if words_mode:
            final = yield from self._words_page(
                request, trace, variables, handles, candidates, products, backend, deadline, t0
            )
        else:
            final = yield from self._json_page(
                request, trace, variables, messages, schema, handles, candidates, products,
                backend, deadline, t0,
            )  # fmt: skip
        t = time.perf_counter()
        layout = to_layout(
            final, handles, candidates, self.retriever.catalog.by_id(), request.locale
        )
        timings["validation"] = _ms(t)

        t = time.perf_counter()
        page = hydrate(layout, handles, products, request.kind, request.locale)
        timings["hydration"] = _ms(t)
        html = None
        if request.format in ("html", "both"):
            t = time.perf_counter()
            html = self.renderer.render(page)
            timings["render"] = _ms(t)
        timings["total"] = _ms(t0)
        yield DoneEvent(PageResult(layout, page, html, trace))

    def _json_page(
        self,
        request: PageRequest,
        trace: PageTrace,
        variables: dict[str, Any],
        messages: tuple[ChatMessage, ...],
        schema: dict[str, Any],
        handles: HandleMap,
        candidates: CandidateSet,
        products: dict[str, Product],
        backend: LLMBackend,
        deadline: float,
        t0: float,
    ) -> Generator[PageEvent, None, GeneratedPage]:
        """The whole layout as one JSON answer under the schema, sections checked as they
        stream; one repair turn; the rules page when nothing usable came."""
        timings = trace.timings_ms
        trace.prompt_examples = prompt_fragments(messages)
        checker = PageChecker(
            handles,
            request.locale,
            request.max_sections,
            examples=trace.prompt_examples,
            prompt_fields=[variables["shopper_summary"]],
        )
        title: str | None = None
        emitted = 0
        t_gen = time.perf_counter()
        for attempt_no in range(2):
            attempt = Attempt()
            trace.attempts.append(attempt)
            gen_request = GenerationRequest(
                messages=messages,
                json_schema=schema,
                max_tokens=self.settings.page_max_tokens,
                temperature=self.settings.temperature,
                seed=request.seed,
                context=variables,
            )
            scanner = SectionScanner()
            started = time.perf_counter()
            issues: list[str] = []
            scanned = 0
            try:
                stream = _generate(backend, gen_request)
                while True:
                    if time.perf_counter() > deadline:
                        stream.close()
                        raise _Deadline
                    try:
                        delta = next(stream)
                    except StopIteration as stop:
                        info: Generation | None = stop.value
                        break
                    for raw in scanner.feed(delta):
                        where = f"sections[{scanned}]"
                        scanned += 1
                        section, sec_issues, repairs = checker.section(raw, where)
                        trace.repairs += repairs
                        issues += [str(i) for i in sec_issues]
                        if section is not None:
                            if "first_section" not in timings:
                                timings["first_section"] = _ms(t0)
                            yield self._section_event(
                                emitted, section, handles, candidates, products, request
                            )
                            emitted += 1
            except _Deadline:
                attempt.error = f"deadline of {self.settings.page_deadline_s:g} s reached"
                attempt.seconds = round(time.perf_counter() - started, 3)
                break
            except LLMError as exc:
                attempt.error = str(exc)
                attempt.seconds = round(time.perf_counter() - started, 3)
                break
            attempt.seconds = round(time.perf_counter() - started, 3)
            attempt.tokens = info.tokens if info else 0
            attempt.finish_reason = info.finish_reason if info else ""
            trace.tokens += attempt.tokens
            page, parse_issues = parse(scanner.text)
            issues += [str(i) for i in parse_issues]
            title_issues = checker.title_issues(page.title) if page is not None else []
            if page is not None and not title_issues:
                title = title or page.title
            # A bad title alone is repaired with the rules title below: retrying a whole
            # generation for a few words would double the page's latency.
            attempt.issues = issues + [str(i) for i in title_issues]
            if not issues or len(checker.accepted) >= request.max_sections:
                break
            if attempt_no == 0:
                fix = self.prompts.render_block("repair_v1", "user", {"issues": issues[:6]})
                messages = (
                    *messages,
                    ChatMessage("assistant", scanner.text),
                    ChatMessage("user", fix),
                )
        timings["generation"] = _ms(t_gen)

        if checker.accepted:
            if title is None:
                title = self._rules_generated(variables).title
                trace.repairs.append("title replaced by the rules title")
            final = GeneratedPage(title=title, sections=checker.accepted)
        else:
            trace.fallback = True
            last = trace.attempts[-1]
            trace.fallback_reason = last.error or "; ".join(last.issues[:3]) or "no valid section"
            final = self._rules_page(variables, handles, request)
            timings.setdefault("first_section", _ms(t0))
            for n, section in enumerate(final.sections):
                yield self._section_event(n, section, handles, candidates, products, request)
        return final

    def _words_page(
        self,
        request: PageRequest,
        trace: PageTrace,
        variables: dict[str, Any],
        handles: HandleMap,
        candidates: CandidateSet,
        products: dict[str, Product],
        backend: LLMBackend,
        deadline: float,
        t0: float,
    ) -> Generator[PageEvent, None, GeneratedPage]:
        """The rules layout (retrieval's themes and order), each headline and the title
        written by the model as a checked completion; a field whose candidates all fail
        keeps its rules text. All fields go to the model as one batch; sections stream
        once it has answered."""
        timings = trace.timings_ms
        rules = self._rules_page(variables, handles, request)
        try:
            profile = self.profile()
        except UsageError as exc:  # a broken shop.yaml must not cost shoppers their page
            profile, broken = None, str(exc)
        else:
            broken = ""
        if profile is None or not profile.for_locale(request.locale).headline_count():
            why = broken or (
                f"no shop profile at {self.settings.resolved_profile_path()}"
                if profile is None
                else f"the shop profile has no {request.locale.value} example headlines"
            )
            trace.fallback, trace.fallback_reason = True, f"{why}; rules words shown"
            for n, section in enumerate(rules.sections):
                timings.setdefault("first_section", _ms(t0))
                yield self._section_event(n, section, handles, candidates, products, request)
            return rules
        writer = WordWriter(
            backend, self.prompts, request.prompt or self.settings.prompt, profile,
            self.settings.words, self.similarity(),
        )  # fmt: skip
        trace.prompt_examples = writer.prompt_texts()
        attempt = Attempt()
        trace.attempts.append(attempt)
        salt = f"{trace.shopper}:{request.seed or 0}:{request.kind.value}:{request.query or ''}"
        seed = int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=4).digest(), "big")
        prompt_fields = [variables["shopper_summary"]]
        t_gen = time.perf_counter()
        themes = [
            theme_words(section.theme, section.items, handles, products, profile, request.locale)
            for section in rules.sections
        ]
        fields = [
            writer.headline(
                f"sections[{n}].headline",
                theme,
                request.locale,
                salt,
                seed + 7919 * n,
                section.headline,
                themes,
            )
            for n, (section, theme) in enumerate(zip(rules.sections, themes, strict=True))
        ]
        fields.append(writer.title(themes, request.locale, salt, seed + 104729, rules.title))
        # A streamed page: the first section's headline alone first, and its section out
        # before the other fields are written.
        lead = 1 if self.settings.words.first_section_alone and len(fields) > 2 else 0
        choices: list[WordChoice] = []
        sent = 0
        try:
            if lead:
                choices = writer.write(fields[:lead], request.locale, prompt_fields, deadline)
                first = choices[0]
                if first.where == "sections[0].headline":
                    headline = first.text
                    section = rules.sections[0].model_copy(update={"headline": headline})
                    timings.setdefault("first_section", _ms(t0))
                    yield self._section_event(0, section, handles, candidates, products, request)
                    sent = 1
            choices += writer.write(
                fields[lead:], request.locale, prompt_fields, deadline, [c.text for c in choices]
            )
        except LLMError as exc:
            attempt.error = str(exc)
            trace.fallback = True
            trace.fallback_reason = f"{attempt.error}; rules words shown"
        for choice in choices:
            self._record_choice(trace, attempt, choice)
        if any(c.late for c in choices):
            attempt.error = f"deadline of {self.settings.page_deadline_s:g} s reached"
            trace.fallback = True
            trace.fallback_reason = f"{attempt.error}; rules words for the fields not written"
        words = {c.where: c.text for c in choices}
        sections: list[GeneratedSection] = []
        for n, section in enumerate(rules.sections):
            headline = words.get(f"sections[{n}].headline", section.headline)
            sections.append(section.model_copy(update={"headline": headline}))
            if n < sent:
                continue  # out already, with these words
            timings.setdefault("first_section", _ms(t0))
            yield self._section_event(n, sections[-1], handles, candidates, products, request)
        title = words.get("title", rules.title)
        attempt.seconds = round(time.perf_counter() - t_gen, 3)
        timings["generation"] = _ms(t_gen)
        return GeneratedPage(title=title, sections=sections)

    @staticmethod
    def _record_choice(trace: PageTrace, attempt: Attempt, choice: WordChoice) -> None:
        trace.words.append(choice.to_dict())
        trace.tokens += choice.tokens
        attempt.tokens += choice.tokens
        if choice.source != "llm":
            codes = sorted({i for c in choice.candidates for i in c.issues}) or [
                "deadline" if choice.late else "no candidate"
            ]
            attempt.issues.append(f"{choice.where}: rules text kept ({', '.join(codes)})")
            trace.repairs.append(f"{choice.where} replaced by the rules text")

    def profile_stamp(self) -> int:
        """Changes when the profile file does (0 when there is none)."""
        return self.profile_file.stamp()

    def profile(self) -> ShopProfile | None:
        """The shop's profile, read again when the file changes."""
        return self.profile_file.current()

    def similarity(self) -> Similarity | None:
        """Meaning-closeness of two texts with the retriever's encoder, when it has one."""
        vector = self.retriever.vector
        encoder = vector.encoder if vector is not None else None
        if encoder is None:
            return None
        return encoder_similarity(encoder)

    def generation_request(
        self, request: PageRequest, max_tokens: int | None = None
    ) -> GenerationRequest:
        """The one-JSON-answer prompt and schema for ``request`` (for the decoding and
        prefix-cache benchmarks). A words prompt (page_v4) has no such request: the layout
        prompt `JSON_PROMPT` stands in, so the benchmarks measure the same thing as before."""
        candidates = self._retrieve(request)
        handles = HandleMap.build(candidates)
        cat = self.retriever.catalog
        products = {pid: cat.products[cat.index[pid]] for pid in handles.products.values()}
        prompt = request.prompt or self.settings.prompt
        if self.prompts.has_block(prompt, "headline"):
            prompt = JSON_PROMPT
        _, messages, schema = self.prompt_for(request, candidates, handles, products, prompt)
        return GenerationRequest(
            messages=messages,
            json_schema=schema,
            max_tokens=max_tokens or self.settings.page_max_tokens,
        )

    # -- pieces ---------------------------------------------------------------------------

    def prompt_for(
        self,
        request: PageRequest,
        candidates: CandidateSet,
        handles: HandleMap,
        products: dict[str, Product],
        prompt_name: str,
        render: bool = True,
    ) -> tuple[dict[str, Any], tuple[ChatMessage, ...], dict[str, Any]]:
        """Prompt variables, rendered messages (none unless ``render``) and the
        constrained-decoding schema."""
        variables = page_variables(
            candidates,
            products,
            handles,
            request.kind,
            request.locale,
            request.max_sections,
            self.settings.brand_voice,
        )
        messages = self.prompts.render(prompt_name, variables) if render else ()
        schema = generation_schema(
            list(handles.products), list(handles.themes), request.max_sections, request.locale
        )
        return variables, messages, schema

    def _retrieve(self, request: PageRequest) -> CandidateSet:
        unknown = [p for p in request.recent_items if p not in self.retriever.catalog.index]
        result = self.retriever.retrieve(
            RetrievalRequest(
                shopper_id=request.shopper_id,
                recent_product_ids=tuple(p for p in request.recent_items if p not in unknown),
                query=request.query,
                k=self.settings.page_candidates,
                min_price=request.min_price,
                max_price=request.max_price,
                categories=tuple(request.categories),
                max_themes=request.max_sections + 1,
                shuffle_seed=_shuffle_seed(request) if request.order == "shuffled" else None,
            )
        )
        if len(result.candidates) < 2:
            raise NoCandidatesError(
                "fewer than 2 products match the filters (price range, categories, stock); "
                "widen them"
            )
        return result

    def _section_event(self, index, section, handles, candidates, products, request):
        layout = to_layout(
            GeneratedPage(title="-" * 3, sections=[section]),
            handles,
            candidates,
            self.retriever.catalog.by_id(),
            request.locale,
        )
        page = hydrate(layout, handles, products, request.kind, request.locale)
        return SectionEvent(index, page.sections[0], layout.sections[0].model_dump(mode="json"))

    def _rules_generated(self, variables: dict[str, Any]) -> GeneratedPage:
        rules = self.backends.get(BackendName.RULES)
        page, _ = parse(rules.generate(GenerationRequest(messages=(), context=variables))[0].text)
        assert page is not None, "the rules backend writes valid pages"
        return page

    def _rules_page(
        self, variables: dict[str, Any], handles: HandleMap, request: PageRequest
    ) -> GeneratedPage:
        page = self._rules_generated(variables)
        # Rules words are templates around catalog facts and the shopper's own query ("Because
        # you searched “usb_c cable”"): the checks for what a model invents do not apply.
        checker = PageChecker(handles, request.locale, request.max_sections, word_checks=False)
        for n, sec in enumerate(page.sections):
            checker.section(sec, f"sections[{n}]")
        return GeneratedPage(title=page.title, sections=checker.accepted or page.sections)


def _generate(
    backend: LLMBackend, request: GenerationRequest
) -> Generator[str, None, Generation | None]:
    """Text deltas, returning the backend's :class:`Generation` summary when it gives one."""
    if backend.can_stream:
        result = yield from backend.stream(request)
        return result
    gen = backend.generate(request)[0]
    yield gen.text
    return gen


def _shuffle_seed(request: PageRequest) -> int:
    """Fixed by the shopper (or session) and the request's seed: a shuffled page is the
    same page on every view, like a ranked one."""
    # Not the session id: it is not part of the page cache's key, so two sessions with the
    # same recent items share a page (and its order).
    who = request.shopper_id or ",".join(request.recent_items)
    salt = f"{who}:{request.seed or 0}:{request.kind.value}:{request.query or ''}"
    return int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=8).digest(), "big")


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


__all__ = [
    "DoneEvent",
    "GeneratedSection",
    "NoCandidatesError",
    "PageComposer",
    "PageEvent",
    "PageResult",
    "RetrievalEvent",
    "SectionEvent",
]
