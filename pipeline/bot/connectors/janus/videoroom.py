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

from pipeline.bot.connectors.base import JoinRejected, ParticipantSink
from pipeline.bot.connectors.janus.address import JanusAddress
from pipeline.bot.connectors.janus.room import JanusRoom, display_label
from pipeline.bot.connectors.janus.session import (
    CLOSE_TIMEOUT,
    VIDEOROOM,
    JanusError,
    JanusSession,
    JanusUnavailable,
)
from pipeline.capture.ice import rtc_configuration
from pipeline.capture.receive import decode_in_loop
from pipeline.config import get_settings
from pipeline.egress import EgressPolicy, filter_candidates
from pipeline.errors import SealscribeError
from pipeline.publish import PcmTrack
from pipeline.services.quotas import follows_publisher

__all__ = ["JanusConnector"]

log = logging.getLogger(__name__)

MAX_RESUBSCRIBES = 2
#: seconds of silence the bot publishes before an announcement
ANNOUNCE_LEAD_S = 2.0

# VideoRoom error codes (plugins/janus_videoroom.c).
_NO_SUCH_ROOM = 426
_NO_SUCH_FEED = 428
_MISSING_ELEMENT = 429
_PUBLISHERS_FULL = 432
_ROOM_UNAUTHORIZED = 433


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


class JanusConnector(JanusRoom):
    """Joins one Janus VideoRoom and hands each publisher's audio track to the sink."""

    scheme = "janus"
    plugin = VIDEOROOM
    plugin_name = "VideoRoom"

    def __init__(self, address: JanusAddress, policy: EgressPolicy | None = None) -> None:
        super().__init__(address, policy)
        self._private_id: int | None = None
        self._subs: dict[int, _Subscription] = {}
        self._labels: set[str] = set()
        #: publishers listed beyond SEALSCRIBE_QUOTA_PUBLISHERS, and so ignored
        self._ignored = 0
        self._speaking = asyncio.Lock()

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

    # -- joining and leaving -------------------------------------------------------------

    async def _join(self, session: JanusSession, sink: ParticipantSink) -> None:
        """Join the room as a publisher that publishes nothing, then subscribe to the
        publishers already in it."""
        handle = await session.attach(VIDEOROOM)
        self._handle = handle
        data, _ = await session.message(handle, self._join_body(ptype="publisher"))
        if data.get("videoroom") != "joined":
            raise JanusUnavailable(
                f"Janus at {self.address.netloc} did not confirm the "
                f"join of room {self.address.room}"
            )
        private_id = data.get("private_id")
        self._private_id = private_id if isinstance(private_id, int) else None
        await self._entered(session, sink)
        self._publishers(data.get("publishers"))

    def _room_error(self, exc: JanusError) -> SealscribeError | None:
        room = self.address.room
        if exc.code == _NO_SUCH_ROOM:
            return JoinRejected(f"Janus room {room} does not exist")
        if exc.code == _MISSING_ELEMENT and "pin" in exc.reason:
            return JoinRejected(f"Janus room {room} needs a pin (add ?pin=...)")
        if exc.code == _ROOM_UNAUTHORIZED:
            if self.address.pin is None:
                return JoinRejected(f"Janus room {room} needs a pin (add ?pin=...)")
            return JoinRejected(f"Janus refused the pin for room {room}")
        if exc.code == _PUBLISHERS_FULL:
            return JanusUnavailable(f"Janus room {room} is full")
        return None

    async def _release_media(self) -> None:
        subs, self._subs = list(self._subs.values()), {}
        for sub in subs:
            if sub.task is not None:
                sub.task.cancel()
        for task in [s.task for s in subs if s.task is not None]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for sub in subs:
            await self._drop(sub, detach=False)
        self._labels.clear()

    # -- events --------------------------------------------------------------------------

    def _other_event(self, sender: object, kind: object) -> None:
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
            sub = _Subscription(feed=feed, display=display_label(pub.get("display")), mids=mids)
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
