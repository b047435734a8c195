"""The generation cache behind the backend protocol: hits skip the backend, keys change
with what changes the output, failed or cut-off generations are not kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fault_injection import TWO_SECTIONS, ScriptedBackend

from composer.evaluation import (
    CachedBackend,
    GenerationCache,
    model_identity,
    recording,
    server_identity,
)
from composer.evaluation.vector_cache import CachedEncoder
from composer.llm.base import ChatMessage, GenerationRequest, LLMBackend, LLMError
from composer.llm.rules_backend import RulesBackend
from composer.settings import Settings
from retrieval import Encoder


def _request(text: str = "hello", seed: int | None = 0) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage("user", text),), seed=seed)


class Counting:
    """The real rules backend, counting how often it is asked."""

    def __init__(self) -> None:
        self.real = RulesBackend()
        self.calls = 0

    def make(self) -> LLMBackend:
        self.calls += 1
        return self.real


def _cached(cache: GenerationCache | None, inner, namespace: str = "h1") -> CachedBackend:  # type: ignore[no-untyped-def]
    return CachedBackend("transformers", "model#abc", lambda: inner, cache, namespace)


def test_second_identical_request_is_answered_from_the_file(tmp_path: Path) -> None:
    scripted = ScriptedBackend("transformers", texts=[TWO_SECTIONS])
    cache = GenerationCache(tmp_path / "gen.sqlite")
    first = _cached(cache, scripted)
    assert isinstance(first, LLMBackend)
    with recording() as calls:
        assert "".join(first.stream(_request())) == TWO_SECTIONS
    assert scripted.calls == 1 and first.stats.misses == 1
    assert [c.hit for c in calls] == [False]
    made = calls[0].seconds
    cache.close()

    # A new process: same file, a backend that would fail if it were asked.
    reopened = GenerationCache(tmp_path / "gen.sqlite")
    replay = _cached(reopened, ScriptedBackend("transformers", error="must not be called"))
    with recording() as calls:
        stream = replay.stream(_request())
        text = "".join(stream)
    assert text == TWO_SECTIONS
    assert replay.stats.hits == 1 and replay.stats.misses == 0
    assert calls[0].hit and calls[0].tokens == len(TWO_SECTIONS) // 4
    assert calls[0].seconds == pytest.approx(made)  # the time it took when it was made
    assert len(reopened) == 1


def test_key_covers_the_rendered_prompt_seed_and_model(tmp_path: Path) -> None:
    cache = GenerationCache(tmp_path / "gen.sqlite")
    inner = ScriptedBackend("transformers", texts=['{"text":"x"}'])
    base = _cached(cache, inner)
    base.generate(_request())
    base.generate(_request())  # hit
    assert inner.calls == 1
    base.generate(_request("other input"))  # another input, or the prompt file changed it
    base.generate(_request(seed=1))
    CachedBackend("transformers", "model#def", lambda: inner, cache, "h1").generate(_request())
    assert inner.calls == 4
    # A prompt file edited where this request's messages do not change: still cached.
    _cached(cache, inner, namespace="h2").generate(_request())
    assert inner.calls == 4
    assert len(cache) == 4


def test_failures_and_cut_off_streams_are_not_cached(tmp_path: Path) -> None:
    cache = GenerationCache(tmp_path / "gen.sqlite")
    failing = _cached(cache, ScriptedBackend("transformers", error="server down"))
    with pytest.raises(LLMError):
        list(failing.stream(_request()))
    slow = ScriptedBackend("transformers", texts=[TWO_SECTIONS])
    cut = _cached(cache, slow)
    stream = cut.stream(_request())
    next(stream)
    stream.close()  # the composer's deadline
    assert len(cache) == 0


def test_inner_backend_is_built_only_on_a_miss(tmp_path: Path) -> None:
    counting = Counting()
    cache = GenerationCache(tmp_path / "gen.sqlite")
    request = GenerationRequest(
        messages=(ChatMessage("user", "x"),),
        context={
            "task": "page",
            "locale": "en",
            "page_kind": "home",
            "max_sections": 2,
            "query": None,
            "themes": [{"handle": "T1", "category": None, "handles": ["P1", "P2", "P3"]}],
            "candidates": [{"handle": f"P{i}"} for i in (1, 2, 3)],
        },
    )
    wrapper = CachedBackend("rules-model", "rules", counting.make, cache, "h")
    first = wrapper.generate(request)[0].text
    again = CachedBackend("rules-model", "rules", counting.make, cache, "h")
    assert again.generate(request)[0].text == first
    assert counting.calls == 1


def test_without_a_cache_every_call_is_made_and_recorded() -> None:
    inner = ScriptedBackend("transformers", texts=['{"a":1}'])
    passthrough = _cached(None, inner)
    with recording() as calls:
        passthrough.generate(_request())
        passthrough.generate(_request())
    assert inner.calls == 2 and [c.hit for c in calls] == [False, False]


def test_query_vectors_are_replayed_without_the_embedding_model(
    tmp_path: Path, encoder: Encoder
) -> None:
    cache = GenerationCache(tmp_path / "gen.sqlite")
    first = CachedEncoder(encoder.model_name, cache, lambda: encoder)
    vector = first.encode_one("horror films")
    assert np.allclose(vector, encoder.encode_one("horror films"))

    def no_model() -> Encoder:
        raise AssertionError("the cached run must not load the embedding model")

    replay = CachedEncoder(encoder.model_name, cache, no_model)
    assert np.array_equal(replay.encode_one("horror films"), vector)


def test_a_changed_weight_or_tokenizer_file_changes_the_model_identity(tmp_path: Path) -> None:
    # Contents, not names and sizes: a fine-tuned checkpoint has the same shapes.
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "tokenizer.json").write_text('{"vocab": 1}')
    (model / "model.safetensors").write_bytes(b"\x00" * 4096)
    settings = Settings(cache_dir=tmp_path / "cache")
    first = model_identity(settings, "transformers", str(model))
    assert model_identity(settings, "transformers", str(model)) == first
    assert (tmp_path / "cache" / "eval" / "file_digests.json").is_file()  # hashed once

    (model / "model.safetensors").write_bytes(b"\x01" + b"\x00" * 4095)  # same size
    tuned = model_identity(settings, "transformers", str(model))
    assert tuned != first and tuned.startswith("model#")
    (model / "tokenizer.json").write_text('{"vocab": 2}')
    assert model_identity(settings, "transformers", str(model)) not in (first, tuned)


def test_a_vllm_identity_names_what_the_server_serves(tmp_path: Path) -> None:
    # No server on this port: the identity says so instead of failing (the generations
    # will fail on their own, with the backend's error).
    settings = Settings(cache_dir=tmp_path, vllm_url="http://127.0.0.1:9/v1")
    assert server_identity(settings.vllm_url, timeout_s=0.5) == "server:unreachable"
    assert model_identity(settings, "vllm", "m").startswith("m#")
