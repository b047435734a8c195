"""One contract for every LLMBackend, run against each of them (as implicit runs one set of
checks against every recommender): rules, a scripted stand-in, the generation cache, the
in-process model and a real vLLM server. What the composer relies on of a backend is here;
a new backend is added to BACKENDS and must pass the same tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from conftest import CACHE
from fault_injection import ScriptedBackend

from composer.evaluation import CachedBackend, GenerationCache
from composer.llm import (
    DEADLINE,
    GenerationRequest,
    LLMBackend,
    LLMError,
    TransformersBackend,
    ensure_default_model,
    generate_batch,
)
from composer.llm.rules_backend import RulesBackend
from composer.llm.vllm_backend import VLLMBackend
from composer.llm.vllm_server import VLLMServer

pytest_plugins = ["vllm_server_fixture"]

# A copy task: the rules backend answers from it, model backends from the prompt.
CONTEXT = {
    "task": "copy",
    "locale": "en",
    "kind": "tagline",
    "max_chars": 80,
    "products": [{"title": "Quiet Kettle", "categories": ["Kitchen"], "year": None}],
}
PROMPT = (
    "Kettle Co sells kitchen things.\n"
    "Tagline: Tea in two minutes\nTagline: Quiet mornings start here\nTagline:"
)


@dataclass
class Subject:
    backend: LLMBackend
    # A request's answer in a batch is exactly its answer alone. A server's batched
    # arithmetic may differ from a single request's in the last bits, which can flip a
    # greedy choice: there, order and counts are checked, not the words.
    batch_exact: bool = True

    def request(self, **changes: object) -> GenerationRequest:
        base = GenerationRequest(
            messages=(),
            prompt=PROMPT,
            regex=r" ?[A-Z][A-Za-z ,.'-]{2,40}\n",
            stop=("\n",),
            max_tokens=12,
            temperature=0.0,
            seed=7,
            context=CONTEXT,
        )
        return replace(base, **changes)  # type: ignore[arg-type]


def _rules(_: pytest.FixtureRequest) -> Subject:
    return Subject(RulesBackend())


def _scripted(_: pytest.FixtureRequest) -> Subject:
    return Subject(ScriptedBackend("transformers", texts=[" Tea in no time"] * 50))


def _cached(request: pytest.FixtureRequest) -> Subject:
    folder: Path = request.getfixturevalue("tmp_path")
    cache = GenerationCache(folder / "generations.sqlite")
    inner = RulesBackend()
    cached = CachedBackend("rules", "rules#0", lambda: inner, cache, reads_prompt=False)
    return Subject(cached)


_MODEL: list[TransformersBackend] = []


def _transformers(_: pytest.FixtureRequest) -> Subject:
    if not _MODEL:  # one model for every test of the module
        _MODEL.append(TransformersBackend(ensure_default_model(CACHE)))
    return Subject(_MODEL[0])


def _vllm(request: pytest.FixtureRequest) -> Subject:
    server: VLLMServer = request.getfixturevalue("vllm_server")
    return Subject(VLLMBackend(server.url, server.served_name), batch_exact=False)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], Subject]] = {
    "rules": _rules,
    "scripted": _scripted,
    "cached": _cached,
    "transformers": _transformers,
    "vllm": _vllm,
}
_SLOW = {"transformers", "vllm"}


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.slow] if name in _SLOW else []) for name in BACKENDS
    ]
)
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    made = BACKENDS[request.param](request)
    yield made
    close = getattr(made.backend, "close", None)
    if close is not None and request.param == "vllm":
        close()


def test_it_is_an_llm_backend_and_says_what_it_can(subject: Subject) -> None:
    backend = subject.backend
    assert isinstance(backend, LLMBackend)
    assert backend.name and backend.model
    for flag in (backend.supports_schema, backend.can_stream, backend.reads_prompt):
        assert isinstance(flag, bool)


def test_generate_gives_n_texts_with_their_accounting(subject: Subject) -> None:
    answers = subject.backend.generate(subject.request(n=3, temperature=0.8))
    assert len(answers) == 3
    for g in answers:
        assert isinstance(g.text, str) and g.text.strip()
        assert g.tokens >= 0 and g.finish_reason in ("stop", "length")
        assert "\n" not in g.text  # the stop string ends the text and is left out


def test_the_same_request_gives_the_same_text(subject: Subject) -> None:
    # Greedy (or a fixed script): what the eval cache and the page cache rely on.
    request = subject.request()
    assert subject.backend.generate(request)[0].text == subject.backend.generate(request)[0].text


def test_a_stream_adds_up_to_what_generate_gives(subject: Subject) -> None:
    request = subject.request()
    deltas = list(subject.backend.stream(request))
    assert deltas and all(isinstance(d, str) for d in deltas)
    assert "".join(deltas) == subject.backend.generate(request)[0].text


def test_a_batch_answers_every_request_in_order(subject: Subject) -> None:
    requests = [subject.request(seed=s, n=n) for s, n in ((1, 1), (2, 2))]
    answers = generate_batch(subject.backend, requests)
    assert [len(a) for a in answers] == [1, 2]
    if subject.batch_exact:
        alone = subject.backend.generate(requests[0])[0].text
        assert answers[0][0].text == alone  # batched or not, a request's answer is its own


def test_a_batch_past_its_deadline_starts_nothing_new(subject: Subject) -> None:
    answers = generate_batch(subject.backend, [subject.request(), subject.request(seed=2)], 0.0)
    # Nothing was answered in time: no candidates, or only ones marked as cut off.
    for answer in answers:
        assert all(g.finish_reason == DEADLINE for g in answer)


def test_a_request_it_cannot_serve_is_an_llm_error(subject: Subject) -> None:
    # The composer falls back on LLMError; any other exception would be a crash.
    if isinstance(subject.backend, ScriptedBackend):
        broken: LLMBackend = ScriptedBackend("transformers", error="model server down")
        request = subject.request()
    elif subject.backend.reads_prompt:  # longer than the model's context
        broken, request = subject.backend, subject.request(max_tokens=1_000_000)
    else:
        broken, request = subject.backend, subject.request(context=None)
    with pytest.raises(LLMError):
        broken.generate(request)
