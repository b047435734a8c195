"""When an answer comes from the ``rules`` backend instead of the model, and why.

Pages and copy served to a caller ask the model through :class:`Fallback`, which owns the
outcomes around one model call:

- refused before the call: no LLM slot for it (the queue is full, the caller's key holds its
  share, the deadline ran out while waiting), handed in as ``forced``;
- unavailable: the backend cannot be built (a model that does not load, a server that
  refuses to start);
- failed: the call raised an error that is not the caller's. Which errors are the caller's
  is the caller's to say (``caller_errors``): for pages a :class:`ComposerError` (an unknown
  prompt the request named) stays an error; copy checks its request first, so any error
  after that is the deployment's and the shopper gets the rules copy.

In each case the answer is the rules answer with the reason in its trace; never a 5xx.

What the model *wrote* is judged where it is written: the composer and the copywriter keep
the rules words for each field their checks reject. That decision is per field and needs
the checks, so it stays with them; their traces say which fields.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

from composer.backends import BackendRegistry
from composer.errors import ComposerError
from composer.settings import BackendName

log = logging.getLogger("composer.fallback")

T = TypeVar("T")
E = TypeVar("E")


def failed_reason(backend: BackendName, exc: BaseException) -> str:
    return f"backend {backend} failed: {type(exc).__name__}: {exc}"


class Fallback:
    def __init__(self, backends: BackendRegistry) -> None:
        self.backends = backends

    def refusal(self, backend: BackendName, forced: str | None = None) -> str | None:
        """Why ``backend`` will not be asked (``forced``, or it cannot be built); None: ask."""
        if forced is not None or backend == BackendName.RULES:
            return forced
        try:
            self.backends.get(backend)
        except Exception as exc:  # whatever stops a model loading, the caller gets an answer
            log.error("LLM backend unavailable", extra={"backend": backend, "error": str(exc)})
            return f"backend {backend} unavailable: {exc}"
        return None

    def call(
        self,
        backend: BackendName,
        answer: Callable[[], T],
        rules: Callable[[str], T],
        forced: str | None = None,
        caller_errors: tuple[type[Exception], ...] = (ComposerError,),
    ) -> T:
        """``answer()`` from ``backend``, or ``rules(reason)`` when it is refused or fails
        with anything but one of ``caller_errors``."""
        reason = self.refusal(backend, forced)
        if reason is None:
            try:
                return answer()
            except caller_errors:
                raise
            except Exception as exc:
                if backend == BackendName.RULES:
                    raise
                log.exception("LLM answer failed; serving rules", extra={"backend": backend})
                reason = failed_reason(backend, exc)
        return rules(reason)

    def stream(
        self,
        backend: BackendName,
        answer: Callable[[], Iterator[E]],
        rules: Callable[[str], Iterator[E]],
        *,
        final: Callable[[E], bool],
        once: Callable[[E], bool],
        forced: str | None = None,
    ) -> Iterator[E]:
        """:meth:`call` for an answer sent piece by piece. After a ``final`` piece is out (a
        section the caller already shows), a failure can no longer be replaced and is
        raised; a ``once`` piece already sent (the candidates) is not sent again."""
        reason = self.refusal(backend, forced)
        if reason is not None:
            yield from rules(reason)
            return
        sent_once = committed = False
        try:
            for piece in answer():
                sent_once = sent_once or once(piece)
                committed = committed or final(piece)
                yield piece
            return
        except ComposerError:
            raise
        except Exception as exc:
            if backend == BackendName.RULES or committed:
                raise
            log.exception("LLM answer failed; serving rules", extra={"backend": backend})
            reason = failed_reason(backend, exc)
        for piece in rules(reason):
            if not (sent_once and once(piece)):
                yield piece
