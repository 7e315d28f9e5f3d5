"""A meeting's capture policy (the switch, the opt-outs, revocation), kept current within
one second for every source of capture: a bot's or WHIP session's tracks, a recorded file.

The switch and the opt-outs live in Redis (``pipeline.store.meetings``); every change is
published on the meeting's event channel, and this watcher re-reads the meeting the moment it
hears one. It also re-reads every ``poll`` seconds, so a message lost while the subscription
reconnects delays a change by at most that long. Until the first read succeeds, and whenever
the meeting or its tenant's key is gone, the answer is no: capture fails closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import redis.asyncio as aioredis

from pipeline import faults
from pipeline.aio import raise_if_cancelled
from pipeline.errors import NotFound, StoreUnavailable
from pipeline.models import Meeting
from pipeline.runtime import Runtime
from pipeline.store import schema
from pipeline.store.bots import LEAVE
from pipeline.store.connection import close_async, connect_async
from pipeline.store.meetings import MEETING_ENDED

__all__ = ["MeetingPolicy"]

log = logging.getLogger(__name__)

#: seconds to wait for the policy channel's connection to close
_CLOSE_TIMEOUT = 2.0
#: seconds one read of the policy channel waits for a message before reading again (also
#: how late a swallowed cancellation is honoured)
_READ_TIMEOUT = 1.0


class MeetingPolicy:
    def __init__(self, rt: Runtime, meeting: Meeting, poll: float = 2.0) -> None:
        self.rt = rt
        self.meeting = meeting
        self.revoked = rt.store.tenants.get(meeting.tenant_id).revoked
        self.ended = False
        self.poll = poll
        #: called (in the event loop) after every change of the switch, opt-outs or revocation
        self.on_change: list[Callable[[], None]] = []
        #: called when someone asked this meeting's bot to leave
        self.on_leave: list[Callable[[], None]] = []
        # One read at a time: a periodic read that began before a switch and returned after
        # the switch event's read would otherwise put the old answer back.
        self._reading = asyncio.Lock()

    @property
    def transcribing(self) -> bool:
        return self.meeting.transcription and not self.revoked and not self.ended

    def transcribes(self, participant: str) -> bool:
        return (
            not self.revoked
            and not self.ended
            and faults.permitted(self.meeting, "capture-ignores-policy").transcribes(participant)
        )

    async def refresh(self) -> None:
        async with self._reading:
            await self._refresh()

    async def _refresh(self) -> None:
        try:
            meeting, tenant = await asyncio.to_thread(self._read)
        except NotFound:
            self.ended = True  # deleted: capture nothing more
            self._changed()
            return
        except StoreUnavailable:
            return  # keep the last known policy; capture buffers only sealed segments
        before = (self.meeting, self.revoked)
        self.meeting, self.revoked = meeting, tenant
        if before != (meeting, tenant):
            self._changed()

    def _read(self) -> tuple[Meeting, bool]:
        meeting = self.rt.store.meetings.get(self.meeting.id)
        return meeting, self.rt.store.tenants.get(meeting.tenant_id).revoked

    def _changed(self) -> None:
        for callback in self.on_change:
            callback()

    async def watch(self) -> None:
        """Follow the meeting's channel until cancelled (reconnecting as needed)."""
        poller = asyncio.create_task(self._poll())
        try:
            while True:
                try:
                    await self._listen()
                except Exception as exc:  # never die: the channel is how capture hears a
                    # switch, an opt-out or a revocation at once (lost connection, a cluster
                    # failing over or not yet mapped, ...); the poller covers the gap
                    log.warning(
                        "policy channel of meeting %s lost (%s); resubscribing",
                        self.meeting.id,
                        type(exc).__name__,
                    )
                    await asyncio.sleep(1.0)
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller

    async def _listen(self) -> None:
        client = connect_async(self.rt.settings.redis_url, socket_connect_timeout=5)
        try:
            if isinstance(client, aioredis.RedisCluster):
                await client.initialize()  # its slots: the channel's node is the meeting's
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(schema.meeting_events(self.meeting.id))
                await self.refresh()  # anything that changed before we subscribed
                while True:
                    message = await pubsub.get_message(timeout=_READ_TIMEOUT)
                    raise_if_cancelled()  # else a capture might never stop
                    if message is not None and message.get("type") == "message":
                        await self._event(message["data"].decode(errors="replace"))
        finally:
            # bounded: a capture that cannot stop would never finish a file or leave a meeting
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_async(client), _CLOSE_TIMEOUT)

    async def _event(self, event: str) -> None:
        if event == LEAVE:
            for callback in self.on_leave:
                callback()
        elif event == MEETING_ENDED:
            self.ended = True
            self._changed()
        else:
            await self.refresh()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            await self.refresh()
