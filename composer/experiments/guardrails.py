"""Guardrails: a variant whose pages fall back too often, come too slowly or show grounding
errors is paused (its shoppers get the control's page) until someone resumes it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from composer.ahead import PENDING_REASON
from composer.experiments.spec import HOLDOUT, Experiment
from composer.experiments.stats import percentile
from retrieval.exposures import Exposure


@dataclass(frozen=True)
class Health:
    """A variant's pages as the guardrails see them."""

    variant: str
    pages: int
    composed: int  # not from the page cache: the pages a fallback could happen on
    fallback_rate: float
    p95_latency_ms: float
    grounding_errors_per_page: float


@dataclass(frozen=True)
class Breach:
    variant: str
    guardrail: str
    value: float
    limit: float

    def reason(self) -> str:
        return f"{self.guardrail} {self.value:.3g} is past its limit {self.limit:.3g}"


def health(experiment: Experiment, exposures: Iterable[Exposure]) -> dict[str, Health]:
    by_variant: dict[str, list[Exposure]] = defaultdict(list)
    for e in exposures:
        if e.experiment == experiment.name and e.variant is not None:
            by_variant[e.variant].append(e)
    out = {}
    for name, pages in sorted(by_variant.items()):
        # A rules page served while the arm's LLM page is composed ahead is no model failure.
        composed = [e for e in pages if not e.cached and e.fallback_reason != PENDING_REASON]
        out[name] = Health(
            variant=name,
            pages=len(pages),
            composed=len(composed),
            fallback_rate=(
                sum(e.fallback for e in composed) / len(composed) if composed else float("nan")
            ),
            p95_latency_ms=percentile([e.latency_ms for e in pages], 95),
            grounding_errors_per_page=sum(e.grounding_errors for e in pages) / len(pages),
        )
    return out


def breaches(experiment: Experiment, found: dict[str, Health]) -> list[Breach]:
    """The guardrails each variant is past, once it has served enough pages to judge. The
    holdout's rules page and the control are what a paused arm falls back to: never judged
    (a control past a limit is the service's own problem, for its alerts, not this one)."""
    limits = experiment.guardrails
    out = []
    for name, h in found.items():
        if name in (HOLDOUT, experiment.control.name) or h.pages < limits.min_pages:
            continue
        checks = (
            ("fallback_rate", h.fallback_rate, limits.fallback_rate),
            ("p95_latency_ms", h.p95_latency_ms, limits.p95_latency_ms),
            ("grounding_errors_per_page", h.grounding_errors_per_page,
             limits.grounding_errors_per_page),
        )  # fmt: skip
        out += [Breach(name, g, v, lim) for g, v, lim in checks if v == v and v > lim]
    return out
