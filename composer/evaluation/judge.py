"""Optional pairwise LLM judge: each page of a variant against the reference variant's page
for the same request, asked twice with the order swapped to cancel position bias."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from composer.evaluation.gen_cache import CachedBackend
from composer.evaluation.runner import ExampleRun, VariantRun
from composer.llm.base import GenerationRequest, LLMError
from composer.prompting import PromptLibrary, clean_fact

JUDGE_PROMPT = "judge_v1"
Outcome = Literal["ref", "cand", "tie"]
_SCHEMA = {
    "type": "object",
    "properties": {"winner": {"type": "string", "enum": ["A", "B", "tie"]}},
    "required": ["winner"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Verdict:
    first: Outcome  # reference shown as A
    swapped: Outcome  # candidate shown as A

    @property
    def agree(self) -> bool:
        return self.first == self.swapped

    @property
    def score(self) -> float:
        """1 candidate better, 0 reference better, 0.5 tie or disagreement."""
        if not self.agree or self.first == "tie":
            return 0.5
        return 1.0 if self.first == "cand" else 0.0


def verdict(first_winner: str, swapped_winner: str) -> Verdict:
    """From the raw answers: ``first`` with (A=reference, B=candidate), ``swapped`` with
    (A=candidate, B=reference)."""
    first: dict[str, Outcome] = {"A": "ref", "B": "cand"}
    swapped: dict[str, Outcome] = {"A": "cand", "B": "ref"}
    return Verdict(first.get(first_winner, "tie"), swapped.get(swapped_winner, "tie"))


class PageJudge:
    def __init__(
        self, backend: CachedBackend, prompts: PromptLibrary, prompt: str = JUDGE_PROMPT
    ) -> None:
        self.backend = backend
        self.prompts = prompts
        self.prompt = prompt

    def ask(self, request: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> str:
        variables = {
            "language": "Simplified Chinese" if request.get("locale") == "zh" else "English",
            "page_kind": request.get("kind", "home"),
            "query": clean_fact(request["query"], 80) if request.get("query") else None,
            "pages": [("A", _clean(a)), ("B", _clean(b))],
        }
        messages = self.prompts.render(self.prompt, variables)
        gen = GenerationRequest(messages=messages, json_schema=_SCHEMA, max_tokens=16, seed=0)
        try:
            text = self.backend.generate(gen)[0].text
            winner = json.loads(text).get("winner", "tie")
        except (LLMError, json.JSONDecodeError, AttributeError):
            return "tie"
        return winner if winner in ("A", "B", "tie") else "tie"

    def compare(self, ref: ExampleRun, cand: ExampleRun) -> Verdict:
        assert ref.shown is not None and cand.shown is not None
        return verdict(
            self.ask(ref.request, ref.shown, cand.shown),
            self.ask(ref.request, cand.shown, ref.shown),
        )


def judge_runs(
    judge: PageJudge, runs: list[VariantRun], advance: Callable[[int], None] | None = None
) -> None:
    """Adds ``judge_score`` and ``judge_agree`` to every example of every variant but the
    first (the reference); the reference gets NaN, as it is not compared with itself."""
    reference = runs[0]
    by_id = {e.id: e for e in reference.examples}
    for e in reference.examples:
        e.values["judge_score"] = e.values["judge_agree"] = float("nan")
    for run in runs[1:]:
        for example in run.examples:
            v = judge.compare(by_id[example.id], example)
            example.values["judge_score"] = v.score
            example.values["judge_agree"] = float(v.agree)
            if advance:
                advance(1)


def _clean(page: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": clean_fact(page["title"], 80),
        "sections": [
            {
                "headline": clean_fact(s["headline"], 80),
                "products": [
                    {"title": clean_fact(p["title"]), "reason": clean_fact(p["reason"], 80)}
                    for p in s["products"]
                ],
            }
            for s in page["sections"]
        ],
    }
