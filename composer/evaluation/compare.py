"""Aggregates with bootstrap intervals, variant-vs-reference deltas, stored baselines and
the regression gate."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from composer.errors import UsageError, first_error
from composer.evaluation.bootstrap import (
    Estimate,
    difference,
    estimate,
    resample_indices,
    statistic,
)
from composer.evaluation.metrics import Metric, metrics_for
from composer.evaluation.runner import SuiteRun, VariantRun
from composer.evaluation.suite import Suite, Tolerance

BOOTSTRAP_SEED = 20240601


@dataclass(frozen=True)
class Delta:
    variant: str
    reference: str
    metric: Metric
    reference_value: float
    value: float
    delta: Estimate

    @property
    def significant(self) -> bool:
        return self.delta.excludes_zero

    @property
    def direction(self) -> str:
        """``better``/``worse`` when significant, else ``same``."""
        if not self.significant:
            return "same"
        up = self.delta.value > 0
        return "better" if up == self.metric.higher_is_better else "worse"

    def to_dict(self) -> dict[str, Any]:
        d = self.delta.rounded()
        return {
            "variant": self.variant,
            "reference": self.reference,
            "metric": self.metric.name,
            "reference_value": _num(self.reference_value),
            "value": _num(self.value),
            "delta": _num(d.value),
            "ci": [_num(d.low), _num(d.high)],
            "significant": self.significant,
            "direction": self.direction,
        }


@dataclass(frozen=True)
class Regression:
    variant: str
    baseline_variant: str
    metric: str
    baseline: float
    current: float
    tolerance: str
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "baseline_variant": self.baseline_variant,
            "metric": self.metric,
            "baseline": _num(round(self.baseline, 4)),
            "current": _num(round(self.current, 4)),
            "delta": _num(round(self.current - self.baseline, 4)),
            "tolerance": self.tolerance,
            "significant": self.significant,
        }

    def __str__(self) -> str:
        return (
            f"{self.variant}: {self.metric} {self.baseline:.4g} → {self.current:.4g} "
            f"(allowed: {self.tolerance}; baseline variant {self.baseline_variant})"
        )


def suite_metrics(suite: Suite, judged: bool = False, words: bool = False) -> list[Metric]:
    groups = set(suite.metrics) | ({"judge"} if judged else set()) | ({"words"} if words else set())
    if not judged:
        groups.discard("judge")
    if not words:
        groups.discard("words")
    return metrics_for(suite.task, groups)


def column(examples: Sequence[dict[str, Any]], metric: Metric) -> list[Any]:
    return [e.get(metric.field, math.nan) for e in examples]


def aggregate(
    values: Sequence[dict[str, Any]], metrics: Sequence[Metric], samples: int
) -> dict[str, Estimate]:
    indices = resample_indices(len(values), samples, BOOTSTRAP_SEED)
    return {m.name: estimate(column(values, m), m.stat, indices) for m in metrics}


def compare_to(
    reference: VariantRun, runs: Sequence[VariantRun], metrics: Sequence[Metric], samples: int
) -> list[Delta]:
    """Each run against ``reference``, paired over the same examples."""
    ref_values = [e.values for e in reference.examples]
    indices = resample_indices(len(ref_values), samples, BOOTSTRAP_SEED)
    out = []
    for run in runs:
        if run is reference:
            continue
        cur = _aligned(run, [e.id for e in reference.examples])
        for m in metrics:
            a, b = column(ref_values, m), column(cur, m)
            d = difference(a, b, m.stat, indices)
            out.append(
                Delta(run.variant.name, reference.variant.name, m, _stat(a, m), _stat(b, m), d)
            )
    return out


def _stat(values: Sequence[Any], m: Metric) -> float:
    return statistic(values, m.stat)


def _aligned(run: VariantRun, ids: Sequence[str]) -> list[dict[str, Any]]:
    by_id = {e.id: e.values for e in run.examples}
    return [by_id[i] for i in ids]


# -- baselines -----------------------------------------------------------------------------


class BaselineVariant(BaseModel):
    prompt: str | None
    prompt_hash: str
    backend: str
    model: str
    metrics: dict[str, float | None]
    examples: dict[str, dict[str, Any]]  # id -> per-example values


class Baseline(BaseModel):
    suite: str
    fingerprint: str
    created: float
    variants: dict[str, BaselineVariant]


def make_baseline(result: SuiteRun, metrics: Sequence[Metric]) -> Baseline:
    samples = result.suite.bootstrap_samples
    variants = {}
    for run in result.runs:
        agg = aggregate([e.values for e in run.examples], metrics, samples)
        variants[run.variant.name] = BaselineVariant(
            prompt=run.variant.prompt,
            prompt_hash=run.prompt_hash,
            backend=run.variant.backend,
            model=run.variant.model,
            metrics={k: _num(round(v.value, 4)) for k, v in agg.items()},
            examples={e.id: _storable(e.values) for e in run.examples},
        )
    return Baseline(
        suite=result.suite.name,
        fingerprint=result.suite.fingerprint(),
        created=round(time.time(), 1),
        variants=variants,
    )


def save_baseline(path: Path, baseline: Baseline) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(baseline.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )


def load_baseline(path: Path, suite: Suite) -> Baseline:
    if not path.is_file():
        raise UsageError(f"no baseline file {path}; make one with --save-baseline {path}")
    try:
        baseline = Baseline.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        raise UsageError(f"{path}: not a baseline ({first_error(exc, 'baseline')})") from None
    if baseline.suite != suite.name or baseline.fingerprint != suite.fingerprint():
        raise UsageError(
            f"{path} was saved for another version of suite '{baseline.suite}' (its requests "
            f"changed); re-save it with --save-baseline {path}"
        )
    if not baseline.variants:
        raise UsageError(f"{path} holds no variant")
    return baseline


@dataclass
class BaselineCheck:
    deltas: list[Delta]
    regressions: list[Regression]
    matched: dict[str, str]  # run variant -> baseline variant


def check_baseline(
    result: SuiteRun, baseline: Baseline, metrics: Sequence[Metric]
) -> BaselineCheck:
    """Each variant against the baseline variant of the same name (else the baseline's first),
    over the examples both have; the gate applies the suite's tolerances."""
    suite = result.suite
    first = next(iter(baseline.variants))
    deltas: list[Delta] = []
    regressions: list[Regression] = []
    matched: dict[str, str] = {}
    for run in result.runs:
        base_name = run.variant.name if run.variant.name in baseline.variants else first
        matched[run.variant.name] = base_name
        stored = baseline.variants[base_name].examples
        missing = [e.id for e in run.examples if e.id not in stored]
        if missing:
            raise UsageError(
                f"the baseline has no result for request(s) {', '.join(missing[:3])}; "
                "re-save it with --save-baseline"
            )
        base_values = [_restored(stored[e.id]) for e in run.examples]
        cur_values = [e.values for e in run.examples]
        indices = resample_indices(len(cur_values), suite.bootstrap_samples, BOOTSTRAP_SEED)
        for m in metrics:
            a, b = column(base_values, m), column(cur_values, m)
            d = difference(a, b, m.stat, indices)
            delta = Delta(run.variant.name, f"baseline:{base_name}", m, _stat(a, m), _stat(b, m), d)
            deltas.append(delta)
            tol = suite.gate.get(m.name)
            if tol is None:
                continue
            # A broken absolute bound is a regression whatever the baseline said.
            broken = _out_of_bounds(cur_values, m, tol, indices)
            if broken or _regressed(delta.reference_value, delta.value, m, tol):
                regressions.append(
                    Regression(
                        run.variant.name,
                        base_name,
                        m.name,
                        delta.reference_value,
                        delta.value,
                        broken or _describe(tol),
                        True if broken else delta.significant,
                    )
                )
    return BaselineCheck(deltas, regressions, matched)


def _out_of_bounds(
    values: Sequence[dict[str, Any]], m: Metric, tol: Tolerance, indices: Any
) -> str | None:
    """The absolute bound the variant breaks, described; None when it keeps them all."""
    if tol.at_most is None and tol.at_least is None and tol.min_upper is None:
        return None
    est = estimate(column(values, m), m.stat, indices)
    if math.isnan(est.value):
        return None
    if tol.at_most is not None and est.value > tol.at_most + 1e-9:
        return f"value ≤ {tol.at_most:g}"
    if tol.at_least is not None and est.value < tol.at_least - 1e-9:
        return f"value ≥ {tol.at_least:g}"
    if tol.min_upper is not None and est.high < tol.min_upper - 1e-9:
        return f"95% interval reaching {tol.min_upper:g}"
    return None


def _regressed(base: float, cur: float, m: Metric, tol: Tolerance) -> bool:
    if tol.max_drop is None and tol.max_rise is None and tol.max_rise_ratio is None:
        return False
    if math.isnan(base) or math.isnan(cur):
        return math.isnan(cur) and not math.isnan(base)
    worse = (base - cur) if m.higher_is_better else (cur - base)
    eps = 1e-9
    if tol.max_drop is not None:
        return worse > tol.max_drop + eps
    if tol.max_rise is not None:
        return worse > tol.max_rise + eps
    assert tol.max_rise_ratio is not None
    return worse > tol.max_rise_ratio * abs(base) + eps


def _describe(tol: Tolerance) -> str:
    if tol.max_drop is None and tol.max_rise is None and tol.max_rise_ratio is None:
        return "bounds"
    if tol.max_drop is not None:
        return f"drop ≤ {tol.max_drop:g}"
    if tol.max_rise is not None:
        return f"rise ≤ {tol.max_rise:g}"
    return f"rise ≤ {tol.max_rise_ratio:.0%}"


def _storable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}


def _restored(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (math.nan if v is None else v) for k, v in values.items()}


def _num(v: float) -> float | None:
    return None if isinstance(v, float) and math.isnan(v) else v
