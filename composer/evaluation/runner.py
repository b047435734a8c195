"""Run prompt/backend/model variants over a suite: one page (or copy request) per example,
every generation through the cache, metrics per example."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from composer.backends import BACKENDS, BackendRegistry
from composer.copywriting import CopyRequest, Copywriter
from composer.errors import ComposerError, UsageError
from composer.evaluation.gen_cache import (
    CachedBackend,
    CacheStats,
    CallRecord,
    GenerationCache,
    recording,
)
from composer.evaluation.holdout import Holdout, sample_cases
from composer.evaluation.identity import model_identity
from composer.evaluation.metrics import copy_metrics, page_metrics
from composer.evaluation.shown_words import shown_fields
from composer.evaluation.suite import CopyCase, PageCase, Suite
from composer.llm.base import LLMBackend
from composer.page_request import PageRequest
from composer.pipeline import PageComposer
from composer.prompting import PromptLibrary
from composer.rendering import PageRenderer
from composer.settings import BackendName, Settings
from composer.wording import Similarity
from retrieval import Product

Progress = Callable[[str, int], Callable[[int], None]]
# In-process transformers decodes one sequence at a time behind a lock: more threads only
# contend. A vLLM server batches concurrent requests; `--concurrency` sets how many.
DEFAULT_CONCURRENCY = {BackendName.VLLM: 8}


@dataclass(frozen=True)
class Variant:
    name: str
    prompt: str | None  # None for the rules backend, which reads no prompt
    backend: BackendName
    model: str


def plan_variants(
    prompts: Sequence[str], backends: Sequence[str], models: Sequence[str]
) -> list[Variant]:
    """Every prompt × backend × model; names are the prompt alone unless backends or models
    vary in the run (``page_v2@vllm:MODEL``). The rules backend is one variant, ``rules``."""
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise UsageError(f"unknown backend '{unknown[0]}'; use one of: {', '.join(BACKENDS)}")
    several = len(backends) > 1 or len(models) > 1
    out: list[Variant] = []
    for backend in map(BackendName, backends):
        if backend == BackendName.RULES:
            out.append(Variant("rules", None, BackendName.RULES, "rules"))
            continue
        for model in models:
            for prompt in prompts:
                name = prompt
                if several:
                    name += f"@{backend}" + (f":{Path(model).name}" if len(models) > 1 else "")
                out.append(Variant(name, prompt, backend, model))
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise UsageError("variants repeat; give each prompt, backend and model once")
    return out


@dataclass
class ExampleRun:
    id: str
    request: dict[str, Any]
    values: dict[str, Any]
    generated: list[str] = field(default_factory=list)  # raw model output, per call
    html: str | None = None
    trace: dict[str, Any] | None = None
    shown: dict[str, Any] | None = None  # what the shopper sees, for the judge and report


@dataclass
class VariantRun:
    variant: Variant
    prompt_hash: str
    examples: list[ExampleRun]
    cache: CacheStats
    seconds: float


@dataclass
class SuiteRun:
    suite: Suite
    runs: list[VariantRun]
    seconds: float
    cache_file: str | None

    def cache_totals(self) -> CacheStats:
        return CacheStats(
            sum(r.cache.hits for r in self.runs), sum(r.cache.misses for r in self.runs)
        )


class EvalRunner:
    def __init__(
        self,
        settings: Settings,
        cache: GenerationCache | None,
        prompts: PromptLibrary | None = None,
        progress: Progress | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.cache = cache
        self.prompts = prompts or PromptLibrary()
        self.progress = progress or (lambda _d, _t: lambda _n: None)
        self.concurrency = concurrency
        self.renderer = PageRenderer(settings.currency, links=settings.link_policy())
        self._inner: dict[tuple[str, str], LLMBackend] = {}
        self._lock = threading.Lock()

    # -- backends --------------------------------------------------------------------------

    def settings_for(self, variant: Variant) -> Settings:
        rules = variant.backend == BackendName.RULES
        # The variant's model writes everything, copy included.
        update: dict[str, Any] = {} if rules else {"llm_model": variant.model, "copy_model": None}
        return self.settings.model_copy(update=update)

    def inner_backend(self, backend: BackendName, model: str) -> LLMBackend:
        """One real backend per (backend, model), shared by every prompt variant; built on
        the first cache miss only."""
        with self._lock:
            key = (backend, model)
            if key not in self._inner:
                settings = self.settings.model_copy(update={"llm_model": model})
                self._inner[key] = BackendRegistry(settings).get(backend)
            return self._inner[key]

    def cached_backend(self, backend: BackendName, model: str, namespace: str) -> CachedBackend:
        return CachedBackend(
            name=backend,
            model=model_identity(self.settings, backend, model),
            inner=lambda: self.inner_backend(backend, model),
            cache=self.cache,
            namespace=namespace,
        )

    def registry_for(self, variant: Variant, namespace: str) -> tuple[BackendRegistry, CacheStats]:
        registry = BackendRegistry(self.settings_for(variant))
        if variant.backend == BackendName.RULES:
            return registry, CacheStats()
        wrapper = self.cached_backend(variant.backend, variant.model, namespace)
        registry.register(wrapper)
        return registry, wrapper.stats

    def workers(self, backend: BackendName) -> int:
        if backend == BackendName.TRANSFORMERS:
            return 1
        return self.concurrency or DEFAULT_CONCURRENCY.get(backend, 1)

    # -- runs ------------------------------------------------------------------------------

    def page_cases(self, suite: Suite, holdout: Holdout, limit: int | None) -> list[PageCase]:
        cases = list(suite.requests)
        if suite.sample is not None:
            cases += sample_cases(suite.sample, holdout)
        holdout.check(cases)
        return cases[:limit] if limit else cases

    def run_pages(
        self,
        suite: Suite,
        variants: Sequence[Variant],
        holdout: Holdout,
        limit: int | None = None,
    ) -> SuiteRun:
        started = time.perf_counter()
        cases = self.page_cases(suite, holdout, limit)
        _warm_queries(holdout, cases)
        runs = []
        for variant in variants:
            prompt_hash = self.prompts.file_hash(variant.prompt) if variant.prompt else ""
            registry, stats = self.registry_for(variant, prompt_hash)
            composer = PageComposer(
                self.settings_for(variant),
                holdout.retriever,
                registry,
                self.prompts,
                self.renderer,
            )
            t = time.perf_counter()
            examples = self._map(
                variant,
                cases,
                partial(self._page, composer, variant, holdout=holdout, suite=suite),
            )
            runs.append(VariantRun(variant, prompt_hash, examples, stats, time.perf_counter() - t))
        return SuiteRun(suite, runs, time.perf_counter() - started, self._cache_file())

    def run_copy(
        self,
        suite: Suite,
        variants: Sequence[Variant],
        catalog: Mapping[str, Product],
        limit: int | None = None,
        similarity: Similarity | None = None,
    ) -> SuiteRun:
        started = time.perf_counter()
        cases = suite.copy_tasks[:limit] if limit else list(suite.copy_tasks)
        missing = sorted({p for c in cases for p in c.products if p not in catalog})
        if missing:
            raise UsageError(f"copy tasks name unknown product(s): {', '.join(missing[:5])}")
        runs = []
        for variant in variants:
            prompt_hash = self.prompts.file_hash(variant.prompt) if variant.prompt else ""
            registry, stats = self.registry_for(variant, prompt_hash)
            settings = self.settings_for(variant)
            if variant.prompt:
                settings = settings.model_copy(update={"copy_prompt": variant.prompt})
            writer = Copywriter(settings, catalog, registry, self.prompts, similarity)
            t = time.perf_counter()
            examples = self._map(
                variant,
                cases,
                partial(self._copy, writer, variant, catalog=catalog, suite=suite),
            )
            runs.append(VariantRun(variant, prompt_hash, examples, stats, time.perf_counter() - t))
        return SuiteRun(suite, runs, time.perf_counter() - started, self._cache_file())

    def _cache_file(self) -> str | None:
        return str(self.cache.path) if self.cache is not None else None

    def _map(
        self, variant: Variant, cases: Sequence[Any], work: Callable[[Any], ExampleRun]
    ) -> list[ExampleRun]:
        advance = self.progress(variant.name, len(cases))
        workers = self.workers(variant.backend)
        if workers <= 1:
            out = []
            for case in cases:
                out.append(work(case))
                advance(1)
            return out
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(work, case) for case in cases]
            results = []
            for future in futures:  # in suite order; progress lags at most by one batch
                results.append(future.result())
                advance(1)
            return results

    def _page(
        self,
        composer: PageComposer,
        variant: Variant,
        case: PageCase,
        holdout: Holdout,
        suite: Suite,
    ) -> ExampleRun:
        request = PageRequest(
            shopper_id=case.shopper,
            recent_items=case.recent,
            kind=case.kind,
            query=case.query,
            locale=case.locale,
            max_sections=case.max_sections,
            categories=case.categories,
            seed=case.seed,
            format="html",
            backend=variant.backend,
            prompt=variant.prompt,
        )
        try:
            with recording() as calls:
                result = composer.compose(request)
        except ComposerError as exc:
            raise UsageError(f"suite request {case.key()}: {exc}") from None
        latency = _replayed_latency(result.trace.timings_ms["total"] / 1000, calls)
        # The shop's own synonyms count as naming a theme, besides the suite's.
        profile = composer.profile()
        rules = suite.copy_rules
        if profile is not None:
            words = {k: [*v, *rules.theme_words.get(k, [])] for k, v in profile.theme_words.items()}
            rules = rules.model_copy(update={"theme_words": rules.theme_words | words})
        values = page_metrics(
            result,
            calls,
            holdout.relevant.get(case.shopper or "", frozenset()),
            case.locale,
            rules,
            self.settings.banned_words,
            latency,
        )
        fields = shown_fields(result)
        values["model_words"] = sum(f.source == "llm" for f in fields) / len(fields)
        shown = {
            "fields": [f.to_dict() for f in fields],
            "sells": profile.sells if profile is not None else "",
            "title": result.page.title,
            "sections": [
                {
                    "headline": s.headline,
                    "products": [
                        {"title": slot.product.title, "reason": slot.reason} for slot in s.slots
                    ],
                }
                for s in result.page.sections
            ],
        }
        return ExampleRun(
            id=case.key(),
            request=case.model_dump(mode="json"),
            values=values,
            generated=[c.text for c in calls],
            html=result.html,
            trace={"layout": result.layout.model_dump(mode="json"), **result.trace.to_dict()},
            shown=shown,
        )

    def _copy(
        self,
        writer: Copywriter,
        variant: Variant,
        case: CopyCase,
        catalog: Mapping[str, Product],
        suite: Suite,
    ) -> ExampleRun:
        request = CopyRequest(
            id=case.key(),
            products=case.products,
            kind=case.kind,
            tone=case.tone,
            locale=case.locale,
            n=case.n,
            max_chars=case.max_chars,
            seed=case.seed,
            backend=variant.backend,
        )
        with recording() as calls:
            result = writer.write(request)
        categories = sorted({c for p in case.products for c in catalog[p].categories[:1]})
        values = copy_metrics(
            result,
            categories,
            suite.copy_rules,
            self.settings.banned_words,
            _replayed_latency(result.seconds, calls),
        )
        return ExampleRun(
            id=case.key(),
            request=case.model_dump(mode="json"),
            values=values,
            generated=[c.text for c in calls],
            trace=result.model_dump(mode="json"),
            shown={"variants": [v.text for v in result.variants]},
        )


def _warm_queries(holdout: Holdout, cases: Sequence[PageCase]) -> None:
    """Embed the suite's queries first: loading the embedding model inside the first search
    page would be counted as that page's latency."""
    vector = holdout.retriever.vector
    if vector is None or vector.encoder is None:
        return
    for case in cases:
        if case.query and case.query.strip():
            vector.encoder.encode_one(case.query.strip())


def _replayed_latency(total_s: float, calls: Sequence[CallRecord]) -> float:
    """Wall time with each cached generation counted at the time it took when made."""
    live = sum(c.live_seconds for c in calls)
    made = sum(c.seconds for c in calls)
    return max(0.0, total_s - live + made)
