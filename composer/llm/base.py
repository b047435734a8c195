"""The one seam every LLM backend plugs into."""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
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
    # Word sequences the completion may not write (vLLM's ``bad_words``): once the text ends
    # with all but the last token of one, that last token is not allowed.
    avoid: tuple[str, ...] = ()


@dataclass
class Generation:
    text: str
    tokens: int
    finish_reason: str = "stop"  # "stop" | "length"
    timings_ms: dict[str, float] = field(default_factory=dict)
    cached_tokens: int = 0  # prompt tokens served from a prefix cache
    # Where the backend knows (in-process): tokens the grammar forced without sampling, and
    # the model's forward passes (the prefill included). A server reports neither: 0.
    forced_tokens: int = 0
    forward_passes: int = 0


# ``finish_reason`` of a completion the caller's deadline cut short: not an answer.
DEADLINE = "deadline"


class LLMError(Exception):
    """A backend failed to produce text (down, timed out, refused); the caller falls back."""


@runtime_checkable
class LLMBackend(Protocol):
    @property
    def name(self) -> str:
        """The registry's key: a :class:`~composer.settings.BackendName` for ours."""
        ...

    model: str
    supports_schema: bool
    can_stream: bool
    # False for a backend that answers from ``GenerationRequest.context`` alone (`rules`):
    # the composer then does not render a prompt nobody reads.
    reads_prompt: bool

    def generate(self, request: GenerationRequest) -> list[Generation]:
        """``request.n`` completions, each a full text."""
        ...

    def stream(self, request: GenerationRequest) -> Generator[str, None, Generation | None]:
        """Text deltas of one completion as they are decoded; returns its summary if known."""
        ...


@runtime_checkable
class BatchingBackend(Protocol):
    """A backend that decodes several requests side by side (an optional capability).

    On a CPU a decoding step of eight rows costs about 1.5x one of two (the weights are
    read once per step, not once per row), and a server batches concurrent requests; a
    page's headlines and title, each a few tokens, then cost about one field's time.
    """

    def generate_batch(
        self, requests: Sequence[GenerationRequest], deadline: float | None = None
    ) -> list[list[Generation]]:
        """One list per request, in order. ``deadline`` is a ``time.perf_counter()``
        instant: a completion unfinished by then has finish reason :data:`DEADLINE`, a
        request not answered by then an empty list."""
        ...


def generate_batch(
    backend: LLMBackend, requests: Sequence[GenerationRequest], deadline: float | None = None
) -> list[list[Generation]]:
    """``requests`` through the backend's own batch when it has one, else one after another
    (none started after ``deadline``: those get an empty list)."""
    if isinstance(backend, BatchingBackend):
        return backend.generate_batch(requests, deadline)
    return one_by_one(backend, requests, deadline)


def one_by_one(
    backend: LLMBackend, requests: Sequence[GenerationRequest], deadline: float | None = None
) -> list[list[Generation]]:
    """``requests`` one after another; none is started after ``deadline``."""
    out: list[list[Generation]] = []
    for request in requests:
        late = deadline is not None and time.perf_counter() > deadline
        out.append([] if late else backend.generate(request))
    return out
