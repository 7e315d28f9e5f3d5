"""``sealscribe bots``: the process that runs bots.

It takes meeting ids from the join queue, and on start (and every few seconds) every meeting
that still wants a bot and that no live bot service holds: a lease per meeting, renewed while
its bot runs, makes sure exactly one service runs each bot, and that a bot service that dies
has its meetings picked up by another (or by itself, restarted) within one lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable

from pipeline.bot.bot import Bot
from pipeline.bot.connectors import Connector, connector_for
from pipeline.capture.ice import configure_ice
from pipeline.errors import OURS, NotFound, StoreUnavailable
from pipeline.models import BotState
from pipeline.runtime import Runtime
from pipeline.services import webhooks
from pipeline.services.bots import open_join_url

__all__ = ["BotService"]

log = logging.getLogger(__name__)


class BotService:
    def __init__(
        self,
        rt: Runtime,
        max_bots: int = 50,
        lease: float = 15.0,
        rescan: float = 5.0,
        connector_for: Callable[[str], Connector] = connector_for,
    ) -> None:
        self.rt = rt
        self.connector_for = connector_for
        self.max_bots = max_bots
        self.lease = lease
        self.rescan = rescan
        self.owner = f"bots:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.bots: dict[str, tuple[Bot, asyncio.Task[BotState]]] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        if self.rt.settings.ice_hosts:
            configure_ice(self.rt.settings.ice_hosts)
        maintenance = asyncio.create_task(self._maintain())
        try:
            while not self._stopping.is_set():
                try:
                    meeting_id = await asyncio.to_thread(self.rt.store.bots.next_request, 1.0)
                except StoreUnavailable:
                    await asyncio.sleep(1.0)
                    continue
                if meeting_id is not None:
                    await self._maybe_start(meeting_id)
        finally:
            maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await maintenance
            await self._shutdown()

    async def _maybe_start(self, meeting_id: str) -> None:
        if meeting_id in self.bots or len(self.bots) >= self.max_bots:
            return  # a full service leaves it wanted: another service (or a rescan) takes it
        store = self.rt.store.bots
        try:
            if not await asyncio.to_thread(store.wanted, meeting_id):
                return
            if not await asyncio.to_thread(store.claim, meeting_id, self.owner, self.lease):
                return  # another bot service runs it
            sealed = await asyncio.to_thread(store.target, meeting_id)
        except StoreUnavailable:
            return
        url = None if sealed is None else await self._open_target(meeting_id, sealed)
        if url is None:
            await asyncio.to_thread(store.release, meeting_id, self.owner)
            return
        bot = Bot(self.rt, meeting_id, url, connector_for=self.connector_for)
        task = asyncio.create_task(bot.run())
        self.bots[meeting_id] = (bot, task)
        log.info("bot for meeting %s started", meeting_id)

    async def _open_target(self, meeting_id: str, sealed: bytes) -> str | None:
        """The meeting's join URL, opened here only (it is sealed in Redis); None, with the
        bot failed and the reason recorded, if it cannot be opened."""
        rt = self.rt
        try:
            meeting = await asyncio.to_thread(rt.store.meetings.get, meeting_id)
            return await asyncio.to_thread(open_join_url, rt, meeting, sealed)
        except StoreUnavailable:
            return None  # still wanted: a rescan tries again
        except OURS as exc:  # InvalidSeal (a key error) among them
            reason = (
                f"meeting {meeting_id} no longer exists"
                if isinstance(exc, NotFound)
                else f"the join URL could not be opened ({type(exc).__name__})"
            )
            with contextlib.suppress(*OURS):
                await asyncio.to_thread(
                    rt.store.bots.set_state, meeting_id, BotState.FAILED, reason
                )
                await asyncio.to_thread(
                    webhooks.bot_state_changed, rt, meeting_id, BotState.FAILED.value, reason
                )
            return None

    async def _maintain(self) -> None:
        """Renew leases, reap finished bots, stop those called back, pick up orphaned
        meetings."""
        while True:
            await asyncio.sleep(min(self.rescan, self.lease / 3))
            store = self.rt.store.bots
            try:
                wanted = await asyncio.to_thread(store.all_wanted)
            except StoreUnavailable:
                wanted = None
            for meeting_id, (bot, task) in list(self.bots.items()):
                if task.done():
                    del self.bots[meeting_id]
                    with contextlib.suppress(*OURS):
                        await asyncio.to_thread(store.release, meeting_id, self.owner)
                    continue
                try:
                    held = await asyncio.to_thread(store.renew, meeting_id, self.owner, self.lease)
                except StoreUnavailable:
                    continue  # keep running; the lease outlives a short outage
                if not held:
                    log.warning("lost the lease of meeting %s; stopping its bot", meeting_id)
                    bot.leave()
                elif wanted is not None and meeting_id not in wanted:
                    # called back while the bot was starting, before its room listened
                    # for the call (pub/sub delivers only to those listening)
                    bot.leave()
            if wanted is None:
                continue
            for meeting_id in wanted:
                await self._maybe_start(meeting_id)

    async def _shutdown(self) -> None:
        """Stop every bot but leave its meeting wanted, so another service takes over."""
        for bot, _task in self.bots.values():
            bot.handoff = True
            bot.leave()
        for meeting_id, (_bot, task) in list(self.bots.items()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(*OURS):
                self.rt.store.bots.release(meeting_id, self.owner)
        self.bots.clear()
