"""The circuit breaker, with a controlled clock, and the vLLM client against a dead port."""

from __future__ import annotations

import socket

import pytest

from composer.llm.base import ChatMessage, GenerationRequest, LLMError
from composer.llm.circuit import CircuitBreaker, CircuitOpenError
from composer.llm.vllm_backend import VLLMBackend


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_refuses_then_probes_once_and_closes() -> None:
    clock = Clock()
    b = CircuitBreaker(failures_to_open=2, cooldown_s=10, clock=clock)
    b.before_call("x")
    b.failure()
    assert b.state == "closed"  # one failure is not enough here
    b.before_call("x")
    b.failure()
    assert b.state == "open"
    with pytest.raises(CircuitOpenError, match=r"not trying again for 10\.0 s"):
        b.before_call("x")
    clock.now = 10.0
    assert b.state == "half-open"
    b.before_call("x")  # the probe
    with pytest.raises(CircuitOpenError):
        b.before_call("x")  # a second caller while the probe is out
    b.success()
    assert b.state == "closed"
    b.before_call("x")


def test_failed_probe_reopens() -> None:
    clock = Clock()
    b = CircuitBreaker(cooldown_s=5, clock=clock)
    b.failure()
    clock.now = 6
    b.before_call("x")
    b.failure()
    assert b.state == "open"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_server_costs_one_fast_failure_then_immediate_refusals() -> None:
    backend = VLLMBackend(
        f"http://127.0.0.1:{free_port()}/v1", "m", breaker=CircuitBreaker(cooldown_s=30)
    )
    request = GenerationRequest(messages=(ChatMessage("user", "hi"),))
    with pytest.raises(LLMError, match="cannot connect"):
        backend.generate(request)
    # The second call is refused by the breaker itself, not by the network.
    with pytest.raises(CircuitOpenError):
        list(backend.stream(request))
