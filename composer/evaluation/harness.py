"""One `composer eval` run end to end: suite → world → variants → metrics → comparison →
gate → report. The CLI only parses options and prints."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from composer.errors import UsageError
from composer.evaluation.bootstrap import Estimate
from composer.evaluation.compare import (
    BaselineCheck,
    Delta,
    aggregate,
    check_baseline,
    compare_to,
    load_baseline,
    make_baseline,
    save_baseline,
    suite_metrics,
)
from composer.evaluation.gen_cache import GenerationCache
from composer.evaluation.holdout import Holdout, build_holdout
from composer.evaluation.judge import JUDGE_PROMPT, PageJudge, judge_runs
from composer.evaluation.metrics import Metric
from composer.evaluation.report import DEFAULT_EXAMPLES, build_context, render_report
from composer.evaluation.runner import EvalRunner, Progress, SuiteRun, Variant, plan_variants
from composer.evaluation.suite import Suite, load_suite
from composer.evaluation.vector_cache import CachedEncoder
from composer.evaluation.word_scores import (
    CachedWordJudge,
    count_fields,
    judge_model_path,
    judge_words,
)
from composer.prompting import PromptLibrary
from composer.provision import open_store
from composer.settings import BackendName, Settings
from composer.wording import encoder_similarity
from retrieval import Encoder, load_retriever
from retrieval.catalog_view import CatalogView

EVAL_DEADLINE_S = 600.0


@dataclass
class EvalOptions:
    suite: str
    prompts: list[str] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    baseline: Path | None = None
    save_baseline: Path | None = None
    report: Path | None = None
    judge: bool = False
    judge_backend: BackendName | None = None
    # The word judge (README, "Judging the words"): on when the suite lists the `words`
    # metric group or when asked; it loads a 1.5B model unless every verdict is cached.
    judge_words: bool = False
    words_out: Path | None = None  # every shown field with its writer (and label), JSONL
    concurrency: int | None = None
    limit: int | None = None
    cache: Path | None = None
    use_cache: bool = True
    # Quality is measured without the serving deadline (a busy machine must not turn pages
    # into fallbacks); latency is reported as a metric instead.
    deadline_s: float = EVAL_DEADLINE_S
    report_examples: int = DEFAULT_EXAMPLES


@dataclass
class EvalOutcome:
    result: SuiteRun
    metrics: list[Metric]
    aggregates: dict[str, dict[str, Estimate]]
    deltas: list[Delta]
    check: BaselineCheck | None
    judge: dict[str, Any] | None = None  # backend, model and cache use of the judge
    word_judge: dict[str, Any] | None = None  # model, prompt and cache use of the word judge

    @property
    def regressions(self) -> list[Any]:
        return self.check.regressions if self.check else []

    def to_json(self) -> dict[str, Any]:
        variants: dict[str, Any] = {}
        for run in self.result.runs:
            agg = self.aggregates[run.variant.name]
            entry: dict[str, Any] = {m: _num(e.value) for m, e in agg.items()}
            entry["ci"] = {m: [_num(e.low), _num(e.high)] for m, e in agg.items()}
            entry.update(
                prompt=run.variant.prompt,
                prompt_hash=run.prompt_hash,
                backend=run.variant.backend,
                model=run.variant.model,
                examples=len(run.examples),
                seconds=round(run.seconds, 2),
                cache={"hits": run.cache.hits, "misses": run.cache.misses},
            )
            variants[run.variant.name] = entry
        totals = self.result.cache_totals()
        return {
            "suite": self.result.suite.name,
            "examples": len(self.result.runs[0].examples) if self.result.runs else 0,
            "seconds": round(self.result.seconds, 2),
            "cache": {
                "file": self.result.cache_file,
                "hits": totals.hits,
                "misses": totals.misses,
            },
            "variants": variants,
            "comparisons": [d.to_dict() for d in self.deltas],
            "baseline": (
                {
                    "matched": self.check.matched,
                    "comparisons": [d.to_dict() for d in self.check.deltas],
                }
                if self.check
                else None
            ),
            "regressions": [r.to_dict() for r in self.regressions],
            "judge": self.judge,
            "word_judge": self.word_judge,
        }


def default_cache_file(settings: Settings) -> Path:
    return settings.resolved_cache_dir() / "eval" / "generations.sqlite"


def run_eval(settings: Settings, options: EvalOptions, progress: Progress) -> EvalOutcome:
    suite = load_suite(options.suite)
    settings = settings.model_copy(update={"page_deadline_s": options.deadline_s})
    if suite.shop is not None:
        settings = shop_settings(settings, suite.shop, progress)
    if suite.profile or suite.shop:
        from composer.shop.setup import packaged_profile

        settings = settings.model_copy(
            update={"shop_profile": packaged_profile(suite.profile or suite.shop or "")}
        )
    prompts = PromptLibrary()
    default_prompt = settings.prompt if suite.task == "pages" else settings.copy_prompt
    asked = [
        prompts.add_file(Path(p)) if p.endswith(".j2") else p
        for p in options.prompts or [default_prompt]
    ]
    variants = plan_variants(
        asked,
        options.backends or [settings.llm_backend],
        options.models or [settings.llm_model],
    )
    for v in variants:
        if v.prompt:
            prompts.file_hash(v.prompt)  # unknown prompt names fail before any work
    baseline = load_baseline(options.baseline, suite) if options.baseline else None
    metrics = suite_metrics(
        suite,
        judged=options.judge or "judge" in suite.metrics,
        words=options.judge_words or "words" in suite.metrics,
    )
    if options.judge_words and suite.task != "pages":
        raise UsageError("the word judge reads pages' titles and headlines: use a pages suite")
    if any(m.group == "judge" for m in metrics) and (suite.task != "pages" or len(variants) < 2):
        raise UsageError("the judge compares page variants: give at least two --prompt/--backend")

    cache = None
    if options.use_cache:
        cache = GenerationCache(options.cache or default_cache_file(settings))
    judge: dict[str, Any] | None = None
    word_judge: dict[str, Any] | None = None
    try:
        runner = EvalRunner(settings, cache, prompts, progress, options.concurrency)
        result = _run(suite, variants, runner, settings, options, cache)
        if any(m.group == "words" for m in metrics):
            word_judge = _judge_words(settings, result, cache, prompts, progress)
        if any(m.group == "judge" for m in metrics):
            judge_name = options.judge_backend or next(
                (v.backend for v in variants if v.backend != BackendName.RULES),
                settings.llm_backend,
            )
            if judge_name == BackendName.RULES:
                raise UsageError("the judge needs a model backend (--judge-backend)")
            backend = runner.cached_backend(
                judge_name, settings.llm_model, prompts.file_hash(JUDGE_PROMPT)
            )
            pairs = (len(result.runs) - 1) * len(result.runs[0].examples)
            judge_runs(PageJudge(backend, prompts), result.runs, progress("judge", pairs))
            judge = {
                "prompt": JUDGE_PROMPT,
                "backend": judge_name,
                "model": settings.llm_model,
                "cache": {"hits": backend.stats.hits, "misses": backend.stats.misses},
            }
    finally:
        if cache is not None:
            cache.close()

    samples = suite.bootstrap_samples
    aggregates = {
        r.variant.name: aggregate([e.values for e in r.examples], metrics, samples)
        for r in result.runs
    }
    deltas = compare_to(result.runs[0], result.runs, metrics, samples)
    check = check_baseline(result, baseline, metrics) if baseline else None
    outcome = EvalOutcome(result, metrics, aggregates, deltas, check, judge, word_judge)
    if options.words_out:
        write_words(options.words_out, result)
    if options.save_baseline:
        save_baseline(options.save_baseline, make_baseline(result, metrics))
    if options.report:
        context = build_context(
            result,
            metrics,
            aggregates,
            deltas,
            check,
            str(options.baseline) if options.baseline else None,
            options.report_examples,
        )
        options.report.parent.mkdir(parents=True, exist_ok=True)
        options.report.write_text(render_report(context), encoding="utf-8")
    return outcome


def _judge_words(
    settings: Settings,
    result: SuiteRun,
    cache: GenerationCache | None,
    prompts: PromptLibrary,
    progress: Progress,
) -> dict[str, Any]:
    judge = CachedWordJudge(judge_model_path(settings), cache, prompts)
    judge_words(judge, result.runs, progress("word judge", count_fields(result.runs)))
    return {
        "model": settings.words.judge_model,
        "judge": judge.identity,
        "weights": judge.weights.fitted_on,
        "cache": {"hits": judge.hits, "misses": judge.misses},
    }


def write_words(path: Path, result: SuiteRun) -> None:
    """Every shown field of every page as one JSON line: the words to read, label or judge."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for run in result.runs:
            for example in run.examples:
                shown = example.shown or {}
                for f in shown.get("fields", []):
                    line = {
                        "suite": result.suite.name,
                        "variant": run.variant.name,
                        "example": example.id,
                        "sells": shown.get("sells", ""),
                        **f,
                    }
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")


