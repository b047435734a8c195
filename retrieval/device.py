"""Where the models compute: ``auto`` is CUDA when this process sees a GPU, else the CPU.

One setting (``COMPOSER_DEVICE``) for the embedding model, ALS training and the in-process
LLM; asking for ``cuda`` on a machine without one is an error, not a silent CPU run.
"""

from __future__ import annotations

from typing import Literal

from retrieval.errors import DeviceUnavailable

DeviceChoice = Literal["auto", "cpu", "cuda"]


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(choice: str) -> str:
    """``cpu`` or ``cuda`` for a setting of ``auto``, ``cpu`` or ``cuda``."""
    if choice == "cpu":
        return "cpu"
    if choice == "auto":
        return "cuda" if cuda_available() else "cpu"
    if choice == "cuda":
        if not cuda_available():
            raise DeviceUnavailable(
                "COMPOSER_DEVICE=cuda, but torch sees no CUDA device here; use auto or cpu"
            )
        return "cuda"
    raise DeviceUnavailable(f"unknown device {choice!r}; use auto, cpu or cuda")
