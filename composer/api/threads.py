"""Work handed from the event loop to a worker thread, carrying the request's context (the
log fields of :mod:`composer.api.logs` live in context variables)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

T = TypeVar("T")


def submit(executor: Executor, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """``fn(*args)`` running in ``executor`` with this request's context; its future."""
    ctx = contextvars.copy_context()
    return asyncio.get_running_loop().run_in_executor(executor, ctx.run, fn, *args)


async def in_thread(executor: Executor, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in ``executor``; the loop only awaits."""
    return await submit(executor, fn, *args)
