"""The Janus VideoRoom connector: joins one room and subscribes to each publisher's audio.

This module owns the room logic on top of a :class:`~.session.JanusSession`: joining as a
publisher that publishes nothing (so the room lists the bot under its display name,
"sealscribe" or "sealscribe (transcribing)"), following the room's events, and subscribing to
each publisher's audio with one Janus handle and one aiortc peer connection per publisher, so
that a failure stays with one participant; video is never requested. It also maps Janus's
error codes to :class:`JoinRejected` (never worth retrying) or :class:`JanusUnavailable` (retry
with backoff). Trust model: the Janus server sees every participant's media in the clear (it
is an SFU), so this suits a platform that runs its own Janus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from pipeline.bot.connectors.base import CommandHandler, Connector, JoinRejected, ParticipantSink
from pipeline.bot.connectors.janus.address import JanusAddress, parse_janus_url
from pipeline.bot.connectors.janus.session import (
    CLOSE_TIMEOUT,
    VIDEOROOM,
    JanusError,
    JanusSession,
    JanusUnavailable,
)
from pipeline.bot.connectors.janus.textroom import ChatMessage, TextRoom, TextRoomRefused
from pipeline.capture.ice import rtc_configuration
from pipeline.capture.receive import decode_in_loop
from pipeline.config import get_settings
from pipeline.egress import EgressPolicy, filter_candidates
from pipeline.errors import SealscribeError
from pipeline.publish import PcmTrack
from pipeline.services.quotas import follows_publisher

__all__ = ["JanusConnector"]

log = logging.getLogger(__name__)

DISPLAY = "sealscribe"
DISPLAY_TRANSCRIBING = "sealscribe (transcribing)"
MAX_RESUBSCRIBES = 2
#: seconds of silence the bot publishes before an announcement
ANNOUNCE_LEAD_S = 2.0

# Janus core and VideoRoom error codes (janus/apierror.h, plugins/janus_videoroom.c).
_UNAUTHORIZED = 403
_SESSION_NOT_FOUND = 458
_HANDLE_NOT_FOUND = 459
_NO_SUCH_ROOM = 426
_NO_SUCH_FEED = 428
_MISSING_ELEMENT = 429
_PUBLISHERS_FULL = 432
_ROOM_UNAUTHORIZED = 433
_TEXTROOM_UNAUTHORIZED = 419


@dataclass
class _Subscription:
    """One publisher's audio: a Janus subscriber handle and an aiortc peer connection."""

    feed: int
    display: str | None
    mids: list[str] | None  # the publisher's audio mids; None: an old Janus without streams
    handle: int | None = None
    pc: RTCPeerConnection | None = None
    labels: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    connected: bool = False
    failures: int = 0


