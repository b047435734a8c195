"""Tunable parameters of the retrieval layer (the composer's settings embed these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MFParams(BaseModel):
    """Implicit-feedback ALS hyper-parameters and event confidences."""

    model_config = ConfigDict(extra="forbid")

    factors: int = Field(64, ge=2, le=1024)
    regularization: float = Field(0.05, ge=0)
    alpha: float = Field(2.0, gt=0, description="confidence scale applied to event weights")
    iterations: int = Field(15, ge=1, le=200)
    seed: int = 42
    view_weight: float = Field(1.0, ge=0)
    cart_weight: float = Field(2.0, ge=0)
    purchase_weight: float = Field(4.0, ge=0)
    rating_weight: float = Field(4.0, ge=0)
    popularity_half_life_days: float = Field(
        60.0, gt=0, description="recency weighting of the popularity fallback"
    )


class FusionParams(BaseModel):
    """How candidate sources are fused; weights are tuned on a validation split by set-up."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["rrf", "weighted"] = "rrf"
    rrf_k: float = Field(60.0, gt=0)
    pool: int = Field(100, ge=10, le=5000, description="candidates taken from each source")
    diversity: float = Field(
        0.2, ge=0, le=1, description="MMR strength: 0 = pure relevance, 1 = pure novelty"
    )
    tune: bool = Field(True, description="tune source weights on a validation split in set-up")
