"""The in-process transformers backend on the real packaged model (no mocks)."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from composer.bench.speed import measure_decoding_speed
from composer.llm import (
    ChatMessage,
    GenerationRequest,
    LLMBackend,
    ModelFetchError,
    TransformersBackend,
    ensure_default_model,
    resolve_model,
)

pytestmark = pytest.mark.slow

ENUM = ["shoes", "bags", "hats"]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ENUM},
        "headline": {"type": "string", "maxLength": 30},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 2},
    },
    "required": ["category", "headline", "tags"],
    "additionalProperties": False,
}


def _ask(text: str, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage("user", text),), **kwargs)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    configured = os.environ.get("COMPOSER_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[1] / "artifacts" / "cache"


@pytest.fixture(scope="session")
def model_dir(cache_dir: Path) -> Path:
    return ensure_default_model(cache_dir)


@pytest.fixture(scope="session")
def backend(model_dir: Path) -> TransformersBackend:
    return TransformersBackend(model_dir)


def test_default_model_is_converted_once(cache_dir: Path, model_dir: Path) -> None:
    started = time.perf_counter()
    assert ensure_default_model(cache_dir) == model_dir
    assert time.perf_counter() - started < 1.0
    assert (model_dir / "model.safetensors").is_file()
    config = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config  # a plain dense model vLLM can load too


def test_resolve_model(cache_dir: Path, model_dir: Path) -> None:
    assert resolve_model("smollm2-135m-instruct", cache_dir) == model_dir
    assert resolve_model(str(model_dir), cache_dir) == model_dir
    assert resolve_model("org/some-model", cache_dir) == "org/some-model"
    with pytest.raises(ModelFetchError, match="does not exist"):
        resolve_model("/no/such/model/folder", cache_dir)


def test_backend_satisfies_protocol(backend: TransformersBackend) -> None:
    assert isinstance(backend, LLMBackend)
    assert backend.model == "smollm2-135m-instruct"


def test_plain_chat_stops_at_end_of_turn(backend: TransformersBackend) -> None:
    [gen] = backend.generate(_ask("What is the capital of France?", max_tokens=40))
    assert gen.finish_reason == "stop"
    assert "Paris" in gen.text
    assert "<|im_end|>" not in gen.text
    assert gen.timings_ms["prefill"] > 0 and gen.timings_ms["decode"] > 0


def test_constrained_output_validates(backend: TransformersBackend) -> None:
    request = _ask(
        "Summer sale on sandals. Reply as JSON with category, headline and tags.",
        json_schema=SCHEMA,
        max_tokens=60,
    )
    [gen] = backend.generate(request)
    assert gen.finish_reason == "stop", gen.text
    layout = json.loads(gen.text)
    jsonschema.validate(layout, SCHEMA)
    assert list(layout) == list(SCHEMA["properties"])  # schema order, not sorted


def test_forced_json_is_not_decoded_token_by_token(
    backend: TransformersBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys, punctuation and the rest of a started enum value come from the grammar: the
    model runs fewer single steps than it emits tokens, and the output is still valid."""
    steps: list[int] = []
    forward = backend._forward

    def counting(input_ids, past):  # type: ignore[no-untyped-def]
        steps.append(int(input_ids.shape[1]))
        return forward(input_ids, past)

    monkeypatch.setattr(backend, "_forward", counting)
    request = _ask("Hats for winter. Reply as JSON.", json_schema=SCHEMA, max_tokens=60)
    [gen] = backend.generate(request)
    jsonschema.validate(json.loads(gen.text), SCHEMA)
    decode_steps = steps[1:]  # the first call is the prefill
    assert any(n > 1 for n in decode_steps)  # forced tokens ride along with a sampled one
    assert len(steps) < gen.tokens
    # The generation counts what happened: every pass, and the tokens nobody sampled.
    assert gen.forward_passes == len(steps) and 0 < gen.forced_tokens < gen.tokens
    # The opening `{"category":"` is forced before any choice: prefilled with the prompt.
    assert backend._encode(request).shape[1] < steps[0] + (gen.cached_tokens or 0)


def test_enum_holds_against_the_prompt(backend: TransformersBackend) -> None:
    request = _ask(
        'Reply as JSON. The category must be "electronics".', json_schema=SCHEMA, max_tokens=60
    )
    [gen] = backend.generate(request)
    assert json.loads(gen.text)["category"] in ENUM


def test_stream_matches_generate(backend: TransformersBackend) -> None:
    request = _ask("Name two colours.", json_schema=SCHEMA, max_tokens=40)
    deltas = list(backend.stream(request))
    assert len(deltas) > 1
    assert "".join(deltas) == backend.generate(request)[0].text


def test_seeded_sampling_is_reproducible(backend: TransformersBackend) -> None:
    request = _ask("Say something about hats.", temperature=0.9, seed=7, n=3, max_tokens=12)
    first = backend.generate(request)
    assert len(first) == 3
    assert len({g.text for g in first}) > 1  # n samples, not one repeated
    assert [g.text for g in backend.generate(request)] == [g.text for g in first]


def test_min_tokens_forces_length(backend: TransformersBackend) -> None:
    [gen] = backend.generate(_ask("Say hi.", max_tokens=6, min_tokens=6))
    assert (gen.tokens, gen.finish_reason) == (6, "length")


def test_concurrent_callers_queue(backend: TransformersBackend) -> None:
    request = _ask("Count to five.", max_tokens=8)
    expected = backend.generate(request)[0].text
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(backend.generate(request)[0].text))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected, expected]


