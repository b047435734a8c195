"""What happened while a page was made: shown with every page, logged, measured."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Attempt:
    """One generation: its outcome and what the checks said."""

    tokens: int = 0
    seconds: float = 0.0
    finish_reason: str = ""
    issues: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PageTrace:
    backend: str
    model: str
    prompt: str
    prompt_hash: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    tokens: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    fallback: bool = False
    fallback_reason: str | None = None
    shopper: str = ""
    # The trained models' version retrieval used (retrieval.versions).
    model_version: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    # Retrieval sources that failed for this page (name -> error); the page came from the rest.
    sources_missing: dict[str, str] = field(default_factory=dict)
    # Per generated field (words mode): candidates, what the checks said, what was shown.
    words: list[dict[str, Any]] = field(default_factory=list)
    # The fixed texts of the prompt (examples) the shown words must not repeat.
    prompt_examples: list[str] = field(default_factory=list)
    # Compose-ahead (composer.ahead): "kept" (a page composed ahead), "refreshing" (kept,
    # served, composed again), "composing" (none valid: the rules page now); None: on request.
    ahead: str | None = None
    # How old the served page is (composed ahead); None for a page composed for this request.
    page_age_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """What ``dataclasses.asdict`` gives, with one level of copying instead of a deep
        copy of every candidate (which cost 7% of a rules page's time under load)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["timings_ms"] = dict(self.timings_ms)
        out["attempts"] = [{**vars(a), "issues": list(a.issues)} for a in self.attempts]
        out["repairs"] = list(self.repairs)
        out["candidates"] = [dict(c) for c in self.candidates]
        out["sources_missing"] = dict(self.sources_missing)
        out["words"] = [dict(w) for w in self.words]
        out["prompt_examples"] = list(self.prompt_examples)
        return out
