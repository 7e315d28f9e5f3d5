"""Event-loop helpers: running the loop of the processes that carry media (the bot service,
the demo), and stopping tasks that a library may keep from stopping.

uvloop, where installed (it is a dependency on Linux and macOS), halves the event loop's own
cost per RTP packet; aiortc's receive path is dominated by it. ``sealscribe serve`` gets the
same from uvicorn, which picks uvloop by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["cancel_all", "loop_factory", "raise_if_cancelled", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def raise_if_cancelled() -> None:
    """Call after an await on redis-py: its asyncio client (8.1) sometimes swallows a
    cancellation that arrives during a blocking read, which then just returns; the task must
    honour the cancellation itself, or it never stops."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def cancel_all(tasks: list[asyncio.Task[Any]], timeout: float = 5.0) -> None:
    """Cancel ``tasks`` and wait for them at most ``timeout`` seconds: one stuck in a
    library's cleanup is left behind rather than keeping its owner from closing."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