def test_prefix_cache_reuses_the_shared_start_and_changes_nothing(
    backend: TransformersBackend,
) -> None:
    system = ChatMessage("system", "You are a helpful assistant for a film shop. " * 12)
    first = GenerationRequest(
        messages=(system, ChatMessage("user", "Name a comedy.")), max_tokens=12
    )
    second = GenerationRequest(
        messages=(system, ChatMessage("user", "Name a western.")), max_tokens=12
    )
    backend.generate(first)
    warm = backend.generate(second)[0]
    backend._prefixes.clear()  # cold: no cache to reuse
    cold = backend.generate(second)[0]
    assert warm.cached_tokens > 100 and cold.cached_tokens == 0
    assert warm.text == cold.text  # reuse is exact, not approximate


def test_int8_weights_are_a_separate_copy_with_their_own_prefix_cache(
    backend: TransformersBackend,
) -> None:
    # Page words decode with int8 weights, copy with the full ones, in one process: neither
    # may see the other's KV cache, and the full weights must stay untouched.
    lines = ["Laptops | Headline: Laptops that keep up with you", "Kettles | Headline: Tea, fast"]
    prompt = "".join(f"Theme: {line}\n" for line in lines * 4) + "Theme: TVs | Headline:"
    full = GenerationRequest(messages=(), prompt=prompt, stop=("\n",), max_tokens=12)
    int8 = GenerationRequest(
        messages=(), prompt=prompt, stop=("\n",), max_tokens=12, weights="int8"
    )
    before = backend.generate(full)[0]
    quick = backend.generate(int8)[0]
    quick_again = backend.generate(int8)[0]
    after = backend.generate(full)[0]
    assert after.text == before.text and after.cached_tokens > 0
    assert quick.text.strip() and quick_again.text == quick.text  # greedy: deterministic
    assert quick_again.cached_tokens > 0 and quick.cached_tokens == 0  # its own cache
    assert type(backend._models["int8"].model.layers[0].mlp.up_proj).__name__ == "Linear"
    assert backend._models["full"] is backend._lm


def _headline(theme: str, **kwargs: Any) -> GenerationRequest:
    lines = "Theme: Laptops | Headline: Laptops that keep up with you\n" * 3
    return GenerationRequest(
        messages=(),
        prompt=f"Circuit & Co sells electronics.\n{lines}Theme: {theme} | Headline:",
        regex=r" ?[A-Z0-9][A-Za-z0-9 ,.'&!?-]{2,47}\n",
        stop=("\n",),
        max_tokens=12,
        **kwargs,
    )


def test_a_batch_decodes_what_each_request_would_alone(backend: TransformersBackend) -> None:
    # Tails of different lengths ("TVs" vs a long category) sit right-aligned behind the
    # shared prefix with masked pads between: a wrong mask or position shifts every row.
    themes = ["TVs", "Routers, Wifi Extenders & Modems", "Smart Watches"]
    alone = [backend.generate(_headline(t))[0].text for t in themes]
    batch = backend.generate_batch([_headline(t) for t in themes])
    assert [[g.text for g in answers] for answers in batch] == [[text] for text in alone]
    sampled = [_headline(t, temperature=0.8, seed=3, n=2) for t in themes]
    first = [[g.text for g in answers] for answers in backend.generate_batch(sampled)]
    assert [len(answers) for answers in first] == [2, 2, 2]
    again = [[g.text for g in answers] for answers in backend.generate_batch(sampled)]
    assert again == first  # seeded: reproducible
    assert first[1] == [g.text for g in backend.generate(sampled[1])]


def test_a_batch_stops_at_its_deadline(backend: TransformersBackend) -> None:
    late = backend.generate_batch([_headline("TVs", n=2), _headline("Monitors")], deadline=0.0)
    assert [[g.finish_reason for g in answers] for answers in late] == [
        ["deadline", "deadline"],
        ["deadline"],
    ]


def test_the_decoding_benchmark_tells_jump_forward_from_the_cost_of_the_mask(
    backend: TransformersBackend,
) -> None:
    request = _ask("Hats for winter. Reply as JSON.", json_schema=SCHEMA, max_tokens=60)
    speed = measure_decoding_speed(backend, request, runs=1)
    # Fewer passes than tokens on the constrained side (forced tokens ride along); one pass
    # per token on the free side, which is forced to the same length.
    assert speed["constrained_forward_passes"] < speed["tokens"]
    assert speed["unconstrained_forward_passes"] == speed["tokens"]
    assert speed["constrained_forced_tokens"] > 0
    assert speed["constrained_ms_per_pass"] > 0 and speed["unconstrained_ms_per_pass"] > 0
    assert speed["constrained_pass_speed_ratio"] > 0


def test_a_banned_run_of_words_is_never_written(backend: TransformersBackend) -> None:
    # After three identical lines the model copies the line; banned, its last word cannot
    # follow the rest of the run (vLLM's bad_words), on the one-request and batch paths.
    free = _headline("Laptops")
    copied = backend.generate(free)[0].text
    assert "keep up with" in copied
    banned = replace(free, avoid=("keep up with", "up with you"))
    assert "keep up with" not in backend.generate(banned)[0].text
    sampled = backend.generate_batch([replace(banned, temperature=0.8, seed=2, n=3)])[0]
    assert all("keep up with" not in g.text and "up with you" not in g.text for g in sampled)
