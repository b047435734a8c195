"""An experiment as a file (``experiments/NAME.yaml``): its variants and their traffic split, a
holdout that gets the rules page, the metric it is decided on, guardrails, and when it runs.

A bad file is refused with its line and field; the caller keeps what it had."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from composer.errors import UsageError
from composer.layout import PageKind
from composer.settings import BackendName

HOLDOUT = "holdout"


class Metric(StrEnum):
    CLICK_THROUGH = "click_through"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"
    REVENUE_PER_PAGE = "revenue_per_page"


class Variant(BaseModel):
    """One arm: what its pages are composed with (unset: the service's settings)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    weight: float = Field(default=1.0, gt=0, description="share of the non-holdout traffic")
    prompt: str | None = None
    backend: BackendName | None = None
    model: str | None = None
    max_sections: int | None = Field(default=None, ge=1, le=6)
    # "shuffled": the page's products drawn in random order from retrieval's whole pool, a
    # page without personal ranking (a control with a known disadvantage).
    order: Literal["ranked", "shuffled"] = "ranked"


class Guardrails(BaseModel):
    """Limits past which a variant is paused (its shoppers get the control's page)."""

    model_config = ConfigDict(extra="forbid")

    fallback_rate: float = Field(default=0.2, ge=0, le=1)
    p95_latency_ms: float = Field(default=10_000, gt=0)
    grounding_errors_per_page: float = Field(default=0.05, ge=0)
    min_pages: int = Field(default=100, ge=1, description="pages a variant serves before judged")


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    salt: str = Field(default="", description="assignment salt (default: the name)")
    variants: list[Variant] = Field(min_length=2)
    holdout: float = Field(default=0.0, ge=0, le=0.5, description="share served the rules page")
    primary_metric: Metric = Metric.CLICK_THROUGH
    kinds: list[PageKind] = Field(default_factory=lambda: list(PageKind), min_length=1)
    # The sequential test: its error rate, and the relative effect its mixture is scaled to.
    alpha: float = Field(default=0.05, gt=0, le=0.2)
    minimum_effect: float = Field(default=0.1, gt=0, le=10)
    guardrails: Guardrails = Field(default_factory=Guardrails)
    start: datetime | None = None
    stop: datetime | None = None
    # Pseudonyms pinned to a variant for QA: they see it, and their pages are not analysed.
    overrides: dict[str, str] = Field(default_factory=dict)

    @field_validator("start", "stop")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        return _aware(moment)

    @field_validator("variants")
    @classmethod
    def _distinct_names(cls, variants: list[Variant]) -> list[Variant]:
        names = [v.name for v in variants]
        if len(set(names)) != len(names) or HOLDOUT in names:
            raise ValueError(f"variant names must be distinct and not {HOLDOUT!r}: {names}")
        return variants

    @field_validator("stop")
    @classmethod
    def _stop_after_start(cls, stop: datetime | None, info: Any) -> datetime | None:
        start = info.data.get("start")
        if stop is not None and start is not None and stop <= start:
            raise ValueError("stop must be after start")
        return stop

    @field_validator("overrides")
    @classmethod
    def _known_variants(cls, overrides: dict[str, str], info: Any) -> dict[str, str]:
        known = {v.name for v in info.data.get("variants", [])} | {HOLDOUT}
        unknown = sorted(set(overrides.values()) - known)
        if unknown:
            raise ValueError(f"overrides name variants that do not exist: {unknown}")
        return overrides

    @property
    def assignment_salt(self) -> str:
        return self.salt or self.name

    @property
    def control(self) -> Variant:
        """The first variant: the others are compared with it."""
        return self.variants[0]

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def live(self, now: datetime) -> bool:
        """``now`` with a zone (``datetime.now(UTC)``)."""
        return (self.start is None or self.start <= now) and (self.stop is None or now < self.stop)

    def overlaps(self, other: Experiment) -> bool:
        """Both could serve the same page: a page kind in common and a time in common."""
        if not set(self.kinds) & set(other.kinds):
            return False
        far_past, far_future = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
        start = max(_aware(self.start) or far_past, _aware(other.start) or far_past)
        stop = min(_aware(self.stop) or far_future, _aware(other.stop) or far_future)
        return start < stop


def _aware(moment: datetime | None) -> datetime | None:
    """Times without a zone are UTC (YAML's timestamps without one are)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the value at ``loc`` in a composed YAML document (or of the
    nearest enclosing value that exists)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def load_experiment(path: Path) -> Experiment:
    """The experiment in ``path``; a bad file raises UsageError naming the line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{where}: not valid YAML") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: an experiment is a mapping of fields")
    data.setdefault("name", path.stem)
    try:
        return Experiment.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(first["loc"])
        field = ".".join(str(p) for p in loc) or "experiment"
        line = _line_of(tree, loc)
        where = f", line {line}" if line is not None else ""
        raise UsageError(f"{path}{where}, field {field!r}: {first['msg']}", field=field) from None
