"""The `vllm` backend: an OpenAI-compatible HTTP client for a vLLM server.

Structured outputs go as ``response_format`` with the JSON schema (vLLM decodes under it with
xgrammar); pages stream token by token; copy asks for ``n`` completions with a ``seed``.
Connection and read timeouts bound every call, a request that could not connect is retried
once, and a circuit breaker turns a dead server into one fast failure followed by immediate
refusals (the caller's fallback) until a probe after the cool-down gets an answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

from composer.llm.base import Generation, GenerationRequest, LLMError
from composer.llm.circuit import CircuitBreaker
from composer.settings import BackendName

if TYPE_CHECKING:
    from composer.settings import Settings

# Requests of one batch in flight at once; a page has a handful of fields.
BATCH_WORKERS = 8

# Errors where nothing reached the server: retrying cannot run a request twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


class VLLMUnavailableError(LLMError):
    """The server is down, timed out, failed or broke off: counts against the breaker."""


class VLLMRequestError(LLMError):
    """The server answered and refused this request (4xx): it is alive, the request is not."""


class VLLMBackend:
    name = BackendName.VLLM
    supports_schema = True
    can_stream = True
    reads_prompt = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 30.0,
        retries: int = 1,
        retry_backoff_s: float = 0.2,
        breaker: CircuitBreaker | None = None,
        cache_salt: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.read_timeout = read_timeout
        self.breaker = breaker or CircuitBreaker()
        # Requests with a salt share prefix-cache blocks only with requests of the same salt
        # (vLLM's cache_salt); benchmarks use it to start a run with a cold cache.
        self.cache_salt = cache_salt
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout)
        )
        self._pool = ThreadPoolExecutor(BATCH_WORKERS, thread_name_prefix="vllm-batch")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> VLLMBackend:
        v = settings.vllm
        options: dict[str, Any] = {
            "connect_timeout": v.connect_timeout_s,
            "read_timeout": v.read_timeout_s,
            "retries": v.retries,
            "breaker": CircuitBreaker(v.breaker_failures, v.breaker_cooldown_s),
            **overrides,
        }
        return cls(settings.vllm_url, settings.llm_model, **options)

    @property
    def where(self) -> str:
        return f"vLLM at {self.base_url}"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    # -- the backend interface ------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> list[Generation]:
        """``request.n`` completions in one request (vLLM seeds choice i with seed + i)."""
        with self._guarded():
            started = time.perf_counter()
            data = self._post(self._body(request, stream=False))
            elapsed_ms = (time.perf_counter() - started) * 1000
        choices = data.get("choices") or []
        if not choices:
            raise VLLMUnavailableError(f"{self.where} returned no choices")
        usage = data.get("usage") or {}
        per_choice = int(usage.get("completion_tokens") or 0) // len(choices)
        if request.temperature <= 0 and request.n > 1:
            # vLLM refuses n > 1 when greedy (its answers would be one answer n times):
            # asked for one, it is repeated, as the in-process backend does.
            choices = choices[:1] * request.n
        cached = _cached_tokens(usage)
        return [
            Generation(
                text=_choice_text(c),
                tokens=per_choice,
                finish_reason=c.get("finish_reason") or "stop",
                timings_ms={"request": round(elapsed_ms, 2)},
                cached_tokens=cached,
            )
            for c in choices
        ]

    def generate_batch(
        self, requests: Sequence[GenerationRequest], deadline: float | None = None
    ) -> list[list[Generation]]:
        """All requests sent at once: the server decodes concurrent requests as one batch
        and shares their common prefix through its cache. A request unanswered at
        ``deadline`` gets an empty list; it ends in the background, and its own outcome
        (not the caller's deadline) is what the breaker hears."""
        futures = [self._pool.submit(self.generate, r) for r in requests]
        timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
        wait(futures, timeout=timeout)
        return [f.result() if f.done() else [] for f in futures]

    def stream(self, request: GenerationRequest) -> Generator[str, None, Generation]:
        """Text deltas of one completion as the server decodes them, then (as the return
        value) its :class:`Generation`: tokens, finish reason, time to first token."""
        with self._guarded():
            result = yield from self._stream(self._body(request, stream=True))
        return result

    # -- pieces ---------------------------------------------------------------------------

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """Ask the breaker first; afterwards tell it whether the server answered."""
        self.breaker.before_call(self.where)
        alive: bool | None = None
        try:
            yield
            alive = True
        except VLLMUnavailableError:
            alive = False
            raise
        except (VLLMRequestError, GeneratorExit):
            # A refusal is an answer; a stream closed by its reader (a page deadline) had
            # already delivered text, since a generator is only closed at a yield.
            alive = True
            raise
        finally:
            if alive is True:
                self.breaker.success()
            elif alive is False:
                self.breaker.failure()
            else:  # a bug on this side says nothing about the server
                self.breaker.release()

    def _body(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model}
        if request.prompt is not None:
            body["prompt"] = request.prompt
        else:
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        body |= {
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "n": 1 if stream or request.temperature <= 0 else request.n,
            "stream": stream,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.min_tokens:
            body["min_tokens"] = request.min_tokens
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema, "strict": True},
            }
        if request.regex is not None:
            body["structured_outputs"] = {"regex": request.regex}
        if request.stop:
            body["stop"] = list(request.stop)
        if request.avoid:
            body["bad_words"] = list(request.avoid)
        if self.cache_salt is not None:
            body["cache_salt"] = self.cache_salt
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _send(self, body: dict[str, Any], stream: bool) -> httpx.Response:
        """The request's response (headers only when ``stream``); a request that could not
        connect is sent again (nothing reached the server), up to ``retries`` times."""
        # A plain prompt goes to the completions endpoint, chat messages to chat completions.
        path = "completions" if "prompt" in body else "chat/completions"
        request = self._client.build_request("POST", f"{self.base_url}/{path}", json=body)
        for attempt in range(self.retries + 1):
            try:
                return self._client.send(request, stream=stream)
            except _NOT_SENT as exc:
                if attempt < self.retries:
                    time.sleep(self.retry_backoff_s)
                    continue
                raise self._cannot_connect(exc) from exc
            except httpx.TimeoutException as exc:
                raise self._timed_out(exc) from exc
            except httpx.HTTPError as exc:
                raise VLLMUnavailableError(f"{self.where} failed: {exc!r}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self._send(body, stream=False)
        self._check_status(response.status_code, response.text)
        try:
            return response.json()
        except json.JSONDecodeError as exc:
            raise VLLMUnavailableError(f"{self.where} answered with non-JSON") from exc

    def _stream(self, body: dict[str, Any]) -> Generator[str, None, Generation]:
        started = time.perf_counter()
        response = self._send(body, stream=True)
        try:
            if response.status_code != 200:
                response.read()
                self._check_status(response.status_code, response.text)
            return (yield from self._read(response, started))
        except httpx.TimeoutException as exc:
            raise self._timed_out(exc) from exc
        except httpx.HTTPError as exc:
            raise VLLMUnavailableError(f"{self.where} broke off the stream: {exc!r}") from exc
        finally:
            response.close()

    def _read(self, response: httpx.Response, started: float) -> Generator[str, None, Generation]:
        first: float | None = None
        text: list[str] = []
        tokens, cached, finish = 0, 0, None
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                chunk = json.loads(payload)
            except json.JSONDecodeError as exc:
                raise VLLMUnavailableError(
                    f"{self.where} sent a broken event: {payload[:80]}"
                ) from exc
            if "error" in chunk:
                error = chunk["error"]
                message = error.get("message") if isinstance(error, dict) else error
                raise VLLMUnavailableError(f"{self.where} failed mid-stream: {message}")
            usage = chunk.get("usage")
            if usage:
                tokens = int(usage.get("completion_tokens") or tokens)
                cached = _cached_tokens(usage)
            for choice in chunk.get("choices") or []:
                delta = (choice.get("delta") or {}).get("content") or choice.get("text")
                if delta:
                    if first is None:
                        first = time.perf_counter()
                    text.append(delta)
                    yield delta
                finish = choice.get("finish_reason") or finish
        if finish is None:
            raise VLLMUnavailableError(f"{self.where} ended the stream before the answer did")
        done = time.perf_counter()
        timings = {"first_token": round(((first or done) - started) * 1000, 2)}
        timings["decode"] = round((done - (first or done)) * 1000, 2)
        return Generation("".join(text), tokens, finish, timings, cached)

    def _check_status(self, status: int, text: str) -> None:
        if status == 200:
            return
        detail = _error_message(text)
        if 400 <= status < 500 and status not in (404, 408, 429):
            raise VLLMRequestError(f"{self.where} refused the request ({status}): {detail}")
        hint = (
            f"; does it serve the model '{self.model}' (COMPOSER_LLM_MODEL)?"
            if status == 404
            else ""
        )
        raise VLLMUnavailableError(f"{self.where} answered {status}: {detail}{hint}")

    def _cannot_connect(self, exc: Exception) -> VLLMUnavailableError:
        return VLLMUnavailableError(
            f"cannot connect to {self.where} ({type(exc).__name__}) after "
            f"{self.retries + 1} attempt(s); start one with `composer vllm-serve` or set "
            "COMPOSER_VLLM_URL"
        )

    def _timed_out(self, exc: Exception) -> VLLMUnavailableError:
        return VLLMUnavailableError(
            f"{self.where} did not answer within {self.read_timeout:g} s "
            f"({type(exc).__name__}); COMPOSER_VLLM__READ_TIMEOUT_S sets the limit"
        )


def _choice_text(choice: dict[str, Any]) -> str:
    """A chat choice's message content, or a completion choice's text."""
    message = choice.get("message")
    if isinstance(message, dict):
        return message.get("content") or ""
    return choice.get("text") or ""


def _cached_tokens(usage: dict[str, Any]) -> int:
    details = usage.get("prompt_tokens_details") or {}
    return int(details.get("cached_tokens") or 0)


def _error_message(text: str) -> str:
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text[:200]
    error = data.get("error", data) if isinstance(data, dict) else data
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or error)[:300]


__all__ = ["VLLMBackend", "VLLMRequestError", "VLLMUnavailableError"]
