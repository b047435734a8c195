"""Pages composed ahead of the request (``COMPOSER_AHEAD__…``): whether, how stale a kept
page may be, the LLM budget it may spend, and the queue's bounds."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class AheadSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False,
        description="Compose shoppers' home and category pages with the LLM in the background "
        "and answer from them at once; a request without a valid kept page gets the rules "
        "page at once and its LLM page is composed for the next view.",
    )
    max_staleness_s: float = Field(
        3600.0,
        gt=0,
        description="A kept page older than this is not served (rules page now, composed "
        "again), even for an unchanged shopper: prices, stock and the catalog move.",
    )
    refresh_after_s: float = Field(
        600.0,
        gt=0,
        description="A kept page older than this is still served, and composed again for "
        "the next view (stale-while-revalidate).",
    )
    # Measured (README, "Who writes the words"): the 1.5B model's words are judged good
    # far more often than the 135M model's, at ~17-20 s a page on 2 cores: too slow for a
    # shopper waiting, fine for a page composed before the visit.
    words_model: str | None = Field(
        None,
        description="Model that writes pages composed ahead (in-process backend; a vLLM "
        "server must serve it under this name); empty: COMPOSER_LLM_MODEL. "
        "`qwen2.5-coder-1.5b-instruct` is fetched on first use (~1.1 GB, 7.1 GB on disk, "
        "~7 GB of memory per server process).",
    )
    budget_per_minute: int = Field(
        12,
        ge=1,
        description="LLM pages composed ahead per minute, all server processes together; "
        "leave room below the model's throughput for on-request work.",
    )
    concurrency: int = Field(
        1,
        ge=1,
        le=64,
        description="Pages composed ahead at once per server process (vLLM batches them; "
        "the in-process model runs one at a time).",
    )
    deadline_s: float = Field(
        120.0, gt=0, description="A page composed ahead that takes longer is dropped."
    )
    max_queue: int = Field(
        10_000, ge=1, description="Queued pages at most; the least likely to be viewed go."
    )
    active_window_s: float = Field(
        7 * 24 * 3600.0,
        gt=0,
        description="Shoppers with an event this recent are queued by the schedule.",
    )
    sweep_s: float = Field(
        300.0,
        ge=0,
        description="How often the schedule queues recently active shoppers; 0: never (only "
        "page views and events queue pages).",
    )
    revisit_tau_s: float = Field(
        3 * 24 * 3600.0,
        gt=0,
        description="How fast a visit's weight in a shopper's priority fades (recency and "
        "frequency: each visit adds 1, decaying with this time constant).",
    )

    @model_validator(mode="after")
    def _refresh_before_max(self) -> AheadSettings:
        if self.refresh_after_s > self.max_staleness_s:
            raise ValueError(
                "refresh_after_s must not exceed max_staleness_s (a page would stop being "
                "served before it is refreshed)"
            )
        return self

    @field_validator("words_model")
    @classmethod
    def _empty_is_the_page_model(cls, value: str | None) -> str | None:
        return value or None
