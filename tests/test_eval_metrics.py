"""The harness's arithmetic on tiny hand-computed cases: metrics, bootstrap, comparison,
the gate, the judge's order swap, suite files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import BuiltShop
from fault_injection import ScriptedBackend
from test_page import composer_for

from composer.errors import UsageError
from composer.evaluation import (
    ExampleRun,
    SuiteRun,
    Variant,
    VariantRun,
    check_baseline,
    difference,
    estimate,
    load_suite,
    make_baseline,
    plan_variants,
    resample_indices,
    suite_metrics,
    verdict,
)
from composer.evaluation.bootstrap import statistic
from composer.evaluation.compare import load_baseline, save_baseline
from composer.evaluation.copy_rules import CopyRules
from composer.evaluation.gen_cache import CacheStats, CallRecord
from composer.evaluation.metrics import (
    bigrams,
    degenerate,
    distinct_n,
    echoes,
    grounding_counts,
    headline_length_ok,
    mentions_theme,
    page_metrics,
    theme_category,
    tokens_of,
)
from composer.evaluation.suite import Suite
from composer.layout import Locale
from composer.page_request import PageRequest


def test_tokens_and_bigrams_treat_each_chinese_character_as_a_word() -> None:
    assert tokens_of("Sci-Fi worlds, for KIDS!") == ["sci-fi", "worlds", "for", "kids"]
    assert tokens_of("为你精选 Top") == ["为", "你", "精", "选", "top"]
    assert bigrams("a b c") == ["a b", "b c"]
    assert bigrams("one") == []


def test_distinct_2_counts_repeated_headlines_against_the_corpus() -> None:
    same = [bigrams("Picked for your taste")] * 4  # 3 bigrams × 4 pages, 3 distinct
    assert distinct_n(same) == pytest.approx(3 / 12)
    varied = [bigrams("Comedy for Sunday"), bigrams("Horror after dark")]
    assert distinct_n(varied) == 1.0
    assert math.isnan(distinct_n([[], []]))


def test_grounding_counts_claims_and_script() -> None:
    assert grounding_counts("Only $9.99 today", Locale.EN) == (1, 0)
    assert grounding_counts("50% off comedies", Locale.EN) == (1, 0)
    assert grounding_counts("Comedy for a lazy Sunday", Locale.EN) == (0, 0)
    assert grounding_counts("Comedy for a lazy Sunday", Locale.ZH) == (0, 1)
    assert grounding_counts("为你精选", Locale.ZH) == (0, 0)


def test_headline_length_and_theme_mention() -> None:
    rules = CopyRules(theme_words={"Children's": ["kids"]})
    assert headline_length_ok("Comedy for a lazy Sunday", Locale.EN, rules)
    assert not headline_length_ok("Comedy", Locale.EN, rules)
    assert not headline_length_ok("one two three four five six seven eight nine", Locale.EN, rules)
    assert headline_length_ok("更多喜剧片推荐", Locale.ZH, rules)
    assert mentions_theme("Big laughs: comedies", "Comedy", Locale.EN, rules)
    assert mentions_theme("Fun for kids", "Children's", Locale.EN, rules)
    assert mentions_theme("War stories", "War", Locale.EN, rules)
    assert not mentions_theme("Warm nights", "War", Locale.EN, rules)
    assert mentions_theme("更多喜剧推荐", "Comedy", Locale.ZH, rules)
    assert theme_category("喜剧片", Locale.ZH) == "Comedy"
    assert theme_category("Top picks", Locale.EN) is None


def test_looping_and_echoing_headlines_are_caught() -> None:
    assert degenerate("爱爱爱爱爱爱爱爱爱爱")
    assert degenerate("关于美女的美女美女美女美女美女")
    assert degenerate("Great great great films")
    assert not degenerate("Top picks: Comedy, Drama, Romance")
    assert not degenerate("开怀一笑的喜剧")
    assert echoes("Top picks", ["Top picks", "Heat"])
    assert echoes("heat!", ["Top picks", "Heat"])
    assert not echoes("Comedy for a lazy Sunday", ["Comedy", "Heat"])


def test_bootstrap_intervals_and_paired_differences() -> None:
    idx = resample_indices(4, 2000, seed=1)
    e = estimate([1, 0, 1, 1], "mean", idx)
    assert e.value == 0.75 and 0 <= e.low < 0.75 < e.high <= 1
    assert statistic([1.0, math.nan, 3.0], "median") == 2.0
    same = difference([0.2, 0.4, 0.6, 0.8], [0.2, 0.4, 0.6, 0.8], "mean", idx)
    assert (same.value, same.low, same.high) == (0, 0, 0) and not same.excludes_zero
    better = difference([0, 0, 0, 0], [1, 1, 1, 1], "mean", idx)
    assert better.value == 1 and better.excludes_zero
    # A corpus statistic: its point estimate lies inside its own interval.
    pages = [bigrams(t) for t in ("a b c", "a b d", "x y z", "p q r")]
    d = estimate(pages, "distinct_2", idx)
    assert d.value == pytest.approx(7 / 8)
    assert d.low <= d.value <= d.high


def test_variant_names() -> None:
    one = plan_variants(["page_v1", "page_v2"], ["transformers"], ["m"])
    assert [v.name for v in one] == ["page_v1", "page_v2"]
    many = plan_variants(["page_v1"], ["transformers", "vllm", "rules"], ["m"])
    assert [v.name for v in many] == ["page_v1@transformers", "page_v1@vllm", "rules"]
    assert many[2].prompt is None
    with pytest.raises(UsageError, match="unknown backend 'llama'"):
        plan_variants(["page_v1"], ["llama"], ["m"])


def test_judge_verdicts_cancel_position_bias() -> None:
    # A judge that always prefers whatever it sees first agrees with itself never.
    biased = verdict("A", "A")
    assert not biased.agree and biased.score == 0.5
    cand = verdict("B", "A")  # candidate preferred in both orders
    assert cand.agree and cand.score == 1.0
    ref = verdict("A", "B")
    assert ref.agree and ref.score == 0.0
    assert verdict("tie", "tie").score == 0.5 and verdict("tie", "tie").agree


def _run(name: str, values: list[dict], prompt: str = "p") -> VariantRun:
    examples = [ExampleRun(id=f"r{i}", request={}, values=v) for i, v in enumerate(values)]
    return VariantRun(Variant(name, prompt, "transformers", "m"), "hash", examples, CacheStats(), 1)


def _values(fallback: float, grounding: float, latency: float) -> dict:
    return {
        "valid": 1.0,
        "fallback": fallback,
        "grounding_errors": grounding,
        "latency_s": latency,
        "bigrams": ["a b"],
    }


def _suite(gate: dict) -> Suite:
    return Suite.model_validate(
        {
            "name": "tiny",
            "requests": [{"shopper": str(i)} for i in range(4)],
            "metrics": ["structure", "grounding", "cost"],
            "gate": gate,
            "bootstrap_samples": 200,
        }
    )


def test_gate_flags_only_what_moves_beyond_its_tolerance(tmp_path: Path) -> None:
    suite = _suite(
        {
            "fallback_rate": {"max_rise": 0.25},
            "grounding_errors": {"max_rise": 0.5},
            "latency_p50_s": {"max_rise_ratio": 1.0},
            "valid_rate": {"max_drop": 0.0},
        }
    )
    metrics = suite_metrics(suite)
    base = SuiteRun(suite, [_run("page_v1", [_values(0, 0, 10)] * 4)], 1.0, None)
    path = tmp_path / "baseline.json"
    save_baseline(path, make_baseline(base, metrics))
    baseline = load_baseline(path, suite)
    assert baseline.variants["page_v1"].metrics["fallback_rate"] == 0.0

    # One page more falls back (0.25: allowed), latency 1.9× (allowed), same grounding.
    ok = _run("page_v1", [_values(1, 0, 19)] + [_values(0, 0, 19)] * 3)
    check = check_baseline(SuiteRun(suite, [ok], 1, None), baseline, metrics)
    assert check.regressions == []
    assert check.matched == {"page_v1": "page_v1"}

    # A variant the baseline does not hold is compared with the baseline's first variant.
    bad = _run("page_broken", [_values(1, 3, 10), _values(1, 2, 10), *[_values(0, 0, 10)] * 2])
    check = check_baseline(SuiteRun(suite, [bad], 1, None), baseline, metrics)
    assert check.matched == {"page_broken": "page_v1"}
    names = {r.metric for r in check.regressions}
    assert names == {"fallback_rate", "grounding_errors"}
    grounding = next(r for r in check.regressions if r.metric == "grounding_errors")
    assert (grounding.baseline, grounding.current) == (0.0, 1.25)
    assert grounding.to_dict()["variant"] == "page_broken"


def test_baseline_of_another_suite_version_is_refused(tmp_path: Path) -> None:
    suite = _suite({})
    metrics = suite_metrics(suite)
    path = tmp_path / "b.json"
    save_baseline(
        path, make_baseline(SuiteRun(suite, [_run("v", [_values(0, 0, 1)] * 4)], 1, None), metrics)
    )
    changed = suite.model_copy(update={"requests": suite.requests[:3]})
    with pytest.raises(UsageError, match="re-save"):
        load_baseline(path, changed)
    with pytest.raises(UsageError, match="--save-baseline"):
        load_baseline(tmp_path / "missing.json", suite)


def test_suite_files_are_validated(tmp_path: Path) -> None:
    smoke = load_suite("pages-smoke")
    assert smoke.task == "pages" and 6 <= len(smoke.requests) <= 8
    assert {r.locale for r in smoke.requests} == {Locale.EN, Locale.ZH}
    assert set(smoke.gate) <= {m.name for m in suite_metrics(smoke)}
    full = load_suite("pages-full")
    assert full.sample is not None and full.sample.count >= 100

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nrequests: [{shopper: '1'}]\ngate: {nope: {max_drop: 1}}\n")
    with pytest.raises(UsageError, match="unknown metric"):
        load_suite(str(bad))
    bad.write_text("name: bad\nrequests: [{shopper: '1'}]\ngate: {valid_rate: {}}\n")
    with pytest.raises(UsageError, match="give one of"):
        load_suite(str(bad))
    with pytest.raises(UsageError, match=r"known suites: .*pages-smoke"):
        load_suite("no-such-suite")


def test_judge_asks_both_orders_and_scores_only_agreement(tmp_path: Path) -> None:
    # A scripted judge that always answers "A": pure position bias, which the order swap
    # must turn into ties (the real 135M model behaves much like this).
    from fault_injection import ScriptedBackend

    from composer.evaluation import CachedBackend, GenerationCache, PageJudge, judge_runs
    from composer.prompting import PromptLibrary

    page = {
        "title": "Movie night",
        "sections": [{"headline": "Laughs", "products": [{"title": "Big", "reason": "Popular"}]}],
    }
    other = {**page, "title": "Another night"}

    def run_of(name: str, shown: dict) -> VariantRun:
        examples = [
            ExampleRun(id="r0", request={"kind": "home", "locale": "en"}, values={}, shown=shown)
        ]
        return VariantRun(Variant(name, name, "transformers", "m"), "h", examples, CacheStats(), 1)

    always_a = ScriptedBackend("transformers", texts=['{"winner": "A"}'] * 4)
    backend = CachedBackend("transformers", "m", lambda: always_a, GenerationCache(tmp_path / "c"))
    runs = [run_of("page_v1", page), run_of("page_v2", other)]
    judge_runs(PageJudge(backend, PromptLibrary()), runs)
    assert always_a.calls == 2  # both orders
    assert runs[1].examples[0].values == {"judge_score": 0.5, "judge_agree": 0.0}
    assert math.isnan(runs[0].examples[0].values["judge_score"])


def test_a_json_page_the_model_did_not_write_as_json_counts_as_a_failure(
    ml_shop: BuiltShop,
) -> None:
    # The one-JSON-answer path (page_v3): two answers, neither JSON. Skipping them would
    # report 0 unknown handles and 0 grounding errors for a model that wrote nothing usable.
    garbage = ScriptedBackend("transformers", texts=["Top picks: P1", "not a page"])
    result = composer_for(ml_shop, garbage).compose(PageRequest(shopper_id="42"))
    assert result.trace.fallback and not result.trace.words
    calls = [CallRecord(text, 3, 0.1, 0.1, False) for text in ("Top picks: P1", "not a page")]
    values = page_metrics(result, calls, frozenset(), Locale.EN, CopyRules(), [], 1.0)
    assert values["unknown_handles"] == 2.0 and values["grounding_errors"] == 2.0
