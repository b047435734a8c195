"""Several server processes on one port, each with its own listening socket (SO_REUSEPORT).

uvicorn's own ``--workers`` shares one listening socket between its workers. A client that
keeps its connections open (a storefront's connection pool, `composer bench api`) opens them
in a burst, and the worker that wakes first accepts all of them: measured at concurrency 16
with two workers, every page was made by the same worker while the other sat idle. Here
each worker binds the port itself with ``SO_REUSEPORT`` and the kernel spreads new
connections over the workers' sockets; :mod:`composer.api.balance` evens out the spread that
the kernel's hash leaves uneven.

The supervisor starts the workers, restarts one that dies, and stops them all on SIGINT or
SIGTERM (each shuts down gracefully, as uvicorn does). A worker that cannot start (the port
is taken, the settings are wrong) stops the whole server instead of being restarted forever.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from typing import Any

from composer.api.balance import LoadShare, SharedCounts, balanced

log = logging.getLogger("composer.api")

STARTUP_FAILURE = 3  # uvicorn's exit code for a worker that could not start
STARTUP_GRACE_S = 30.0  # a worker gone sooner than this after its start could not start
STOP_TIMEOUT_S = 30.0


def worker_socket(host: str, port: int) -> socket.socket:
    """A listening socket of its own for one worker, sharing the port with the others."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(options: dict[str, Any], counts: SharedCounts, index: int) -> None:
    """One worker process (spawned): its socket, then uvicorn over the app factory, with
    this worker's open connections published in ``counts[index]``
    (see :mod:`composer.api.balance`)."""
    import uvicorn

    from composer.api.factory import app_from_env
    from composer.api.logs import configure_logging

    configure_logging(options["log_level"].upper())
    try:
        sock = worker_socket(options["host"], options["port"])
    except OSError as exc:
        log.error(
            "cannot listen on the port",
            extra={"host": options["host"], "port": options["port"], "error": str(exc)},
        )
        sys.exit(STARTUP_FAILURE)
    server: uvicorn.Server | None = None
    share = LoadShare(counts, index, lambda: len(server.server_state.connections) if server else 0)
    config = uvicorn.Config(lambda: balanced(app_from_env(), share), factory=True, **options)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])


class Supervisor:
    def __init__(self, workers: int, options: dict[str, Any]) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.options = options
        self._context = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self._processes: list[tuple[BaseProcess, float]] = []
        self._counts = self._context.Array("i", workers)

    def _start(self, index: int) -> tuple[BaseProcess, float]:
        process = self._context.Process(target=run_worker, args=(self.options, self._counts, index))
        process.start()
        return process, time.monotonic()

    def run(self) -> int:
        """Serve until SIGINT or SIGTERM; 0 after a clean stop, 1 if a worker could not start."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self._stop.set())
        where = {"host": self.options["host"], "port": self.options["port"]}
        log.info("starting workers", extra={"workers": self.workers, **where})
        self._processes = [self._start(n) for n in range(self.workers)]
        code = 0
        while not self._stop.wait(0.5):
            for n, (process, started) in enumerate(self._processes):
                if process.is_alive():
                    continue
                early = time.monotonic() - started < STARTUP_GRACE_S
                if process.exitcode == STARTUP_FAILURE or early:
                    log.error(
                        "worker could not start; stopping the server",
                        extra={"worker_pid": process.pid, "exitcode": process.exitcode},
                    )
                    self._stop.set()
                    code = 1
                    break
                log.warning(
                    "worker died; starting another",
                    extra={"worker_pid": process.pid, "exitcode": process.exitcode},
                )
                self._processes[n] = self._start(n)
        self._stop_all()
        return code

    def _stop_all(self) -> None:
        for process, _ in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes its requests, then exits
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process, _ in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker did not stop in time", extra={"worker_pid": process.pid})
                process.kill()
                process.join()
