"""The self-contained HTML report: summary table, charts (inline SVG drawn by the template
from numbers computed here), and a per-example drill-down with two variants side by side."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from composer.evaluation.bootstrap import Estimate
from composer.evaluation.compare import BaselineCheck, Delta
from composer.evaluation.metrics import Metric
from composer.evaluation.runner import SuiteRun
from composer.resources import resource_dir

CHART_WIDTH = 360  # px of the value axis
DEFAULT_EXAMPLES = 120  # drill-down entries; each holds two full pages


def fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{value:g}"


def _bars(metric: Metric, estimates: dict[str, Estimate]) -> dict[str, Any]:
    finite = [v for e in estimates.values() for v in e if math.isfinite(v)]
    lo = min([0.0, *finite])
    hi = max([*finite, lo + 1e-9])
    if metric.stat == "mean" and lo >= 0 and hi <= 1:
        hi = 1.0  # rates share one scale

    def x(v: float) -> float:
        return round((v - lo) / (hi - lo) * CHART_WIDTH, 1) if math.isfinite(v) else 0.0

    return {
        "name": metric.name,
        "meaning": metric.meaning,
        "better": "higher" if metric.higher_is_better else "lower",
        "axis_max": fmt(hi),
        "bars": [
            {
                "label": name,
                "text": fmt(e.value),
                "x0": x(max(lo, 0.0)),
                "x": x(e.value),
                "low": x(e.low),
                "high": x(e.high),
            }
            for name, e in estimates.items()
        ],
    }


def _strip(result: SuiteRun, field: str) -> dict[str, Any]:
    """Per-example values of one field, one row of dots per variant (latency by default)."""
    values = [e.values.get(field, math.nan) for r in result.runs for e in r.examples]
    finite = [v for v in values if isinstance(v, float | int) and math.isfinite(v)]
    hi = max(finite, default=1.0) or 1.0
    return {
        "field": field,
        "axis_max": fmt(float(hi)),
        "rows": [
            {
                "label": r.variant.name,
                "dots": [
                    {
                        "x": round(float(e.values[field]) / hi * CHART_WIDTH, 1),
                        "id": e.id,
                        "text": fmt(float(e.values[field])),
                    }
                    for e in r.examples
                    if math.isfinite(float(e.values.get(field, math.nan)))
                ],
            }
            for r in result.runs
        ],
    }


def _delta_row(d: Delta) -> dict[str, Any]:
    return {
        "variant": d.variant,
        "reference": d.reference,
        "metric": d.metric.name,
        "reference_value": fmt(d.reference_value),
        "value": fmt(d.value),
        "delta": fmt(d.delta.value),
        "ci": f"[{fmt(d.delta.low)}, {fmt(d.delta.high)}]",
        "direction": d.direction,
    }


def build_context(
    result: SuiteRun,
    metrics: Sequence[Metric],
    aggregates: dict[str, dict[str, Estimate]],
    deltas: Sequence[Delta],
    check: BaselineCheck | None,
    baseline_file: str | None,
    max_examples: int = DEFAULT_EXAMPLES,
) -> dict[str, Any]:
    runs = result.runs
    names = [r.variant.name for r in runs]
    summary = [
        {
            "metric": m.name,
            "meaning": m.meaning,
            "better": "↑" if m.higher_is_better else "↓",
            "cells": [
                {
                    "value": fmt(aggregates[n][m.name].value),
                    "ci": f"[{fmt(aggregates[n][m.name].low)}, {fmt(aggregates[n][m.name].high)}]",
                }
                for n in names
            ],
        }
        for m in metrics
    ]
    charts = [_bars(m, {n: aggregates[n][m.name] for n in names}) for m in metrics]
    pair = runs[:2]
    by_id = [{e.id: e for e in r.examples} for r in pair]
    examples = []
    for example in runs[0].examples[:max_examples]:
        sides = []
        for variant_run, lookup in zip(pair, by_id, strict=True):
            e = lookup[example.id]
            sides.append(
                {
                    "variant": variant_run.variant.name,
                    "html": e.html,
                    "shown": e.shown,
                    "generated": e.generated,
                    "trace": json.dumps(e.trace, indent=1, ensure_ascii=False, default=str),
                    # Per page: the example's own values (a corpus statistic has none).
                    "values": {
                        m.field: fmt(_scalar(e.values.get(m.field)))
                        for m in metrics
                        if m.stat != "distinct_2"
                    },
                }
            )
        examples.append(
            {
                "id": example.id,
                "request": ", ".join(
                    f"{k}={v}" for k, v in example.request.items() if v not in (None, [], "")
                ),
                "sides": sides,
            }
        )
    return {
        "suite": result.suite.name,
        "description": result.suite.description,
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime()),
        "example_count": len(runs[0].examples) if runs else 0,
        "shown_examples": len(examples),
        "variants": [
            {
                "name": r.variant.name,
                "prompt": r.variant.prompt or "–",
                "prompt_hash": r.prompt_hash or "–",
                "backend": r.variant.backend,
                "model": r.variant.model,
                "seconds": f"{r.seconds:.1f}",
                "hits": r.cache.hits,
                "misses": r.cache.misses,
            }
            for r in runs
        ],
        "names": names,
        "summary": summary,
        "charts": charts,
        "chart_width": CHART_WIDTH,
        "latency": _strip(result, "latency_s"),
        "deltas": [_delta_row(d) for d in deltas],
        "baseline_file": baseline_file,
        "baseline_deltas": [_delta_row(d) for d in check.deltas] if check else [],
        "regressions": [str(r) for r in check.regressions] if check else [],
        "examples": examples,
    }


def render_report(context: dict[str, Any], folder: Path | None = None) -> str:
    env = Environment(
        loader=FileSystemLoader(str(folder or resource_dir("templates") / "report")),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html").render(**context)


def _scalar(v: Any) -> float | None:
    return None if v is None else float(v)
