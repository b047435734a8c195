"""The page cache: LRU with a time to live, invalidated per shopper.

A key is built by :func:`page_key` from everything a page depends on:

- the shopper's state: the id of their latest stored event (0 for none, ``None`` for an
  anonymous session, whose recent items are part of the request). Events written by another
  process (the CLI, another uvicorn worker) change this id too, so a stale page is never
  served even where :meth:`PageCache.invalidate_shopper` was not called;
- every field of the request (kind, query, locale, limits, seed, format, ...);
- the prompt name and the hash of its file, so editing a prompt retires old pages;
- the backend name and its model.

Only pages the chosen backend produced are cached: a fallback page (deadline, queue full,
backend down) is a transient answer and is recomposed on the next request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from composer.page_request import PageRequest

V = TypeVar("V")

PageKey = tuple[object, ...]


def page_key(
    request: PageRequest,
    shopper_state: tuple[int, int] | None,
    prompt_name: str,
    prompt_hash: str,
    backend: str,
    model: str,
    model_version: str = "",
) -> PageKey:
    # The session id only chooses an experiment's arm, whose settings are fields already
    # (and the shuffled order's seed does not read it).
    fields = request.model_dump(mode="json", exclude={"backend", "prompt", "session_id"})
    return (
        request.shopper_id,
        shopper_state,
        tuple(sorted((k, _freeze(v)) for k, v in fields.items())),
        prompt_name,
        prompt_hash,
        backend,
        model,
        model_version,
    )


def _freeze(value: object) -> object:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


class PageCache(Generic[V]):
    """Thread-safe LRU + TTL map whose keys start with the shopper id."""

    def __init__(
        self, max_size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[PageKey, tuple[float, V]] = OrderedDict()
        self._by_shopper: dict[str, set[PageKey]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: PageKey) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            expires, value = item
            if expires <= self._clock():
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: PageKey, value: V) -> None:
        if self.max_size <= 0:
            return
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (self._clock() + self.ttl_s, value)
            shopper = key[0]
            if isinstance(shopper, str):
                self._by_shopper.setdefault(shopper, set()).add(key)
            while len(self._items) > self.max_size:
                self._drop(next(iter(self._items)))

    def invalidate_shopper(self, shopper_id: str) -> int:
        """Forget every page of this shopper; returns how many were dropped."""
        with self._lock:
            keys = self._by_shopper.pop(shopper_id, set())
            for key in keys:
                self._items.pop(key, None)
            return len(keys)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._by_shopper.clear()

    def _drop(self, key: PageKey) -> None:
        self._items.pop(key, None)
        shopper = key[0]
        if isinstance(shopper, str):
            keys = self._by_shopper.get(shopper)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_shopper[shopper]
