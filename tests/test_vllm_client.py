"""The vLLM client's failure handling, fast: a dead port, and a scripted HTTP server (a fault
injector that answers with a chosen status) where the answer matters, not the model. What a
real vLLM server does is tested in test_vllm.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from composer.llm.base import ChatMessage, GenerationRequest
from composer.llm.circuit import CircuitBreaker, CircuitOpenError
from composer.llm.vllm_backend import VLLMBackend, VLLMRequestError, VLLMUnavailableError
from composer.llm.vllm_server import free_port

REQUEST = GenerationRequest(messages=(ChatMessage("user", "hi"),))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def answering() -> Iterator[tuple[str, list[int]]]:
    """A server answering every POST with the status at the front of ``statuses`` (the last
    one repeats) and an OpenAI-style error body; yields its base URL and that list."""
    statuses: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            body = json.dumps({"error": {"message": f"scripted {status}"}}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", statuses
    server.shutdown()
    server.server_close()


def test_dead_port_is_tried_twice_then_the_breaker_refuses_without_trying() -> None:
    backend = VLLMBackend(
        f"http://127.0.0.1:{free_port()}/v1",
        "m",
        retry_backoff_s=0.0,
        breaker=CircuitBreaker(cooldown_s=60),
    )
    with pytest.raises(VLLMUnavailableError, match=r"cannot connect .* after 2 attempt"):
        list(backend.stream(REQUEST))
    assert backend.breaker.state == "open"
    with pytest.raises(CircuitOpenError, match="failed recently"):
        backend.generate(REQUEST)


def test_a_refused_request_is_an_answer_a_server_error_is_a_failure(
    answering: tuple[str, list[int]],
) -> None:
    url, statuses = answering
    backend = VLLMBackend(url, "m", breaker=CircuitBreaker(cooldown_s=60))
    statuses[:] = [400]
    with pytest.raises(VLLMRequestError, match=r"refused the request \(400\): scripted 400"):
        backend.generate(REQUEST)
    with pytest.raises(VLLMRequestError):
        list(backend.stream(REQUEST))
    assert backend.breaker.state == "closed"

    statuses[:] = [503]
    with pytest.raises(VLLMUnavailableError, match="answered 503: scripted 503"):
        list(backend.stream(REQUEST))
    assert backend.breaker.state == "open"


def test_a_model_the_server_does_not_serve_says_which_setting_to_fix(
    answering: tuple[str, list[int]],
) -> None:
    url, statuses = answering
    statuses[:] = [404]
    backend = VLLMBackend(url, "no-such-model")
    with pytest.raises(VLLMUnavailableError, match=r"'no-such-model' \(COMPOSER_LLM_MODEL\)"):
        backend.generate(REQUEST)


def test_half_open_probe_released_without_verdict_lets_the_next_call_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker(cooldown_s=5, clock=clock)
    breaker.failure()
    clock.now = 5.0
    breaker.before_call("x")  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call("x")
    breaker.release()  # e.g. the caller's own bug: says nothing about the server
    assert breaker.state == "half-open"
    breaker.before_call("x")  # the next call may probe
    breaker.success()
    assert breaker.state == "closed"
