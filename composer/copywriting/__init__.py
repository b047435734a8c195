"""Headline and product-copy generation, single and batch."""

from composer.copywriting.batch import BatchReport, run_batch
from composer.copywriting.model import CopyKind, CopyRequest, CopyResult, CopyVariant
from composer.copywriting.writer import Copywriter

__all__ = [
    "BatchReport",
    "CopyKind",
    "CopyRequest",
    "CopyResult",
    "CopyVariant",
    "Copywriter",
    "run_batch",
]
