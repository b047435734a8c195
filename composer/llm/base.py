"""The one seam every LLM backend plugs into."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt; ``json_schema`` or ``regex`` constrains decoding.

    Either chat ``messages`` (the model's chat template applies) or a plain ``prompt`` that
    the model continues as it is: a short few-shot completion ("Theme: TVs | Headline:")
    suits a small model better than a chat turn that asks for a whole page.
    """

    messages: tuple[ChatMessage, ...]
    json_schema: dict[str, Any] | None = None
    prompt: str | None = None
    # A regular expression the whole completion must match (length and characters).
    regex: str | None = None
    # Generation ends at the first of these (left out of the text).
    stop: tuple[str, ...] = ()
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    n: int = 1
    # Structured inputs behind the prompt (handles, themes, locale, task). Model backends
    # read the messages; the deterministic `rules` backend reads this instead.
    context: dict[str, Any] | None = None
    # End-of-turn is suppressed until this many tokens exist (vLLM's ``min_tokens``); lets a
    # benchmark make runs produce equal lengths.
    min_tokens: int = 0
    # The in-process backend's weights: "int8" decodes about twice as fast on a CPU and
    # suits short checked completions (page words); "full" for the rest (copy, layouts).
    # A server (vLLM) decodes with the weights it was started with.
    weights: Literal["full", "int8"] = "full"


@dataclass
class Generation:
    text: str
    tokens: int
    finish_reason: str = "stop"  # "stop" | "length"
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached_tokens: int = 0  # prompt tokens served from a prefix cache


class LLMError(Exception):
    """A backend failed to produce text (down, timed out, refused); the caller falls back."""


@runtime_checkable
class LLMBackend(Protocol):
    name: str
    model: str
    supports_schema: bool
    can_stream: bool
    # False for a backend that answers from ``GenerationRequest.context`` alone (`rules`):
    # the composer then does not render a prompt nobody reads.
    reads_prompt: bool

    def generate(self, request: GenerationRequest) -> list[Generation]:
        """``request.n`` completions, each a full text."""
        ...

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Text deltas of one completion as they are decoded."""
        ...
