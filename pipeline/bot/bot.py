"""One meeting's bot: joins through its connector, reconnects with backoff, reports state.

States (``pipeline.models.BotState``) are written to Redis as they change, with a reason for
``reconnecting`` and ``failed``. A refusal that retrying cannot fix (wrong pin, no such room)
fails at once. Losing the meeting server is retried with exponential backoff: a first join
gives up after ``join_attempts`` tries, while a bot that was already in the meeting keeps
trying (a server restart) until it is called back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline import faults
from pipeline.audio import announce
from pipeline.bot import notices
from pipeline.bot.connectors import Connector, JoinRejected, connector_for
from pipeline.capture.room import MeetingRoom, participant_label
from pipeline.errors import OURS, InvalidInput, NotFound
from pipeline.models import BotState
from pipeline.runtime import Runtime
from pipeline.services import webhooks

__all__ = ["Bot"]

log = logging.getLogger(__name__)

#: webhook events about bots leave through this one thread: a meeting's states keep their
#: order, and a slow broker never stalls the event loop that carries the audio
_EVENTS = ThreadPoolExecutor(1, thread_name_prefix="bot-webhooks")


class Bot:
    def __init__(
        self,
        rt: Runtime,
        meeting_id: str,
        url: str,
        *,
        join_attempts: int = 5,
        max_backoff: float = 30.0,
        connector_for: Callable[[str], Connector] = connector_for,
    ) -> None:
        self.rt = rt
        self.connector_for = connector_for
        self.meeting_id = meeting_id
        self.url = url
        self.join_attempts = join_attempts
        self.max_backoff = max_backoff
        self.state = BotState.REQUESTED
        self.room: MeetingRoom | None = None
        self._connector: Connector | None = None
        self._leave = asyncio.Event()
        self._ever_joined = False
        self._attempt = 0
        self._lost_at: float | None = None  # when the bot last lost the meeting
        #: seconds spent out of the meeting between joins (reconnect gaps)
        self.gaps: list[float] = []
        #: set when the bot service stops: the meeting stays wanted for another service
        self.handoff = False
        #: what the room was last told: (transcription, consent mode, opted out, opted in)
        self._told: notices.Told | None = None
        self._notices: set[asyncio.Task[None]] = set()

    def leave(self) -> None:
        self._leave.set()

    def _set(self, state: BotState, reason: str = "") -> None:
        self.state = state
        participants = self.room.participants if self.room is not None else []
        try:
            self.rt.store.bots.set_state(self.meeting_id, state, reason, participants)
        except OURS:
            log.warning(
                "could not record bot state %s for meeting %s", state.value, self.meeting_id
            )
        else:
            _EVENTS.submit(
                webhooks.bot_state_changed, self.rt, self.meeting_id, state.value, reason
            )

    def _participants(self, names: list[str]) -> None:
        with contextlib.suppress(*OURS):
            self.rt.store.bots.set_participants(self.meeting_id, names)

    def _joined(self) -> None:
        if self._lost_at is not None:
            self.gaps.append(time.monotonic() - self._lost_at)
            self._lost_at = None
        self._ever_joined = True
        self._attempt = 0
        gap = f"rejoined after a {self.gaps[-1]:.1f} s gap" if self.gaps else ""
        self._set(BotState.IN_MEETING, gap)
        self._announce()
        self._told = None
        self._policy_notices()  # what the room is told from now on is measured from here
        self._notice(notices.joined(self.room.policy.meeting) if self.room else None, "join")

    def _leave_if_ended(self) -> None:
        if self.room is not None and self.room.policy.ended:
            self._leave.set()

    def _announce(self) -> None:
        connector, room = self._connector, self.room
        if connector is not None and room is not None:
            task = asyncio.ensure_future(connector.announce(room.policy.transcribing))
            task.add_done_callback(_log_failure)

    def _policy_notices(self) -> None:
        """Tell the room's chat what changed: the switch, the consent mode, each consent."""
        if self.room is None:
            return
        meeting = self.room.policy.meeting
        now = (meeting.transcription, meeting.consent_mode, meeting.opted_out, meeting.opted_in)
        before, self._told = self._told, now
        if before is None:
            return
        for kind, text in notices.changes(before, now):
            self._notice(text, kind)

    def _notice(self, text: str | None, kind: str) -> None:
        """Tell the room, in its chat (if it has one) and, for joining and the switch, aloud."""
        connector = self._connector
        if connector is None:
            return
        if text is not None and connector.has_chat:
            self._background(self._post(connector, text, kind))
        if kind in announce.KINDS:
            self._background(self._say(connector, kind))

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)
        task.add_done_callback(_log_failure)  # a notice that failed is logged, not lost silently

    async def _post(self, connector: Connector, text: str, kind: str) -> None:
        if await connector.notify(text):
            await asyncio.to_thread(notices.record, self.rt, self.meeting_id, "text", kind)

    async def _say(self, connector: Connector, kind: str) -> None:
        pcm = await asyncio.to_thread(notices.announcement, self.rt, self.meeting_id, kind)
        if await connector.speak(pcm):
            await asyncio.to_thread(notices.record, self.rt, self.meeting_id, "voice", kind)

    async def _command(self, display: str, text: str) -> str | None:
        """A participant's own chat command, applied to themselves (their display name is
        their participant id, as for their audio)."""
        return await asyncio.to_thread(
            notices.command, self.rt, self.meeting_id, participant_label(display), text
        )

    async def run(self) -> BotState:
        """Run until called back, the meeting ends, or joining fails for good."""
        try:
            connector = self.connector_for(self.url)
        except InvalidInput as exc:
            self._set(BotState.FAILED, str(exc))
            return self.state
        try:
            meeting = await asyncio.to_thread(self.rt.store.meetings.get, self.meeting_id)
        except NotFound:
            self._set(BotState.FAILED, f"meeting {self.meeting_id} no longer exists")
            return self.state
        self.room = room = MeetingRoom(self.rt, meeting, on_participants=self._participants)
        room.on_joined = self._joined
        room.policy.on_leave.append(self._leave.set)
        room.policy.on_change.append(self._announce)
        room.policy.on_change.append(self._policy_notices)
        room.policy.on_change.append(self._leave_if_ended)
        await room.start()
        final, reason = BotState.LEFT, "called back"
        cause = ""
        try:
            while not self._leave.is_set():
                self._connector = connector
                connector.on_command = self._command
                if not self._attempt:
                    self._set(BotState.RECONNECTING if self._ever_joined else BotState.JOINING)
                else:  # keep saying why: retrying is still reconnecting
                    self._set(BotState.RECONNECTING, f"{cause}; attempt {self._attempt + 1}")
                outcome = await self._run_once(connector)
                await connector.close()
                if self._leave.is_set():
                    break
                if outcome is None:
                    reason = "the meeting ended"
                    break
                if isinstance(outcome, JoinRejected):
                    final, reason = BotState.FAILED, str(outcome)
                    break
                if faults.on("bot-gives-up"):
                    final, reason = BotState.FAILED, _describe(outcome)
                    break
                self._attempt += 1
                if self._ever_joined and self._lost_at is None:
                    self._lost_at = time.monotonic()
                cause = _describe(outcome)
                if not self._ever_joined and self._attempt >= self.join_attempts:
                    final, reason = (
                        BotState.FAILED,
                        f"{cause} (gave up after {self._attempt} attempts)",
                    )
                    break
                delay = min(self.max_backoff, 0.5 * 2 ** (self._attempt - 1))
                self._set(BotState.RECONNECTING, f"{cause}; retrying in {delay:.1f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._leave.wait(), delay)
                connector = self.connector_for(self.url)
        finally:
            with contextlib.suppress(Exception):
                await connector.close()
            await room.close()
        if room.policy.ended and final is BotState.LEFT:
            reason = "the meeting was deleted"
        if self.handoff and final is BotState.LEFT:
            final, reason = BotState.RECONNECTING, "its bot service stopped; another takes over"
        self._set(final, reason)
        return final

    async def _run_once(self, connector: Connector) -> BaseException | None:
        """One connection: None if the meeting ended, else what interrupted it."""
        assert self.room is not None
        run = asyncio.create_task(connector.run(self.room))
        leave = asyncio.create_task(self._leave.wait())
        try:
            await asyncio.wait({run, leave}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            leave.cancel()
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run
            return None
        if run.cancelled():
            return asyncio.CancelledError()
        return run.exception()


def _describe(exc: BaseException) -> str:
    """A reason for the bot's state: our messages are written to be shown; for anything
    else only the type is shown (a library message could carry more than it should)."""
    if isinstance(exc, (*OURS, ConnectionError)) and str(exc):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "the meeting server did not answer in time"
    return f"connection lost ({type(exc).__name__})"


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning(
            "could not tell the meeting (display name, chat notice or announcement): %s",
            type(task.exception()).__name__,
        )
