"""The room's chat through Janus's TextRoom plugin: where the bot posts its written notices
and hears participants' own consent commands.

This module owns the TextRoom protocol, and nothing about consent: attaching a
``janus.plugin.textroom`` handle on the connector's session, answering Janus's offer with an
aiortc peer connection that carries one data channel (no media), joining the text room under
a unique username with the display name "sealscribe", keeping the list of who is in it
(username -> display name), posting messages (to everyone, or a whisper to one), and handing
every message someone else posts to ``on_message``. Requests over the data channel are
matched to Janus's answers by transaction. Janus's candidates pass the egress policy, as for
the VideoRoom.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from pipeline.bot.connectors.janus.session import (
    CLOSE_TIMEOUT,
    JanusError,
    JanusSession,
    JanusUnavailable,
)
from pipeline.capture.ice import rtc_configuration
from pipeline.egress import EgressPolicy, filter_candidates

__all__ = ["TEXTROOM", "ChatMessage", "TextRoom", "TextRoomRefused"]

log = logging.getLogger(__name__)

TEXTROOM = "janus.plugin.textroom"
DISPLAY = "sealscribe"
#: seconds for the data channel to open and for an answer over it
CHANNEL_TIMEOUT = 10.0
#: the longest message the bot reads (a command is a few characters)
MAX_TEXT = 500

# TextRoom error codes (plugins/janus_textroom.c)
_NO_SUCH_ROOM = 417
_UNAUTHORIZED = 419


@dataclass(frozen=True)
class ChatMessage:
    """A message someone else posted: their username, their display name, the text."""

    username: str
    display: str
    text: str
    whisper: bool = False


class TextRoomRefused(JanusError):
    """The text room does not exist, or refused the pin."""


class TextRoom:
    """The bot in one Janus text room, over the connector's session.

    Args:
        session: the connector's Janus session.
        room: the text room's numeric id.
        pin: its pin, if it has one.
        on_message: called (on the event loop) with each message someone else posts.
        policy: where ICE checks may go (Janus's candidates).
        display: the name shown in the room ("sealscribe" for the bot).
        history: whether to be sent the messages posted before joining (if the room keeps
            any).
    """

    def __init__(
        self,
        session: JanusSession,
        room: int,
        pin: str | None,
        on_message: Callable[[ChatMessage], None],
        policy: EgressPolicy | None = None,
        display: str = DISPLAY,
        history: bool = False,
    ) -> None:
        self.session = session
        self.room = room
        self.pin = pin
        self.on_message = on_message
        self.policy = policy
        self.display = display
        self.history = history
        self.username = f"{display.lower().replace(' ', '-')[:32]}-{secrets.token_hex(4)}"
        #: who is in the room: username -> display name
        self.people: dict[str, str] = {}
        self._handle: int | None = None
        self._pc: RTCPeerConnection | None = None
        self._channel: RTCDataChannel | None = None
        self._open = asyncio.Event()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def open(self) -> None:
        """Set up the data channel and join the room.

        Raises:
            TextRoomRefused: no such text room, or a wrong pin.
            JanusUnavailable: Janus did not set up the channel in time.
        """
        self._handle = handle = await self.session.attach(TEXTROOM)
        _, offer = await self.session.message(handle, {"request": "setup"})
        if offer is None or offer.get("type") != "offer" or "sdp" not in offer:
            raise JanusUnavailable(f"Janus at {self.session.where} sent no text room offer")
        self._pc = pc = RTCPeerConnection(rtc_configuration())
        pc.on("datachannel", self._bind)
        sdp = filter_candidates(str(offer["sdp"]), self.policy)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._bind(pc.createDataChannel("JanusDataChannel"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.session.message(
            handle, {"request": "ack"}, jsep={"type": "answer", "sdp": pc.localDescription.sdp}
        )
        await self.session.trickle_completed(handle)
        try:
            await asyncio.wait_for(self._open.wait(), CHANNEL_TIMEOUT)
        except TimeoutError:
            raise JanusUnavailable(
                f"the text room's data channel to Janus at {self.session.where} did not open"
            ) from None
        join: dict[str, Any] = {
            "textroom": "join",
            "room": self.room,
            "username": self.username,
            "display": self.display,
            "history": self.history,
        }
        if self.pin is not None:
            join["pin"] = self.pin
        answer = await self._request(join)
        for person in answer.get("participants") or []:
            if isinstance(person, dict) and isinstance(person.get("username"), str):
                self.people[person["username"]] = _display(person)

    async def say(self, text: str, to: str | None = None) -> None:
        """Post ``text`` to the room, or whisper it to the user ``to``."""
        message: dict[str, Any] = {"textroom": "message", "room": self.room, "text": text}
        if to is not None:
            message["to"] = to
        await self._request(message)

    async def close(self) -> None:
        """Leave the room and release the data channel (bounded, best effort)."""
        if self._channel is not None and self._open.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self._request({"textroom": "leave", "room": self.room}), CLOSE_TIMEOUT
                )
        for future in self._pending.values():
            if not future.done():
                future.cancel()
        pc, self._pc = self._pc, None
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(JanusError, JanusUnavailable, TimeoutError):
                await asyncio.wait_for(self.session.detach(handle), CLOSE_TIMEOUT)

    # -- the data channel ----------------------------------------------------------------

    def _bind(self, channel: RTCDataChannel) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            return
        self._channel = channel
        channel.on("open", self._open.set)
        channel.on("message", self._received)
        if channel.readyState == "open":
            self._open.set()

    async def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            raise JanusUnavailable(f"the text room's data channel to {self.session.where} closed")
        transaction = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        try:
            channel.send(json.dumps({**body, "transaction": transaction}))
            answer = await asyncio.wait_for(future, CHANNEL_TIMEOUT)
        except TimeoutError:
            raise JanusUnavailable(
                f"Janus at {self.session.where} did not answer in the text room"
            ) from None
        finally:
            self._pending.pop(transaction, None)
        if answer.get("textroom") == "error":
            code = int(answer.get("error_code") or 0)
            request = str(body.get("textroom"))
            if code in (_NO_SUCH_ROOM, _UNAUTHORIZED):
                raise TextRoomRefused(code, request, str(answer.get("error") or ""))
            raise JanusError(code, request, str(answer.get("error") or ""))
        return answer

    def _received(self, raw: object) -> None:
        if not isinstance(raw, str) or len(raw) > 64 * 1024:
            return
        try:
            event = json.loads(raw)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        future = self._pending.get(str(event.get("transaction", "")))
        if future is not None and not future.done():
            future.set_result(event)
            return
        kind = event.get("textroom")
        if kind == "join" and isinstance(event.get("username"), str):
            self.people[event["username"]] = _display(event)
        elif kind == "leave" and isinstance(event.get("username"), str):
            self.people.pop(event["username"], None)
        elif kind == "message":
            sender, text = event.get("from"), event.get("text")
            if not isinstance(sender, str) or not isinstance(text, str) or sender == self.username:
                return
            message = ChatMessage(
                sender,
                self.people.get(sender, sender),
                text[:MAX_TEXT],
                bool(event.get("whisper")),
            )
            try:
                self.on_message(message)
            except Exception as exc:  # a handler's bug must not stop the room's chat
                log.error("a text room message could not be handled (%s)", type(exc).__name__)


def _display(person: dict[str, Any]) -> str:
    display = person.get("display")
    if isinstance(display, str) and display.strip():
        return display.strip()
    return str(person.get("username", ""))
