"""Settings of the API process (a nested group of :class:`composer.settings.Settings`).

Only pydantic here: ``composer.settings`` imports this module, so it must not import the app.
The per-request deadline is ``Settings.page_deadline_s`` (shared with the CLI's pages).
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ApiSettings(BaseModel):
    """``COMPOSER_API__THREADS=8`` etc. once wired into ``Settings`` as ``api``."""

    threads: int = Field(
        4,
        ge=1,
        le=64,
        description="Worker threads for retrieval, rules pages, rendering and store access; "
        "the pool has one more per LLM slot.",
    )
    llm_concurrency: int | None = Field(
        None,
        ge=1,
        le=256,
        description="LLM jobs running at once; default 1 for transformers (one model behind "
        "one lock), 8 for vllm (it batches).",
    )
    llm_max_waiting: int = Field(
        8,
        ge=0,
        le=10_000,
        description="Requests that may wait for an LLM slot; beyond that the rules page is "
        "served at once with fallback_reason 'queue full'.",
    )
    cache_size: int = Field(1024, ge=0, description="Pages kept in the page cache (0: off).")
    cache_ttl_s: float = Field(300.0, gt=0, description="Seconds a cached page stays valid.")
    max_body_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest accepted request body; larger is 413."
    )
    log_level: str = Field("INFO", description="Level of the JSON-lines log.")
    blas_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="BLAS (OpenBLAS) threads per server process. Requests already run in "
        "parallel; BLAS threads on top of them fight for the same cores, and the matrices of "
        "one request are too small to gain from them.",
    )

    def llm_slots(self, backend: str) -> int:
        if self.llm_concurrency is not None:
            return self.llm_concurrency
        return 8 if backend == "vllm" else 1
