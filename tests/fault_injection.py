"""Fault injectors: scripted stand-ins for a model that raise, stall or return given text.

They test the composer's and the API's fallbacks; quality tests use the real model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from composer.llm.base import Generation, GenerationRequest, LLMError


class ScriptedBackend:
    """A fault injector standing in for a model: raises, stalls, or returns given text."""

    model = "scripted"
    supports_schema = True
    can_stream = True
    reads_prompt = True

    def __init__(
        self,
        name: str,
        texts: list[str] | None = None,
        error: str | None = None,
        stall_s: float = 0.0,
        crash: bool = False,
    ) -> None:
        self.name = name
        self.texts = list(texts or [])
        self.error = error
        self.stall_s = stall_s
        self.crash = crash
        self.calls = 0

    def generate(self, request: GenerationRequest) -> list[Generation]:
        text = "".join(self.stream(request))
        return [Generation(text, tokens=1) for _ in range(request.n)]

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        self.calls += 1
        if self.crash:  # not an LLMError: a backend bug the composer does not expect
            raise RuntimeError("segfault in the tokenizer")
        if self.error:
            raise LLMError(self.error)
        text = self.texts[min(self.calls, len(self.texts)) - 1] if self.texts else ""
        for ch in text:
            if self.stall_s:
                time.sleep(self.stall_s)
            yield ch
        return Generation(text, tokens=len(text) // 4)


# A well-formed two-section page over handles every request has (P1-P5, T1-T2).
TWO_SECTIONS = json.dumps(
    {
        "title": "Movie night",
        "sections": [
            {
                "kind": "hero",
                "theme": "T1",
                "headline": "Stories chosen for tonight",
                "items": ["P1", "P2", "P3"],
            },
            {
                "kind": "grid",
                "theme": "T2",
                "headline": "Comedies to share with friends",
                "items": ["P4", "P5"],
            },
        ],
    },
    separators=(",", ":"),
)
