"""Experiments on live traffic: where the experiment files are, the exposure log, attribution
and guardrail checks (``COMPOSER_EXPERIMENTS__…``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class ExperimentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dir: Path | None = Field(
        None, description="Folder of experiment files (*.yaml); default: ARTIFACTS/experiments."
    )
    poll_s: float = Field(
        2.0,
        ge=0,
        description="How often each server process rereads the experiment files and the "
        "paused variants; 0: read once at start.",
    )
    exposure_log: bool = Field(
        True, description="Log every served page (page id, variant, slots, latency) durably."
    )
    flush_s: float = Field(
        0.5,
        gt=0,
        le=60,
        description="Exposures are written in batches at least this often (a crash loses at "
        "most the pages served since the last batch).",
    )
    batch_size: int = Field(500, ge=1, le=100_000, description="Exposures written at once at most.")
    attribution_window_s: float = Field(
        24 * 3600.0,
        gt=0,
        description="A cart or purchase that names no page is attributed to the shopper's "
        "last page served at most this long before it.",
    )
    guardrail_check_s: float = Field(
        15.0,
        ge=0,
        description="How often each server process checks the live experiments' guardrails "
        "and pauses a variant past one; 0: never (the report still shows breaches).",
    )