def shop_settings(settings: Settings, name: str, progress: Progress) -> Settings:
    """Settings for packaged shop ``name`` in its own folder, set up there on first use."""
    from composer.shop.setup import init_packaged

    shop = settings.for_shop_folder(settings.artifacts_dir / "shops" / name)
    if not shop.resolved_profile_path().is_file():
        store = open_store(shop)
        try:
            init_packaged(shop, store, name, progress)
        finally:
            store.close()
    return shop


def _run(
    suite: Suite,
    variants: Sequence[Variant],
    runner: EvalRunner,
    settings: Settings,
    options: EvalOptions,
    cache: GenerationCache | None,
) -> SuiteRun:
    store = open_store(settings)
    try:
        encoder = None
        name = settings.embedding_model
        if cache is not None:
            encoder = CachedEncoder(name, cache, lambda: Encoder(name, device=settings.device))
        if suite.task == "copy":
            catalog = CatalogView(store.products()).by_id()
            if not catalog:
                raise UsageError("the catalog is empty; run `composer setup` first")
            similarity = encoder_similarity(encoder or Encoder(name, device=settings.device))
            return runner.run_copy(suite, variants, catalog, options.limit, similarity)
        base = load_retriever(settings.retrieval_config(), store, encoder)  # type: ignore[arg-type]
        if "relevance" in suite.metrics or suite.sample or any(c.shopper for c in suite.requests):
            holdout = build_holdout(base, store.all_events(), suite.split)
        else:  # anonymous sessions only: no held-out future to judge by
            holdout = Holdout(base, {})
        return runner.run_pages(suite, variants, holdout, options.limit)
    finally:
        store.close()


def _num(v: float) -> float | None:
    return None if v != v else round(v, 4)  # NaN → null
