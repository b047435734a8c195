"""`Fallback`: the one owner of "serve the rules answer instead", on plain callables (the
page and copy paths through it are tested over HTTP in test_api.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from composer.backends import BackendRegistry
from composer.errors import UsageError
from composer.fallback import Fallback
from composer.settings import BackendName, Settings


class BuiltVLLM:
    """Stands for a vLLM backend that was built: the registry would otherwise reach for a
    server, and what is under test is what happens around the call, not the call."""

    name = BackendName.VLLM


def _fallback() -> Fallback:
    registry = BackendRegistry(Settings(llm_backend="vllm"))
    registry.register(BuiltVLLM())  # type: ignore[arg-type]
    return Fallback(registry)


def test_a_forced_reason_serves_rules_without_asking() -> None:
    asked: list[str] = []
    got = _fallback().call(
        BackendName.VLLM,
        lambda: asked.append("llm") or "llm",
        lambda why: f"rules: {why}",
        "queue full",
    )
    assert got == "rules: queue full" and asked == []


def test_a_backend_that_cannot_be_built_is_named_in_the_reason(tmp_path: Path) -> None:
    fallback = Fallback(
        BackendRegistry(
            Settings(llm_backend="transformers", llm_model=str(tmp_path / "no-such-model"))
        )
    )
    got = fallback.call(BackendName.TRANSFORMERS, lambda: "llm", lambda why: why)
    assert got.startswith("backend transformers unavailable:")


def _failing(pieces: list[str]) -> Iterator[str]:
    yield from pieces
    raise RuntimeError("connection reset")


def _rules(reason: str) -> Iterator[str]:
    yield "candidates"
    yield f"rules page ({reason})"


def test_a_stream_that_fails_before_a_final_piece_is_replaced_without_repeats() -> None:
    fallback = _fallback()
    got = list(
        fallback.stream(
            BackendName.VLLM,
            lambda: _failing(["candidates"]),
            _rules,
            final=lambda p: p.startswith("section"),
            once=lambda p: p == "candidates",
        )
    )
    assert got == [
        "candidates",
        "rules page (backend vllm failed: RuntimeError: connection reset)",
    ]


def test_a_stream_that_fails_after_a_final_piece_raises() -> None:
    fallback = _fallback()
    pieces = fallback.stream(
        BackendName.VLLM,
        lambda: _failing(["candidates", "section 0"]),
        _rules,
        final=lambda p: p.startswith("section"),
        once=lambda p: p == "candidates",
    )
    assert next(pieces) == "candidates" and next(pieces) == "section 0"
    with pytest.raises(RuntimeError, match="connection reset"):
        next(pieces)


def test_the_callers_own_errors_stay_errors() -> None:
    def bad_request() -> str:
        raise UsageError("unknown prompt 'nope'", field="prompt")

    with pytest.raises(UsageError) as err:
        _fallback().call(BackendName.RULES, bad_request, lambda why: why)
    assert err.value.field == "prompt"
