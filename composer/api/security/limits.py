"""Rate limits: at most N units per key in each window, else 429 with ``Retry-After``.

Hand-written rather than Litestar's ``RateLimitMiddleware``: that keys each app on one
identifier taken before the body is read (a shopper id is in the body), counts requests
rather than the events a request carries, and sends no ``Retry-After``.
"""

from __future__ import annotations

import math
import threading
import time

from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_429_TOO_MANY_REQUESTS

# Windows kept at most; the oldest are forgotten (a forgotten key starts afresh).
MAX_KEYS = 100_000


class TooManyRequests(HTTPException):
    status_code = HTTP_429_TOO_MANY_REQUESTS

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail=detail, headers={"Retry-After": str(retry_after_s)})


class WindowLimiter:
    """Fixed windows of ``window_s`` seconds, ``limit`` units per key in each."""

    def __init__(self, what: str, limit: int, window_s: float = 60.0) -> None:
        self.what = what
        self.limit = limit
        self.window_s = window_s
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, units: int = 1, now: float | None = None) -> None:
        """Count ``units`` against ``key``; :class:`TooManyRequests` (nothing counted) when
        they do not fit in this window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            start, used = self._windows.get(key, (now, 0))
            if now - start >= self.window_s:
                start, used = now, 0
            if used + units > self.limit:
                retry = max(1, math.ceil(start + self.window_s - now))
                raise TooManyRequests(
                    f"{self.what}: at most {self.limit} per {self.window_s:g} s; "
                    f"retry in {retry} s",
                    retry,
                )
            self._windows.pop(key, None)  # re-inserted last: the dict stays in age order
            self._windows[key] = (start, used + units)
            if len(self._windows) > MAX_KEYS:
                del self._windows[next(iter(self._windows))]
