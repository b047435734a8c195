"""The `vllm` backend: an OpenAI-compatible HTTP client for a vLLM server, with structured
outputs (``response_format`` with the JSON schema), timeouts and a retry on connection errors."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import httpx

from composer.llm.base import Generation, GenerationRequest, LLMError
from composer.llm.circuit import CircuitBreaker


class VLLMBackend:
    name = "vllm"
    supports_schema = True
    can_stream = True

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        connect_timeout: float = 2.0,
        read_timeout: float = 60.0,
        retries: int = 1,
        breaker: CircuitBreaker | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries = retries
        self.breaker = breaker or CircuitBreaker()
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout)
        )

    def _body(self, request: GenerationRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "n": request.n,
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
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def generate(self, request: GenerationRequest) -> list[Generation]:
        self.breaker.before_call(f"vLLM at {self.base_url}")
        try:
            data = self._post(self._body(request, stream=False))
        except LLMError:
            self.breaker.failure()
            raise
        self.breaker.success()
        usage = data.get("usage") or {}
        choices = data.get("choices") or []
        if not choices:
            raise LLMError(f"vLLM at {self.base_url} returned no choices")
        per_choice = int(usage.get("completion_tokens", 0)) // max(len(choices), 1)
        return [
            Generation(
                text=c["message"]["content"] or "",
                tokens=per_choice,
                finish_reason=c.get("finish_reason") or "stop",
            )
            for c in choices
        ]

    def stream(self, request: GenerationRequest) -> Generator[str, None, Generation]:
        self.breaker.before_call(f"vLLM at {self.base_url}")
        try:
            result = yield from self._stream(request)
        except LLMError:
            self.breaker.failure()
            raise
        self.breaker.success()
        return result

    def _stream(self, request: GenerationRequest) -> Generator[str, None, Generation]:
        body = self._body(request, stream=True)
        text, tokens, finish = [], 0, "stop"
        try:
            with self._client.stream("POST", f"{self.base_url}/chat/completions", json=body) as r:
                if r.status_code != 200:
                    r.read()
                    raise LLMError(
                        f"vLLM at {self.base_url} answered {r.status_code}: {r.text[:200]}"
                    )
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    if chunk.get("usage"):
                        tokens = int(chunk["usage"].get("completion_tokens", tokens))
                    for choice in chunk.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            text.append(delta)
                            yield delta
                        finish = choice.get("finish_reason") or finish
        except httpx.ConnectError as exc:
            raise LLMError(f"cannot connect to vLLM at {self.base_url}: {exc}") from exc
        except (httpx.HTTPError, json.JSONDecodeError) as exc:
            raise LLMError(f"vLLM at {self.base_url} failed mid-stream: {exc}") from exc
        return Generation("".join(text), tokens, finish)

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        last: Exception | None = None
        for _ in range(self.retries + 1):
            try:
                response = self._client.post(url, json=body)
            except httpx.ConnectError as exc:  # nothing was sent: safe to retry
                last = exc
                continue
            except httpx.HTTPError as exc:
                raise LLMError(f"vLLM at {self.base_url} failed: {exc}") from exc
            if response.status_code != 200:
                raise LLMError(
                    f"vLLM at {self.base_url} answered {response.status_code}: "
                    f"{response.text[:200]}"
                )
            return response.json()
        raise LLMError(
            f"cannot connect to vLLM at {self.base_url}: {last}; is a server "
            "running there (COMPOSER_VLLM_URL)?"
        )
