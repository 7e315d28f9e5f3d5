"""Running the event loop of the processes that carry media (the bot service, the demo).

uvloop, where installed (it is a dependency on Linux and macOS), halves the event loop's own
cost per RTP packet; aiortc's receive path is dominated by it. ``sealscribe serve`` gets the
same from uvicorn, which picks uvloop by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

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
