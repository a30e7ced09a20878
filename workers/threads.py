"""Store calls off the event loop: a scoring process keeps judging while SQLite waits for
another process's write, and a write in a thread is seen through to its end."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

__all__ = ["finish_in_thread", "submit"]

T = TypeVar("T")


def submit(fn: Callable[..., T], *args: object, executor: Executor | None = None) -> asyncio.Future[T]:
    """``fn(*args)`` in ``executor`` (the loop's default: None), in a copy of this context."""
    ctx = contextvars.copy_context()
    return asyncio.get_running_loop().run_in_executor(executor, ctx.run, fn, *args)


async def finish_in_thread(fn: Callable[..., T], *args: object, executor: Executor | None = None) -> T:
    """``fn(*args)`` in a thread. A thread cannot be stopped: a caller cancelled meanwhile
    waits for it to end before the cancellation goes on, so what follows (a batch's end, a
    retry of the same write) never races a write still under way."""
    future = submit(fn, *args, executor=executor)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise
