"""WHIP ingest (RFC 9725): any WebRTC publisher (a browser, OBS, GStreamer) sends its audio
straight into a meeting's capture, one WHIP session per participant.

The process that answers an offer holds the peer connection (the API, in ``sealscribe
serve``). Sessions of one meeting share a :class:`MeetingRoom`, opened with the first session
and closed with the last. Trickle ICE is not supported: the answer carries every candidate.

What one session may hold is bounded:

* one track: the offer's first audio section the publisher sends on is answered
  ``recvonly``; every other section (more audio, video) is answered ``inactive``, so aiortc
  starts no receiver for it: no decoder thread, no frame queue (a browser that offers video
  as well still works). A publisher that sends on those anyway gains nothing: aiortc routes
  an RTP stream it does not know to the one receiver of its payload type, if any; video has
  none and is dropped on arrival, extra audio is decoded as the consumed track's;
* at most :data:`MAX_MEDIA_SECTIONS` media sections per offer, and :data:`MAX_OFFER_BYTES`;
* decoded frames waiting for capture: at most :data:`MAX_QUEUED_FRAMES` (the oldest are
  dropped beyond it, for a publisher that sends faster than real time);
* time to connect: a session not connected within :data:`CONNECT_TIMEOUT` seconds is ended.

And how many sessions there are: at most ``SEALSCRIBE_WHIP_PER_MEETING`` per meeting and
``SEALSCRIBE_WHIP_PER_TENANT`` per tenant, counted in Redis across every API process
(:class:`pipeline.store.leases.CappedLeases`, leases of :data:`LEASE_SECONDS` renewed
while a session lives); an offer beyond a cap is refused with
:class:`~pipeline.errors.QuotaExceeded` (429, ``Retry-After``).

Where a meeting's sessions are captured: in one process, so that its tracks are compared for
crosstalk (:mod:`pipeline.capture.crosstalk`: a voice is kept only on the track where it is
loudest). With ``SEALSCRIBE_WHIP_URL`` set (this process's base URL as the other API
processes' clients reach it), the process that opens a meeting's room records itself as the
meeting's owner in Redis (:class:`pipeline.store.owners.WhipOwners`, a lease renewed with the
session leases, deleted when the room closes), and an offer for that meeting arriving at
another process is answered ``307`` with ``Location`` the same path on the owner
(:class:`WhipElsewhere`; RFC 9725 section 4.5 lets a WHIP endpoint redirect, and
:class:`pipeline.publish.WhipPublisher` follows it). Without it (one process, the demo, the
tests), every session is captured where it lands; one that lands beside another process's
sessions of its meeting is counted (``sealscribe_whip_routing_total{outcome="uncompared"}``)
and logged once: its track is not compared with theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc import exceptions as rtc_errors
from aiortc.mediastreams import MediaStreamTrack
from av.frame import Frame
from av.packet import Packet

from pipeline import faults, metrics
from pipeline.capture.ice import rtc_configuration
from pipeline.capture.receive import decode_in_loop
from pipeline.capture.room import MeetingRoom, participant_label
from pipeline.egress import filter_candidates
from pipeline.errors import InvalidInput, NotFound, QuotaExceeded
from pipeline.models import Meeting
from pipeline.runtime import Runtime
from pipeline.store.leases import MEETING_FULL
from pipeline.store.owners import WhipOwners

__all__ = [
    "CONNECT_TIMEOUT",
    "LEASE_SECONDS",
    "MAX_MEDIA_SECTIONS",
    "MAX_OFFER_BYTES",
    "MAX_QUEUED_FRAMES",
    "RETRY_AFTER",
    "BoundedTrack",
    "WhipElsewhere",
    "WhipIngest",
    "WhipSession",
    "check_offer",
]

log = logging.getLogger(__name__)

#: an audio offer is a few kilobytes; anything far larger is not one
MAX_OFFER_BYTES = 64 * 1024
#: a browser offers 2 or 3 (audio, video, data); each section costs a transceiver (and, when
#: not bundled, its own ICE and DTLS transport) even when answered inactive
MAX_MEDIA_SECTIONS = 16
#: decoded 20 ms frames of the consumed track waiting for capture (10 s)
MAX_QUEUED_FRAMES = 500
#: seconds a session may take to connect before it is ended
CONNECT_TIMEOUT = 30.0
#: seconds a session counts towards the caps without being renewed (a process that died)
LEASE_SECONDS = 15.0
#: the Retry-After of an offer beyond a cap: sessions end at any time, so try again soon
RETRY_AFTER = 10


class WhipElsewhere(Exception):
    """Another API process holds the meeting's WHIP sessions: send the offer there."""

    def __init__(self, base_url: str) -> None:
        super().__init__("the meeting's WHIP sessions are held by another API process")
        self.base_url = base_url


