"""Settings of the API process (``COMPOSER_API__…``), its keys and their scopes.

The per-request deadline is ``Settings.page_deadline_s`` (shared with the CLI's pages).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from composer.settings.llm import BackendName


class Scope(StrEnum):
    """What a key may do. ``admin`` includes the other two."""

    PAGES = "pages:read"  # pages, products and copy for a storefront; minting page links
    EVENTS = "events:write"  # recording shoppers' events
    ADMIN = "admin"  # backend/prompt overrides, metrics, readiness details, the API schema


class ApiKeyConfig(BaseModel):
    """One configured key: ``{"id": "storefront", "sha256": "…", "scopes": ["pages:read"]}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="Names the caller in logs.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the key, hex.")
    scopes: tuple[Scope, ...] = Field(min_length=1)

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


class ApiSettings(BaseModel):
    """``COMPOSER_API__THREADS=8`` etc. once wired into ``Settings`` as ``api``."""

    threads: int = Field(
        4,
        ge=1,
        le=64,
        description="Worker threads for retrieval, rules pages and rendering (the pool has one "
        "more per LLM slot), and as many again for product lookups and event writes.",
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
    llm_share_per_key: float = Field(
        0.5,
        gt=0,
        le=1,
        description="With several API keys, the share of the LLM queue (slots and waiting "
        "room) one key's requests may hold at once; beyond it that key gets the rules page "
        "at once (fallback_reason 'key share of the LLM queue in use').",
    )
    model_poll_s: float = Field(
        5.0,
        ge=0,
        description="How often each server process checks which trained model version is "
        "served (`composer train`, `composer models rollback`) and swaps a new one in; 0: "
        "never (restart to change models).",
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

    keys: list[ApiKeyConfig] = Field(
        [],
        description="API keys as JSON, [{id, sha256, scopes}] (`composer keys new` makes one). "
        "Without keys every route but /healthz answers 401; `composer serve` on loopback "
        "makes a key for the run and prints it.",
    )
    link_secret: SecretStr | None = Field(
        None,
        min_length=32,
        description="HMAC secret of signed page links and browser sessions. Unset: a random "
        "one per run (loopback only).",
    )
    link_ttl_s: int = Field(3600, ge=60, description="Default lifetime of a page link.")
    link_max_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="Longest page link or session this service accepts."
    )

    max_connections: int = Field(
        512,
        ge=1,
        description="Open connections and tasks per server process (uvicorn's "
        "limit_concurrency); beyond, new requests get 503 at once instead of piling up.",
    )
    requests_per_minute_per_key: int = Field(
        6000,
        ge=1,
        description="Page and copy requests one API key may make per minute; beyond: 429 "
        "(before the LLM queue, so one caller cannot fill it for everyone).",
    )
    events_per_minute_per_key: int = Field(
        6000, ge=1, description="Events one API key may record per minute; beyond: 429."
    )
    events_per_minute_per_shopper: int = Field(
        300, ge=1, description="Events one shopper may get per minute; beyond: 429."
    )
    event_clock_skew_s: float = Field(
        300.0, ge=0, description="How far ahead of this server's clock an event time may be."
    )
    frame_ancestors: list[
        Annotated[str, StringConstraints(pattern=r"^(https?://[A-Za-z0-9.*-]+(:\d{1,5})?|'self')$")]
    ] = Field(
        [],
        description="Origins that may frame the HTML pages (CSP frame-ancestors), e.g. "
        '["https://shop.example"]; empty: none.',
    )

    def llm_cap_per_key(self, backend: BackendName) -> int | None:
        """LLM requests (running or waiting) one key may hold; None with one key or none,
        where there is nobody to be fair to."""
        if len(self.keys) < 2:
            return None
        room = self.llm_slots(backend) + self.llm_max_waiting
        return max(1, int(room * self.llm_share_per_key))

    def llm_slots(self, backend: BackendName) -> int:
        if self.llm_concurrency is not None:
            return self.llm_concurrency
        return 8 if backend == BackendName.VLLM else 1
