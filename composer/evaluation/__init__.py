"""The prompt evaluation harness: suites, a generation cache, metrics with bootstrap
intervals, variant comparison, the baseline gate and the HTML report."""

from composer.evaluation.bootstrap import Estimate, difference, estimate, resample_indices
from composer.evaluation.compare import (
    Baseline,
    BaselineCheck,
    Delta,
    Regression,
    aggregate,
    check_baseline,
    compare_to,
    load_baseline,
    make_baseline,
    save_baseline,
    suite_metrics,
)
from composer.evaluation.gen_cache import CachedBackend, CallRecord, GenerationCache, recording
from composer.evaluation.holdout import Holdout, build_holdout, sample_cases
from composer.evaluation.identity import FileDigests, model_identity, server_identity
from composer.evaluation.judge import PageJudge, Verdict, judge_runs, verdict
from composer.evaluation.metrics import Metric, metric_names, metrics_for
from composer.evaluation.report import build_context, render_report
from composer.evaluation.runner import (
    EvalRunner,
    ExampleRun,
    SuiteRun,
    Variant,
    VariantRun,
    plan_variants,
)
from composer.evaluation.suite import Suite, load_suite

__all__ = [
    "Baseline",
    "BaselineCheck",
    "CachedBackend",
    "CallRecord",
    "Delta",
    "Estimate",
    "EvalRunner",
    "ExampleRun",
    "FileDigests",
    "GenerationCache",
    "Holdout",
    "Metric",
    "PageJudge",
    "Regression",
    "Suite",
    "SuiteRun",
    "Variant",
    "VariantRun",
    "Verdict",
    "aggregate",
    "build_context",
    "build_holdout",
    "check_baseline",
    "compare_to",
    "difference",
    "estimate",
    "judge_runs",
    "load_baseline",
    "load_suite",
    "make_baseline",
    "metric_names",
    "metrics_for",
    "model_identity",
    "plan_variants",
    "recording",
    "render_report",
    "resample_indices",
    "sample_cases",
    "save_baseline",
    "server_identity",
    "suite_metrics",
    "verdict",
]