@dataclass
class WhipSession:
    id: str
    meeting_id: str
    tenant_id: str
    participant: str
    pc: RTCPeerConnection = field(repr=False)
    label: str | None = None
    #: whether the session counts towards the caps (in Redis)
    claimed: bool = False


def check_offer(sdp: str) -> None:
    """Refuse what cannot be an audio publisher's offer, with the reason, before aiortc
    sees it."""
    try:
        size = len(sdp.encode())
    except UnicodeEncodeError:
        raise InvalidInput("the SDP offer is not valid UTF-8 text") from None
    if size > MAX_OFFER_BYTES:
        raise InvalidInput(f"the SDP offer is larger than {MAX_OFFER_BYTES} bytes")
    lines = [line.strip() for line in sdp.splitlines() if line.strip()]
    if not lines or lines[0] != "v=0":
        raise InvalidInput("the body is not an SDP offer (it must start with v=0)")
    media = [line.split()[0][2:] for line in lines if line.startswith("m=") and line.split()]
    if "audio" not in media:
        raise InvalidInput("the SDP offer has no audio; sealscribe ingests audio only")
    if len(media) > MAX_MEDIA_SECTIONS:
        raise InvalidInput(
            f"the SDP offer has {len(media)} media sections; at most {MAX_MEDIA_SECTIONS} "
            f"are accepted (one audio track is received, the rest are answered inactive)"
        )


def _consumed(pc: RTCPeerConnection) -> RTCRtpTransceiver | None:
    """The one transceiver whose track is captured: the first audio section the publisher
    sends on (aiortc gave it a remote track); every other one is made inactive."""
    chosen = None
    for transceiver in pc.getTransceivers():
        if chosen is None and transceiver.kind == "audio" and transceiver.receiver.track:
            chosen = transceiver
        elif not faults.on("whip-reads-extra-tracks"):
            # inactive: aiortc neither answers recvonly nor starts the receiver (decoder
            # thread, frame queue) once connected; its packets are routed nowhere
            transceiver.direction = "inactive"
    return chosen


class BoundedTrack(MediaStreamTrack):
    """The consumed remote track, with at most ``limit`` decoded frames waiting: aiortc's
    queue is unbounded, so a publisher sending faster than capture reads would grow it."""

    kind = "audio"

    def __init__(self, inner: MediaStreamTrack, limit: int = MAX_QUEUED_FRAMES) -> None:
        super().__init__()
        self.inner = inner
        self.limit = limit
        self.dropped = 0

    async def recv(self) -> Frame | Packet[Any]:
        # RemoteStreamTrack._queue is aiortc's (1.x) queue of decoded frames, None at the end
        queue = getattr(self.inner, "_queue", None)
        if isinstance(queue, asyncio.Queue):
            while queue.qsize() > self.limit:
                if queue.get_nowait() is None:
                    queue.put_nowait(None)  # the end of the track: keep it
                    break
                self.dropped += 1
        return await self.inner.recv()

    def stop(self) -> None:
        super().stop()
        self.inner.stop()


