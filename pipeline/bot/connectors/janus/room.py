"""What every Janus room connector shares: one session, the bot's own handle in the room, the
room's chat, the bot's display name, ending and tearing down.

:class:`JanusRoom` runs a join (:meth:`JanusRoom._join`, the plugin's own) over one
:class:`~.session.JanusSession` until the room ends, the bot is told to leave, or the session
is lost; it shows the transcription state in the bot's display name (the plugin's
``configure`` with ``display``), posts notices to the room's TextRoom and hears chat
commands there, and maps Janus's core error codes. The plugin connectors
(:mod:`.videoroom`, :mod:`.audiobridge`) add their media and their plugin's error codes.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from typing import Any, Self

from pipeline.bot.connectors.base import CommandHandler, Connector, JoinRejected, ParticipantSink
from pipeline.bot.connectors.janus.address import JanusAddress, parse_janus_url
from pipeline.bot.connectors.janus.session import (
    CLOSE_TIMEOUT,
    JanusError,
    JanusSession,
    JanusUnavailable,
)
from pipeline.bot.connectors.janus.textroom import ChatMessage, TextRoom, TextRoomRefused
from pipeline.egress import EgressPolicy
from pipeline.errors import InvalidInput, SealscribeError

__all__ = ["DISPLAY", "DISPLAY_TRANSCRIBING", "JanusRoom", "display_label"]

log = logging.getLogger(__name__)

DISPLAY = "sealscribe"
DISPLAY_TRANSCRIBING = "sealscribe (transcribing)"

# Janus core error codes (janus/apierror.h) and the TextRoom's (plugins/janus_textroom.c).
_UNAUTHORIZED = 403
_SESSION_NOT_FOUND = 458
_HANDLE_NOT_FOUND = 459
_PLUGIN_NOT_FOUND = 460
_TEXTROOM_UNAUTHORIZED = 419


class JanusRoom(Connector):
    """Joins one room of a Janus plugin; subclasses say how (:meth:`_join`) and what media
    they take.

    Args:
        address: the parsed join URL (see :meth:`from_url`).
        policy: where the connector may connect (the Janus server) and send ICE checks
            (the candidates in Janus's SDP); default: the process's egress policy.

    ``close()`` is final: it ends a ``run()`` in progress (which then returns normally), and
    a later ``run()`` returns at once, so a bot told to leave cannot rejoin by a retry.
    """

    #: the plugin's name in the Janus API, and as people know it
    plugin: str
    plugin_name: str

    def __init__(self, address: JanusAddress, policy: EgressPolicy | None = None) -> None:
        self.address = address
        self.policy = policy
        self._transcribing = False
        self._closed = False
        self._session: JanusSession | None = None
        self._handle: int | None = None
        self._joined = False
        self._joined_as = DISPLAY
        self._sink: ParticipantSink | None = None
        self._ended: asyncio.Future[None] | None = None
        self._announce_lock = asyncio.Lock()
        self._teardown: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        #: the room's chat, when the join URL names a text room
        self._chat: TextRoom | None = None

    @classmethod
    def from_url(cls, url: str) -> Self:
        """A connector for its join URL (``janus://`` or ``janus-audiobridge://``).

        Raises:
            InvalidInput: the URL is malformed (the message never contains pin or secret).
        """
        address = parse_janus_url(url)
        if address.scheme != cls.scheme:
            raise InvalidInput(f"invalid Janus URL: this connector takes {cls.scheme}:// URLs")
        return cls(address)

    def describe(self) -> str:
        return self.address.describe()

    @property
    def display_name(self) -> str:
        """What the room shows for the bot now."""
        return DISPLAY_TRANSCRIBING if self._transcribing else DISPLAY

    # -- Connector ------------------------------------------------------------------------

    async def run(self, sink: ParticipantSink) -> None:
        """Join the room and deliver audio until the room is destroyed or :meth:`close`.

        Raises:
            JoinRejected: no such room, Janus refused the pin or the API secret, or the
                server has no such plugin.
            JanusUnavailable: Janus is unreachable, lost the session, or the media failed;
                retry with backoff.
        """
        if self._closed:
            return
        if self._ended is not None and not self._ended.done():
            raise RuntimeError(f"{type(self).__name__}.run is already running")
        self._sink = sink
        self._ended = asyncio.get_running_loop().create_future()
        self._teardown = None
        self._joined = False
        session = JanusSession(
            self.address, on_event=self._on_event, on_lost=self._on_lost, policy=self.policy
        )
        self._session = session
        try:
            await session.create()
            await self._join(session, sink)
            await self._ended
        except JanusError as exc:
            if self._closed:
                return
            raise self._translate(exc) from None
        except JanusUnavailable:
            if self._closed:
                return
            raise
        finally:
            await asyncio.shield(self._stop())

    async def announce(self, transcribing: bool) -> None:
        """Show "sealscribe (transcribing)" or "sealscribe" to the room, now if joined and
        at every later join. If Janus does not take the new name, the run ends with
        :class:`JanusUnavailable` so that the rejoin shows the right one."""
        self._transcribing = transcribing
        if self._joined:
            await self._show_display_name()

    async def _show_display_name(self) -> None:
        async with self._announce_lock:
            session, handle = self._session, self._handle
            if session is None or handle is None or self._ended is None or self._ended.done():
                return
            try:
                await session.message(
                    handle, {"request": "configure", "display": self.display_name}
                )
            except (JanusError, JanusUnavailable) as exc:
                log.warning(
                    "could not show the transcription state in %s: %s", self.describe(), exc
                )
                self._end(
                    JanusUnavailable(
                        f"Janus at {self.address.netloc} did not take the bot's new display name"
                    )
                )

    @property
    def has_chat(self) -> bool:
        return self.address.textroom is not None

    async def notify(self, text: str) -> bool:
        """Post ``text`` to the room's text room, if the join URL names one and it is open."""
        chat = self._chat
        if chat is None:
            return False
        try:
            await chat.say(text)
        except (JanusError, JanusUnavailable) as exc:
            log.warning("could not post a notice to %s: %s", self.describe(), exc)
            return False
        return True

    def _chat_message(self, message: ChatMessage) -> None:
        """A participant wrote in the chat: a command (``/...``) is answered, to them alone."""
        if not message.text.startswith("/") or self.on_command is None:
            return
        self._spawn(self._answer(message, self.on_command))

    async def _answer(self, message: ChatMessage, handler: CommandHandler) -> None:
        reply = await handler(message.display, message.text.strip())
        chat = self._chat
        if reply is not None and chat is not None:
            with contextlib.suppress(JanusError, JanusUnavailable):
                await chat.say(reply, to=message.username)

    async def close(self) -> None:
        """Leave the room, close every peer connection, destroy the session. Final."""
        self._closed = True
        self._end(None)
        await asyncio.shield(self._stop())

    # -- joining and leaving -------------------------------------------------------------

    @abc.abstractmethod
    async def _join(self, session: JanusSession, sink: ParticipantSink) -> None:
        """Join the room on a handle of the plugin (set ``self._handle``), then set up the
        media; call :meth:`_entered` once in the room."""

    async def _entered(self, session: JanusSession, sink: ParticipantSink) -> None:
        """The bot is in the room: show the right name, open the chat, tell the sink."""
        self._joined = True
        log.info("joined %s", self.describe())
        await self._show_display_name_if_changed()
        if self.address.textroom is not None:
            await self._open_chat(session, self.address.textroom)
        joined = getattr(sink, "joined", None)
        if callable(joined):
            joined()

    async def _show_display_name_if_changed(self) -> None:
        if self.display_name != self._joined_as:  # announce() came while joining
            await self._show_display_name()

    def _join_body(self, **extra: Any) -> dict[str, Any]:
        """The plugin's join request under the bot's display name (and the pin)."""
        self._joined_as = self.display_name
        body: dict[str, Any] = {
            "request": "join",
            "room": self.address.room,
            "display": self._joined_as,
            **extra,
        }
        if self.address.pin is not None:
            body["pin"] = self.address.pin
        return body

    async def _open_chat(self, session: JanusSession, room: int) -> None:
        chat = TextRoom(session, room, self.address.pin, self._chat_message, self.policy)
        self._chat = chat
        try:
            await chat.open()
        except TextRoomRefused as exc:
            if exc.code == _TEXTROOM_UNAUTHORIZED:
                raise JoinRejected(f"Janus refused the pin for text room {room}") from None
            raise JoinRejected(f"Janus text room {room} does not exist") from None

    def _translate(self, exc: JanusError) -> SealscribeError:
        """Janus's error as what the bot does next: give up, or retry with backoff."""
        where = self.address.netloc
        mapped = self._room_error(exc)
        if mapped is not None:
            return mapped
        if exc.code == _PLUGIN_NOT_FOUND:
            return JoinRejected(f"Janus at {where} has no {self.plugin_name} plugin")
        if exc.code == _UNAUTHORIZED:
            if self.address.secret is None:
                return JoinRejected(f"Janus at {where} needs an API secret (add ?secret=...)")
            return JoinRejected(f"Janus at {where} refused the API secret")
        if exc.code in (_SESSION_NOT_FOUND, _HANDLE_NOT_FOUND):
            return JanusUnavailable(f"Janus at {where} lost our session")
        return JanusUnavailable(f"Janus at {where}: {exc}")

    @abc.abstractmethod
    def _room_error(self, exc: JanusError) -> SealscribeError | None:
        """The plugin's own error codes (no such room, wrong pin, ...); None: not one."""

    def _end(self, exc: BaseException | None) -> None:
        if self._ended is None or self._ended.done():
            return
        if exc is None:
            self._ended.set_result(None)
        else:
            self._ended.set_exception(exc)

    def _on_lost(self, exc: JanusUnavailable) -> None:
        log.warning("%s", exc)
        self._end(exc)

    def _stop(self) -> asyncio.Task[None]:
        if self._teardown is None:
            self._teardown = asyncio.ensure_future(self._release())
        return self._teardown

    async def _release(self) -> None:
        await self._release_media()
        for task in list(self._background):  # (a dropped subscription, a chat answer)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        chat, self._chat = self._chat, None
        if chat is not None:
            await chat.close()
        session, handle = self._session, self._handle
        self._session = self._handle = None
        self._joined = False
        if session is not None and handle is not None:
            with contextlib.suppress(JanusError, JanusUnavailable, TimeoutError):
                await asyncio.wait_for(session.message(handle, {"request": "leave"}), CLOSE_TIMEOUT)
        if session is not None:
            await session.destroy()  # destroying the session detaches (and leaves) everything

    @abc.abstractmethod
    async def _release_media(self) -> None:
        """Stop delivering audio to the sink and close every peer connection."""

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        sender, kind = event.get("sender"), event.get("janus")
        if sender != self._handle:
            self._other_event(sender, kind)
        elif kind == "event":
            self._room_event(event.get("plugindata", {}).get("data", {}))
        elif kind == "detached":
            self._end(
                JanusUnavailable(
                    f"Janus at {self.address.netloc} detached the bot from room {self.address.room}"
                )
            )
        else:
            self._own_event(kind)

    @abc.abstractmethod
    def _room_event(self, data: dict[str, Any]) -> None:
        """An event of the plugin about the room (who joined, left, talks, ...)."""

    def _own_event(self, kind: object) -> None:
        """Janus's event about the bot's own handle (``webrtcup``, ``hangup``, ...)."""

    def _other_event(self, sender: object, kind: object) -> None:
        """Janus's event about another handle of this session."""

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def display_label(display: object) -> str | None:
    """A participant's display name as the room reports it, or None when it has none worth
    showing (the connector then names them by their id)."""
    return display.strip() if isinstance(display, str) and display.strip() else None
