"""One meeting's capture while it runs: its policy watcher, sealer and sink, started and
stopped together; live rooms and recorded files both open one and hand it their utterances."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from pipeline.aio import cancel_all
from pipeline.capture.policy import MeetingPolicy
from pipeline.capture.sealer import Sealer
from pipeline.capture.sink import CaptureStats, Sink
from pipeline.errors import OURS
from pipeline.models import Meeting
from pipeline.runtime import Runtime

__all__ = ["CaptureSession"]

log = logging.getLogger(__name__)

#: seconds to wait for the policy watcher and the writer to stop
_STOP_TIMEOUT = 5.0


class CaptureSession:
    """The one path from utterances to sealed, stored, queued segments for ``meeting``.

    Args:
        rt: the runtime.
        meeting: the meeting as last read; the policy watcher keeps it current.
        wait_for_room: a source that can wait (a file) waits for backlog room instead of
            dropping (see :class:`~pipeline.capture.sink.Sink`).
        backlog_bytes: the sink's bound (default ``capture_backlog_mb``).
    """

    def __init__(
        self,
        rt: Runtime,
        meeting: Meeting,
        wait_for_room: bool = False,
        backlog_bytes: int | None = None,
    ) -> None:
        self.rt = rt
        self.policy = MeetingPolicy(rt, meeting)
        self.sink = Sink(rt, self.policy, backlog_bytes, wait_for_room)
        self.sealer = Sealer(rt, self.policy, self.sink)
        self._background: list[asyncio.Task[None]] = []

    @property
    def stats(self) -> CaptureStats:
        return self.sink.stats

    async def start(self) -> None:
        self._background = [
            asyncio.create_task(self.policy.watch()),
            asyncio.create_task(self.sink.writer()),
        ]

    async def close(self, drain_timeout: float = 10.0) -> None:
        """Store what is sealed (bounded wait), then stop watching and writing, then anchor
        the participants' manifests in the audit chain."""
        if self._background:
            await self.sink.drain(drain_timeout)
        await self.stop()
        try:
            await asyncio.to_thread(self.sink.anchor)
        except OURS as exc:  # verification then says the manifests' ends are not anchored
            log.warning(
                "meeting %s: could not anchor the manifests (%s)",
                self.sink.meeting_id,
                type(exc).__name__,
            )

    async def stop(self) -> None:
        """Stop watching and writing at once; what waits unstored is lost."""
        await cancel_all(self._background, _STOP_TIMEOUT)
        self._background = []

    async def __aenter__(self) -> CaptureSession:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await (self.stop() if exc is not None else self.close())
