"""Settings of the `vllm` backend and of the local vLLM server (``COMPOSER_VLLM__*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class VLLMSettings(BaseModel):
    """The client (timeouts, retry, breaker) and a locally started server (model length,
    KV cache, batch size, dtype). The server's address is ``Settings.vllm_url``."""

    connect_timeout_s: float = Field(
        2.0, gt=0, description="Connecting to the server; a dead loopback port fails at once."
    )
    read_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Longest wait for the next bytes of an answer (a streamed token, or a "
        "whole non-streamed answer). The composer checks the page deadline between tokens, "
        "so this is what cuts off a server that stalls; keep it near the page deadline.",
    )
    retries: int = Field(
        1, ge=0, le=5, description="Retries of a request that could not connect (nothing sent)."
    )
    breaker_failures: int = Field(
        1, ge=1, description="Consecutive server failures that open the circuit breaker."
    )
    breaker_cooldown_s: float = Field(
        5.0,
        gt=0,
        description="While open, requests fail at once (pages fall back); after this, one "
        "probe request decides whether it closes again.",
    )
    max_model_len: int = Field(
        2048, ge=256, description="Prompt + output tokens per request (local server)."
    )
    kv_cache_gib: int = Field(
        2, ge=1, description="KV cache of a local server (VLLM_CPU_KVCACHE_SPACE), GiB."
    )
    block_size: int = Field(
        32,
        ge=16,
        description="Tokens per KV-cache block of a local server. Prefix caching reuses whole "
        "blocks: vLLM's CPU default of 128 reuses 256 of the page prompt's 368 shared tokens, "
        "32 reuses 352.",
    )
    max_num_seqs: int = Field(
        16, ge=1, description="Requests a local server decodes in one batch at most."
    )
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32",
        description="Weights and activations of a local server; float32 on CPUs without "
        "native bf16 (AVX2), where bfloat16 is emulated and slower.",
    )
    cpu_cores: str | None = Field(
        None,
        pattern=r"^(all|auto|nobind|[0-9]+([-,][0-9]+)*)$",
        description="Cores a local server's engine computes on (VLLM_CPU_OMP_THREADS_BIND): "
        "'all' (this process's cores), 'auto' (vLLM's choice, which keeps one core for its "
        "HTTP front end: on 2 cores, one), or a list like '0-1' or '0,2'. Unset: 'all' for "
        "a server of its own (`vllm-serve`, `bench llm`), 'auto' for one started beside the "
        "page API (`serve --vllm`), whose workers need a core: on 2 cores 'all' made 1.6x "
        "the pages/minute of one core with 8 pages at once, but a third of it while the "
        "other core was busy.",
    )
    start_timeout_s: float = Field(
        600.0, gt=0, description="How long a local server may take to become ready."
    )
