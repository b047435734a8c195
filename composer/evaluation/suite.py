"""Evaluation suites: YAML files in `evals/` naming the requests, the metrics and the gate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from composer.copywriting import CopyKind
from composer.errors import UsageError, first_error
from composer.evaluation.copy_rules import CopyRules
from composer.evaluation.metrics import metric_names
from composer.layout import Locale, PageKind
from composer.resources import resource_dir

MetricGroup = Literal["structure", "grounding", "relevance", "copy", "cost", "judge", "words"]
DEFAULT_GROUPS: tuple[MetricGroup, ...] = ("structure", "grounding", "relevance", "copy", "cost")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageCase(_Strict):
    """One page request of a suite: a shopper of the hold-out's test split."""

    id: str | None = None
    # A shopper of the hold-out's test split, or an anonymous session's recent products.
    shopper: str | None = None
    recent: list[str] = Field(default_factory=list, max_length=50)
    kind: PageKind = PageKind.HOME
    locale: Locale = Locale.EN
    query: str | None = None
    categories: list[str] = Field(default_factory=list)
    max_sections: int = Field(3, ge=1, le=4)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _who(self) -> PageCase:
        if (self.shopper is None) == (not self.recent):
            raise ValueError("give a `shopper` or an anonymous session's `recent` products")
        return self

    def key(self) -> str:
        who = self.shopper or "+".join(self.recent)
        return self.id or f"{self.kind.value}-{self.locale.value}-{who}"


class CopyCase(_Strict):
    id: str | None = None
    products: list[str] = Field(min_length=1, max_length=12)
    kind: CopyKind = CopyKind.HEADLINE
    tone: str = "warm"
    locale: Locale = Locale.EN
    n: int = Field(3, ge=1, le=8)
    max_chars: int | None = Field(None, ge=10, le=400)
    seed: int = Field(0, ge=0)

    def key(self) -> str:
        return self.id or f"{self.kind.value}-{self.locale.value}-{'+'.join(self.products)}"


class PageSample(_Strict):
    """Page requests drawn from the test split: kinds and locales cycle over the shoppers;
    search and category pages name the genre of the shopper's held-out products."""

    count: int = Field(ge=1, le=5000)
    seed: int = 7
    kinds: list[PageKind] = Field(default_factory=lambda: [PageKind.HOME], min_length=1)
    locales: list[Locale] = Field(default_factory=lambda: [Locale.EN], min_length=1)
    query_templates: list[str] = Field(
        default_factory=lambda: ["{genre}", "{genre} films", "something {genre} to watch"],
        min_length=1,
    )


class SplitSpec(_Strict):
    """The temporal hold-out of `composer retrieval-eval`: each shopper's latest events are
    the future the page is judged against; retrieval is rebuilt from the earlier ones."""

    fraction: float = Field(0.2, gt=0, lt=1)
    min_events: int = Field(5, ge=2)
    # Events after this (Unix seconds) are ignored: live traffic must not move a benchmark.
    until: float | None = None


class Tolerance(_Strict):
    """How far a metric may move the wrong way against the baseline before the gate fails:
    ``max_drop``/``max_rise`` absolute, ``max_rise_ratio`` relative (0.5 = 50 % more).
    Bounds that hold whatever the baseline: ``at_most``/``at_least`` on the value, and
    ``min_upper`` on the upper end of its 95 % interval (non-inferiority: a page order
    significantly worse than retrieval's fails, one within noise of it passes)."""

    max_drop: float | None = Field(None, ge=0)
    max_rise: float | None = Field(None, ge=0)
    max_rise_ratio: float | None = Field(None, ge=0)
    at_most: float | None = None
    at_least: float | None = None
    min_upper: float | None = None

    @model_validator(mode="after")
    def _one(self) -> Tolerance:
        given = [v for v in (self.max_drop, self.max_rise, self.max_rise_ratio) if v is not None]
        bounds = [v for v in (self.at_most, self.at_least, self.min_upper) if v is not None]
        if len(given) > 1 or not (given or bounds):
            raise ValueError(
                "give one of max_drop, max_rise, max_rise_ratio and/or bounds at_most, "
                "at_least, min_upper"
            )
        return self


class Suite(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
    description: str = ""
    # A packaged shop of real public data (`composer init --packaged NAME`), set up in
    # ARTIFACTS_DIR/shops/NAME when missing; none: the shop of the settings.
    shop: str | None = None
    # The packaged profile (`evals/shops/NAME.yaml`) pages are written with, instead of the
    # shop's own copy, which its owner may have edited: a baseline must not depend on it.
    # A `shop:` suite uses that shop's profile.
    profile: str | None = None
    task: Literal["pages", "copy"] = "pages"
    split: SplitSpec = Field(default_factory=SplitSpec)
    requests: list[PageCase] = Field(default_factory=list)
    sample: PageSample | None = None
    copy_tasks: list[CopyCase] = Field(default_factory=list)
    metrics: list[MetricGroup] = Field(default_factory=lambda: list(DEFAULT_GROUPS))
    copy_rules: CopyRules = Field(default_factory=CopyRules)
    gate: dict[str, Tolerance] = Field(default_factory=dict)
    bootstrap_samples: int = Field(1000, ge=100, le=20000)

    @model_validator(mode="after")
    def _has_work(self) -> Suite:
        if self.task == "pages" and not (self.requests or self.sample):
            raise ValueError("a pages suite needs `requests` or `sample`")
        if self.task == "copy" and not self.copy_tasks:
            raise ValueError("a copy suite needs `copy_tasks`")
        keys = [c.key() for c in (self.requests if self.task == "pages" else self.copy_tasks)]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"request ids repeat: {', '.join(dupes[:5])}; give each an `id`")
        return self

    def fingerprint(self) -> str:
        """Changes when the requests or the split change (metrics and gate may change freely)."""
        data = {
            "task": self.task,
            "split": self.split.model_dump(mode="json"),
            "requests": [r.model_dump(mode="json") for r in self.requests],
            "sample": self.sample.model_dump(mode="json") if self.sample else None,
            "copy_tasks": [c.model_dump(mode="json") for c in self.copy_tasks],
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def suites_dir() -> Path:
    return resource_dir("evals")


def load_suite(name_or_path: str) -> Suite:
    """A suite by name (``evals/NAME.yaml``) or by path to a YAML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = suites_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in suites_dir().glob("*.yaml"))) or "none"
        raise UsageError(f"no suite '{name_or_path}'; known suites: {known}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc})") from None
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{path}: {first_error(exc, 'suite')}") from None
    unknown = sorted(set(suite.gate) - set(metric_names(suite.task)))
    if unknown:
        raise UsageError(
            f"{path}: gate names unknown metric(s) {', '.join(unknown)}; "
            f"known: {', '.join(metric_names(suite.task))}"
        )
    return suite
