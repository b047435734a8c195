"""Query embeddings kept in the evaluation cache, so a re-run does not load the embedding
model (importing it takes longer than replaying a whole cached suite)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence

import numpy as np

from composer.evaluation.gen_cache import GenerationCache
from retrieval import Encoder


class CachedEncoder:
    """Answers ``encode_one`` (the only call retrieval makes per request) from the cache;
    the real :class:`Encoder` is built on the first miss."""

    def __init__(self, model: str, cache: GenerationCache, factory: Callable[[], Encoder]) -> None:
        self.model_name = model
        self._cache = cache
        self._factory = factory
        self._encoder: Encoder | None = None
        self._lock = threading.Lock()

    def _real(self) -> Encoder:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._factory()
            return self._encoder

    @property
    def dim(self) -> int:
        return self._real().dim

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        return self._real().encode(texts, batch_size, progress)

    def encode_one(self, text: str) -> np.ndarray:
        key = hashlib.sha256(f"{self.model_name}\n{text}".encode()).hexdigest()
        raw = self._cache.get_vector(key)
        if raw is not None:
            return np.frombuffer(raw, dtype=np.float32).copy()
        vector = np.asarray(self._real().encode_one(text), dtype=np.float32)
        self._cache.put_vector(key, vector.tobytes())
        return vector