class WhipIngest:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._sessions: dict[str, WhipSession] = {}
        self._rooms: dict[str, MeetingRoom] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._renewal: asyncio.Task[None] | None = None
        self._owner_store: WhipOwners | None = None
        self._told_uncompared = False

    @property
    def _owners(self) -> WhipOwners:
        """Which process holds each meeting's WHIP sessions (made on first use)."""
        if self._owner_store is None:
            self._owner_store = WhipOwners(self.rt.store.redis)
        return self._owner_store

    def sessions(self, meeting_id: str) -> list[WhipSession]:
        return [s for s in self._sessions.values() if s.meeting_id == meeting_id]

    def room(self, meeting_id: str) -> MeetingRoom | None:
        return self._rooms.get(meeting_id)

    async def offer(self, meeting: Meeting, sdp: str, participant: str) -> tuple[str, str]:
        """Answer a publisher's offer; returns (session id, SDP answer).

        Raises:
            InvalidInput: the offer is malformed or not an audio publisher's.
            QuotaExceeded: the meeting or the tenant holds as many sessions as it may.
            WhipElsewhere: another process holds the meeting's sessions (redirect there).
        """
        check_offer(sdp)
        await self._route(meeting.id, meeting.tenant_id)
        sdp = filter_candidates(sdp)  # the egress policy: a refused candidate is never contacted
        pc = RTCPeerConnection(rtc_configuration())
        session = WhipSession(
            "w_" + secrets.token_hex(8),
            meeting.id,
            meeting.tenant_id,
            participant_label(participant),
            pc,
        )
        self._sessions[session.id] = session
        try:
            await self._claim(session)
        except BaseException:
            await self.end(session.id)
            raise

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.end(session.id)

        try:
            room = await self._room(meeting)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            consumed = _consumed(pc)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except _OFFER_REFUSED as exc:
            await self.end(session.id)
            raise InvalidInput(f"the SDP offer was refused: {_reason(exc, sdp)}") from None
        except BaseException:
            await self.end(session.id)
            raise
        if consumed is not None and consumed.receiver.track is not None:
            decode_in_loop(consumed.receiver)
            session.label = room.track_added(
                session.participant, BoundedTrack(consumed.receiver.track)
            )
        self._spawn(self._connect_deadline(session))
        return session.id, pc.localDescription.sdp

    async def _claim(self, session: WhipSession) -> None:
        """Count the session towards its meeting's and tenant's caps, or refuse it."""
        if faults.on("whip-sessions-unbounded"):
            return
        settings = self.rt.settings
        full = await asyncio.to_thread(
            self.rt.store.whip.claim,
            session.tenant_id,
            session.meeting_id,
            session.id,
            settings.whip_per_meeting,
            settings.whip_per_tenant,
            LEASE_SECONDS,
        )
        if full == MEETING_FULL:
            raise QuotaExceeded(
                f"meeting {session.meeting_id} already has {settings.whip_per_meeting} WHIP "
                f"sessions (SEALSCRIBE_WHIP_PER_MEETING); end one first",
                retry_after=RETRY_AFTER,
            )
        if full:
            raise QuotaExceeded(
                f"tenant {session.tenant_id} already has {settings.whip_per_tenant} WHIP "
                f"sessions (SEALSCRIBE_WHIP_PER_TENANT); end one first",
                retry_after=RETRY_AFTER,
            )
        session.claimed = True
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.create_task(self._renew())

    async def _route(self, meeting_id: str, tenant_id: str) -> None:
        """Raise :class:`WhipElsewhere` if another process owns the meeting's sessions;
        with ``SEALSCRIBE_WHIP_URL``, claim it for this one (held while its room is)."""
        url = self.rt.settings.whip_url
        owner: str | None
        if url:
            owner = await asyncio.to_thread(self._owners.claim, meeting_id, url, LEASE_SECONDS)
        else:
            owner = await asyncio.to_thread(self._owners.owner, meeting_id)
        if owner and owner != url:
            metrics.WHIP_ROUTING.labels("redirected").inc()
            raise WhipElsewhere(owner)
        if url:
            return
        # No URL to send others here: sessions of this meeting held elsewhere are not
        # compared with this one for crosstalk. Count it, and say so once.
        held, _ = await asyncio.to_thread(self.rt.store.whip.count, tenant_id, meeting_id)
        # counted after the store answers: a session of this process is listed before it
        # claims, so one claimed meanwhile is not taken for another process's
        if held > len(self.sessions(meeting_id)):
            metrics.WHIP_ROUTING.labels("uncompared").inc()
            if not self._told_uncompared:
                self._told_uncompared = True
                log.warning(
                    "WHIP sessions of meeting %s are held by several API processes and are "
                    "not compared for crosstalk; set SEALSCRIBE_WHIP_URL on each",
                    meeting_id,
                )

    async def _unclaim(self, session: WhipSession) -> None:
        if not session.claimed:
            return
        session.claimed = False
        try:
            await asyncio.to_thread(
                self.rt.store.whip.release, session.tenant_id, session.meeting_id, session.id
            )
        except Exception as exc:  # its lease lapses by itself
            log.warning("could not release WHIP session %s: %s", session.id, type(exc).__name__)

    async def _renew(self) -> None:
        """Keep the leases of this process's sessions from lapsing, while it has any."""
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            live = [(s.tenant_id, s.meeting_id, s.id) for s in self._sessions.values() if s.claimed]
            if not live and not self._rooms:
                return
            try:
                if live:
                    await asyncio.to_thread(self.rt.store.whip.renew, live, LEASE_SECONDS)
                await self._renew_owners()
            except Exception as exc:  # Redis away: try again next round
                log.warning("could not renew WHIP session leases: %s", type(exc).__name__)

    async def _renew_owners(self) -> None:
        url = self.rt.settings.whip_url
        if not url:
            return
        for meeting_id in list(self._rooms):
            owner = await asyncio.to_thread(self._owners.claim, meeting_id, url, LEASE_SECONDS)
            if owner != url:  # lost while Redis was away: new offers go there
                log.warning("meeting %s's WHIP sessions are now owned elsewhere", meeting_id)

    async def _connect_deadline(self, session: WhipSession) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT)
        if session.id in self._sessions and session.pc.connectionState != "connected":
            log.info("WHIP session %s did not connect in %.0f s", session.id, CONNECT_TIMEOUT)
            await self.end(session.id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _room(self, meeting: Meeting) -> MeetingRoom:
        async with self._lock:
            room = self._rooms.get(meeting.id)
            if room is None:
                room = MeetingRoom(self.rt, meeting)
                await room.start()
                self._rooms[meeting.id] = room
            return room

    def get(self, session_id: str, tenant_id: str) -> WhipSession:
        session = self._sessions.get(session_id)
        if session is None or session.tenant_id != tenant_id:
            raise NotFound(f"WHIP session {session_id} does not exist")
        return session

    async def end(self, session_id: str) -> None:
        """Close one session; the meeting's room closes with its last session."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        room = self._rooms.get(session.meeting_id)
        if room is not None and session.label is not None:
            room.track_removed(session.label)
        with contextlib.suppress(Exception):
            await session.pc.close()
        await self._unclaim(session)
        async with self._lock:
            if not self.sessions(session.meeting_id):
                # (an offer refused before its room opened leaves no room, but may have
                # claimed the meeting)
                self._rooms.pop(session.meeting_id, None)
                await self._disown(session.meeting_id)
                if room is not None:
                    await room.close()

    async def _disown(self, meeting_id: str) -> None:
        url = self.rt.settings.whip_url
        if not url:
            return
        try:
            await asyncio.to_thread(self._owners.release, meeting_id, url)
        except Exception as exc:  # its lease lapses by itself
            log.warning("could not release WHIP meeting %s: %s", meeting_id, type(exc).__name__)

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self.end(session_id)
        for task in [*self._tasks, *([self._renewal] if self._renewal else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


#: what aiortc raises for an offer it cannot take: its parser asserts, converts with int() and
#: looks codecs up by name; negotiation raises its own errors
_OFFER_REFUSED = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AssertionError,
    AttributeError,
    rtc_errors.InternalError,
    rtc_errors.InvalidAccessError,
    rtc_errors.InvalidStateError,
    rtc_errors.OperationError,
)


def _reason(exc: BaseException, sdp: str) -> str:
    """aiortc's message when it names what is wrong; never one that quotes the offer (int()
    and KeyError messages do), so an error does not repeat what the caller sent."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    sent = set(re.findall(r"[^\s:/=,;]{4,}", sdp))
    said = set(re.findall(r"[^\s:/=,;]{4,}", text))
    if not text or "'" in text or '"' in text or said & sent:
        return f"it is malformed ({type(exc).__name__})"
    return text
