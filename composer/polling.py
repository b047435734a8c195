"""A background thread that does one thing every few seconds until stopped (model versions,
experiment files): a round that fails is logged and the next one runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("composer")


class Poller:
    def __init__(self, name: str, interval_s: float, tick: Callable[[], object], what: str):
        self.name = name
        self.interval_s = interval_s
        self.tick = tick
        self.what = what  # says in the log what failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # the next round may find it fixed (a store back, a file)
                log.exception(f"{self.what} failed")