class JanusConnector(Connector):
    """Joins one Janus VideoRoom and hands each publisher's audio track to the sink.

    Args:
        address: the parsed join URL (see :meth:`from_url`).
        policy: where the connector may connect (the Janus server) and send ICE checks
            (the candidates in Janus's offers); default: the process's egress policy.

    ``close()`` is final: it ends a ``run()`` in progress (which then returns normally), and
    a later ``run()`` returns at once, so a bot told to leave cannot rejoin by a retry.
    """

    scheme = "janus"

    def __init__(self, address: JanusAddress, policy: EgressPolicy | None = None) -> None:
        self.address = address
        self.policy = policy
        self._transcribing = False
        self._closed = False
        self._session: JanusSession | None = None
        self._handle: int | None = None
        self._joined = False
        self._private_id: int | None = None
        self._sink: ParticipantSink | None = None
        self._subs: dict[int, _Subscription] = {}
        self._labels: set[str] = set()
        self._ended: asyncio.Future[None] | None = None
        self._announce_lock = asyncio.Lock()
        self._teardown: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        #: publishers listed beyond SEALSCRIBE_QUOTA_PUBLISHERS, and so ignored
        self._ignored = 0
        #: the room's chat, when the join URL names a text room
        self._chat: TextRoom | None = None
        self._speaking = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> JanusConnector:
        """A connector for ``janus://HOST[:PORT]/ROOM[?pin=...&secret=...]``.

        Raises:
            InvalidInput: the URL is malformed (the message never contains pin or secret).
        """
        return cls(parse_janus_url(url))

    def describe(self) -> str:
        return self.address.describe()

    @property
    def display_name(self) -> str:
        """What the room shows for the bot now."""
        return DISPLAY_TRANSCRIBING if self._transcribing else DISPLAY

    # -- Connector ------------------------------------------------------------------------

    async def run(self, sink: ParticipantSink) -> None:
        """Join the room and deliver tracks until the room is destroyed or :meth:`close`.

        Raises:
            JoinRejected: no such room, or Janus refused the pin or the API secret.
            JanusUnavailable: Janus is unreachable, lost the session, or ICE failed for
                every subscription; retry with backoff.
        """
        if self._closed:
            return
        if self._ended is not None and not self._ended.done():
            raise RuntimeError("JanusConnector.run is already running")
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

    async def speak(self, pcm: bytes) -> bool:
        """Publish ``pcm`` as the bot's audio for as long as it lasts, then unpublish: an
        announcement the room hears. One at a time; False if not in the room or refused."""
        async with self._speaking:
            session, handle = self._session, self._handle
            if session is None or handle is None or not self._joined:
                return False
            # silence first: whoever subscribes when the bot starts publishing (a second or
            # so for ICE and DTLS) hears the announcement from its first word
            track = PcmTrack(bytes(int(ANNOUNCE_LEAD_S * 16000) * 2) + pcm, tail_silence=0.5)
            pc = RTCPeerConnection(rtc_configuration())
            try:
                pc.addTransceiver(track, direction="sendonly")
                await pc.setLocalDescription(await pc.createOffer())
                _, answer = await session.message(
                    handle,
                    {"request": "publish", "audio": True, "video": False, "data": False},
                    jsep={"type": "offer", "sdp": pc.localDescription.sdp},
                )
                if answer is None or answer.get("type") != "answer":
                    raise JanusUnavailable(f"Janus at {self.address.netloc} sent no answer")
                sdp = filter_candidates(str(answer["sdp"]), self.policy)
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
                await asyncio.wait_for(track.finished.wait(), track.duration + 15)
                await session.message(handle, {"request": "unpublish"})
            except (JanusError, JanusUnavailable, TimeoutError) as exc:
                log.warning("could not speak into %s: %s", self.describe(), type(exc).__name__)
                return False
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)
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

    async def _join(self, session: JanusSession, sink: ParticipantSink) -> None:
        """Join the room as a publisher that publishes nothing, then subscribe to the
        publishers already in it."""
        handle = await session.attach(VIDEOROOM)
        self._handle = handle
        joined_as = self.display_name
        data, _ = await session.message(handle, self._publisher_join_body())
        if data.get("videoroom") != "joined":
            raise JanusUnavailable(
                f"Janus at {self.address.netloc} did not confirm the "
                f"join of room {self.address.room}"
            )
        private_id = data.get("private_id")
        self._private_id = private_id if isinstance(private_id, int) else None
        self._joined = True
        log.info("joined %s as %r", self.describe(), joined_as)
        if self.display_name != joined_as:  # announce() came while the join was on its way
            await self._show_display_name()
        if self.address.textroom is not None:
            await self._open_chat(session, self.address.textroom)
        joined = getattr(sink, "joined", None)
        if callable(joined):
            joined()
        self._publishers(data.get("publishers"))

    async def _open_chat(self, session: JanusSession, room: int) -> None:
        chat = TextRoom(session, room, self.address.pin, self._chat_message, self.policy)
        self._chat = chat
        try:
            await chat.open()
        except TextRoomRefused as exc:
            if exc.code == _TEXTROOM_UNAUTHORIZED:
                raise JoinRejected(f"Janus refused the pin for text room {room}") from None
            raise JoinRejected(f"Janus text room {room} does not exist") from None

    def _publisher_join_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request": "join",
            "ptype": "publisher",
            "room": self.address.room,
            "display": self.display_name,
        }
        if self.address.pin is not None:
            body["pin"] = self.address.pin
        return body

    def _translate(self, exc: JanusError) -> SealscribeError:
        room, where = self.address.room, self.address.netloc
        if exc.code == _NO_SUCH_ROOM:
            return JoinRejected(f"Janus room {room} does not exist")
        if exc.code == _MISSING_ELEMENT and "pin" in exc.reason:
            return JoinRejected(f"Janus room {room} needs a pin (add ?pin=...)")
        if exc.code == _ROOM_UNAUTHORIZED:
            if self.address.pin is None:
                return JoinRejected(f"Janus room {room} needs a pin (add ?pin=...)")
            return JoinRejected(f"Janus refused the pin for room {room}")
        if exc.code == _UNAUTHORIZED:
            if self.address.secret is None:
                return JoinRejected(f"Janus at {where} needs an API secret (add ?secret=...)")
            return JoinRejected(f"Janus at {where} refused the API secret")
        if exc.code == _PUBLISHERS_FULL:
            return JanusUnavailable(f"Janus room {room} is full")
        if exc.code in (_SESSION_NOT_FOUND, _HANDLE_NOT_FOUND):
            return JanusUnavailable(f"Janus at {where} lost our session")
        return JanusUnavailable(f"Janus at {where}: {exc}")

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
        subs, self._subs = list(self._subs.values()), {}
        for sub in subs:
            if sub.task is not None:
                sub.task.cancel()
        for task in [s.task for s in subs if s.task is not None] + list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        for sub in subs:
            await self._drop(sub, detach=False)
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
        self._labels.clear()

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        sender, kind = event.get("sender"), event.get("janus")
        if sender == self._handle:
            if kind == "event":
                self._room_event(event.get("plugindata", {}).get("data", {}))
            elif kind == "detached":
                self._end(
                    JanusUnavailable(
                        f"Janus at {self.address.netloc} detached the bot "
                        f"from room {self.address.room}"
                    )
                )
            return
        sub = next((s for s in self._subs.values() if s.handle == sender), None)
        if sub is None:
            return
        if kind == "hangup":  # Janus's side of ICE/DTLS gave up: try that feed again
            log.info("Janus hung up the subscription to feed %s in %s", sub.feed, self.describe())
            self._resubscribe(sub)

    def _room_event(self, data: dict[str, Any]) -> None:
        if data.get("videoroom") == "destroyed":
            log.info("%s was destroyed", self.describe())
            self._end(None)
            return
        if "publishers" in data:
            self._publishers(data["publishers"])
        for key in ("unpublished", "leaving", "kicked"):
            feed = data.get(key)
            if feed == "ok" and key != "unpublished":
                log.info(
                    "the bot was removed from %s (%s)", self.describe(), data.get("reason", key)
                )
                self._end(None)
            elif isinstance(feed, int):
                self._remove(feed)

    def _publishers(self, publishers: object) -> None:
        """Subscribe to every newly listed publisher that publishes audio."""
        if not isinstance(publishers, list):
            return
        for pub in publishers:
            if not isinstance(pub, dict) or not isinstance(pub.get("id"), int):
                continue
            feed = pub["id"]
            if feed in self._subs:
                continue
            if not follows_publisher(get_settings(), len(self._subs)):
                self._ignore()
                continue
            mids = _audio_mids(pub.get("streams"))
            if mids == []:
                log.info(
                    "feed %s in %s publishes no audio; nothing to capture", feed, self.describe()
                )
                continue
            sub = _Subscription(feed=feed, display=_display(pub.get("display")), mids=mids)
            self._subs[feed] = sub
            self._start(sub)

    def _ignore(self) -> None:
        """Leave a publisher beyond the quota alone (a hostile server could list thousands);
        logged at the first and every thousandth, not each time."""
        self._ignored += 1
        if self._ignored == 1 or self._ignored % 1000 == 0:
            log.warning(
                "%s lists more publishers than a bot follows (SEALSCRIBE_QUOTA_PUBLISHERS=%d): "
                "%d ignored so far",
                self.describe(),
                get_settings().quota_publishers,
                self._ignored,
            )

    def _start(self, sub: _Subscription) -> None:
        if self._ended is None or self._ended.done():  # tearing down: start nothing new
            self._subs.pop(sub.feed, None)
            return
        sub.task = asyncio.create_task(self._subscribe(sub))

    def _remove(self, feed: int) -> None:
        sub = self._subs.pop(feed, None)
        if sub is None:
            return
        if sub.task is not None:
            sub.task.cancel()
        self._spawn(self._drop(sub))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- subscriptions -------------------------------------------------------------------
    #
    # Subscribing to one feed, in order: attach a handle and ask Janus for an offer
    # (_request_offer), answer it with a fresh peer connection that takes audio only
    # (_answer_offer), send the answer and start the media (_start_media), then hand the
    # audio tracks to the sink (_deliver). Any failure loses that feed only (_subscribe_failed).

    async def _subscribe(self, sub: _Subscription) -> None:
        session = self._session
        if session is None:
            return
        try:
            offer = await self._request_offer(session, sub)
            pc, tracks = await self._answer_offer(sub, offer)
            await self._start_media(session, sub, pc)
        except Exception as exc:  # JanusError, JanusUnavailable, or aiortc refusing the SDP
            self._subscribe_failed(sub, exc)
            return
        self._deliver(sub, tracks)

    async def _request_offer(self, session: JanusSession, sub: _Subscription) -> dict[str, Any]:
        """Attach a subscriber handle for ``sub`` and join it to the feed; Janus's offer."""
        sub.handle = await session.attach(VIDEOROOM)
        _, offer = await session.message(sub.handle, self._subscriber_join_body(sub))
        if offer is None or offer.get("type") != "offer" or "sdp" not in offer:
            raise JanusUnavailable(
                f"Janus at {self.address.netloc} sent no offer for feed {sub.feed}"
            )
        return offer

    def _subscriber_join_body(self, sub: _Subscription) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request": "join",
            "ptype": "subscriber",
            "room": self.address.room,
        }
        if sub.mids is None:
            body["feed"] = sub.feed
        else:
            body["streams"] = [{"feed": sub.feed, "mid": mid} for mid in sub.mids]
        if self._private_id is not None:
            body["private_id"] = self._private_id
        if self.address.pin is not None:
            body["pin"] = self.address.pin
        return body

    async def _answer_offer(
        self, sub: _Subscription, offer: dict[str, Any]
    ) -> tuple[RTCPeerConnection, list[MediaStreamTrack]]:
        """A peer connection for ``sub`` that has answered ``offer``, taking audio only; and
        the list its audio tracks arrive in."""
        pc = RTCPeerConnection(rtc_configuration())
        sub.pc = pc
        tracks: list[MediaStreamTrack] = []
        pc.on("track", lambda track: tracks.append(track) if track.kind == "audio" else None)
        pc.on("connectionstatechange", lambda: self._pc_state(sub, pc))
        # Janus's candidates pass the egress policy first: a crafted one is never contacted.
        sdp = filter_candidates(str(offer["sdp"]), self.policy)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in pc.getTransceivers():
            if transceiver.kind != "audio":  # an old Janus may offer video: refuse it
                transceiver.direction = "inactive"
            else:
                decode_in_loop(transceiver.receiver)
        await pc.setLocalDescription(await pc.createAnswer())
        return pc, tracks

    async def _start_media(
        self, session: JanusSession, sub: _Subscription, pc: RTCPeerConnection
    ) -> None:
        """Send our answer to Janus and tell it there are no more candidates."""
        # sub.handle is read at each request, as it always was: if the subscription was
        # dropped meanwhile (ICE failed, Janus hung up), the request fails and it is forgotten.
        await session.message(
            cast(int, sub.handle),
            {"request": "start", "room": self.address.room},
            jsep={"type": "answer", "sdp": pc.localDescription.sdp},
        )
        await session.trickle_completed(cast(int, sub.handle))

    def _subscribe_failed(self, sub: _Subscription, exc: Exception) -> None:
        """Log why subscribing to ``sub`` failed and forget it: the room carries on."""
        if isinstance(exc, JanusError) and exc.code in (_NO_SUCH_FEED, _NO_SUCH_ROOM):
            # it left while we subscribed
            log.info("feed %s left %s before the subscription completed", sub.feed, self.describe())
        elif isinstance(exc, (JanusError, JanusUnavailable)):
            log.warning("subscribing to feed %s in %s failed: %s", sub.feed, self.describe(), exc)
        else:  # aiortc refusing Janus's SDP: lose this feed, not the room
            log.warning(
                "subscribing to feed %s in %s failed: %s",
                sub.feed,
                self.describe(),
                type(exc).__name__,
            )
        self._forget(sub)

    def _deliver(self, sub: _Subscription, tracks: list[MediaStreamTrack]) -> None:
        """Hand each audio track of ``sub`` to the sink under a label unique in the room."""
        if not tracks:
            log.info(
                "feed %s in %s offered no audio; nothing to capture", sub.feed, self.describe()
            )
        for track in tracks:
            label = self._label(sub)
            sub.labels.append(label)
            if self._sink is not None:
                self._sink.track_added(label, track)

    def _forget(self, sub: _Subscription) -> None:
        if self._subs.get(sub.feed) is sub:
            del self._subs[sub.feed]
        self._spawn(self._drop(sub))

    def _label(self, sub: _Subscription) -> str:
        base = sub.display or f"feed-{sub.feed}"
        label, n = base, 2
        while label in self._labels:
            label, n = f"{base} ({n})", n + 1
        self._labels.add(label)
        return label

    async def _drop(self, sub: _Subscription, detach: bool = True) -> None:
        """Release one subscription: tell the sink, close the PC, detach the handle."""
        labels, sub.labels = sub.labels, []
        for label in labels:
            self._labels.discard(label)
            if self._sink is not None:
                self._sink.track_removed(label)
        pc, sub.pc = sub.pc, None
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)
        handle, sub.handle = sub.handle, None
        session = self._session
        if detach and handle is not None and session is not None:
            with contextlib.suppress(JanusError, JanusUnavailable, TimeoutError):
                await asyncio.wait_for(session.detach(handle), CLOSE_TIMEOUT)

    def _pc_state(self, sub: _Subscription, pc: RTCPeerConnection) -> None:
        state = pc.connectionState
        if state == "connected":
            sub.connected = True
        elif state == "failed" and sub.pc is pc:
            self._subscription_failed(sub)

    def _subscription_failed(self, sub: _Subscription) -> None:
        log.warning("ICE failed for feed %s in %s", sub.feed, self.describe())
        if not any(s is not sub for s in self._subs.values()):
            self._forget(sub)
            self._end(
                JanusUnavailable(
                    f"ICE failed for every subscription to Janus at {self.address.netloc}"
                )
            )
        else:
            self._resubscribe(sub)

    def _resubscribe(self, sub: _Subscription) -> None:
        """Replace a broken subscription with a fresh one, a few times per feed at most."""
        self._forget(sub)
        if sub.failures >= MAX_RESUBSCRIBES:
            log.warning("giving up on feed %s in %s until the next join", sub.feed, self.describe())
            return
        retry = _Subscription(
            feed=sub.feed, display=sub.display, mids=sub.mids, failures=sub.failures + 1
        )
        self._subs[sub.feed] = retry
        self._start(retry)


def _audio_mids(streams: object) -> list[str] | None:
    """The mids of a publisher's enabled audio streams; None when Janus lists no streams
    (an old Janus: subscribe to the whole feed)."""
    if not isinstance(streams, list):
        return None
    return [
        str(s["mid"])
        for s in streams
        if isinstance(s, dict) and s.get("type") == "audio" and "mid" in s and not s.get("disabled")
    ]


def _display(display: object) -> str | None:
    """The publisher's display name, or None when it has none worth showing."""
    return display.strip() if isinstance(display, str) and display.strip() else None
