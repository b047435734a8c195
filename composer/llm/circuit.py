"""A circuit breaker: a dead server costs one fast failure, then immediate refusals until a
probe after the cool-down succeeds."""

from __future__ import annotations

import time
from collections.abc import Callable
from threading import Lock

from composer.llm.base import LLMError


class CircuitOpenError(LLMError):
    """Refused without trying: the server failed recently."""


class CircuitBreaker:
    def __init__(
        self,
        failures_to_open: int = 1,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half-open"
        return "open"

    def before_call(self, what: str) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go through now."""
        with self._lock:
            state = self._state()
            if state == "open" or (state == "half-open" and self._probing):
                left = self.cooldown_s - (self._clock() - (self._opened_at or 0.0))
                raise CircuitOpenError(
                    f"{what} failed recently; not trying again for {max(left, 0):.1f} s"
                )
            if state == "half-open":
                self._probing = True  # exactly one probe at a time

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def release(self) -> None:
        """End a call without a verdict on the server (e.g. a bug on the caller's side):
        frees the probe slot so that the next call may probe."""
        with self._lock:
            self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self._failures >= self.failures_to_open:
                self._opened_at = self._clock()
