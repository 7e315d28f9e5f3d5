"""WHIP ingest (RFC 9725): any WebRTC publisher (a browser, OBS, GStreamer) sends its audio
straight into a meeting's capture, one WHIP session per participant.

The process that answers an offer holds the peer connection (the API, in ``sealscribe
serve``). Sessions of one meeting share a :class:`MeetingRoom`, opened with the first session
and closed with the last. Trickle ICE is not supported: the answer carries every candidate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from dataclasses import dataclass, field

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc import exceptions as rtc_errors
from aiortc.mediastreams import MediaStreamTrack

from pipeline.capture.ice import rtc_configuration
from pipeline.capture.room import MeetingRoom, participant_label
from pipeline.errors import InvalidInput, NotFound
from pipeline.models import Meeting
from pipeline.runtime import Runtime

__all__ = ["MAX_OFFER_BYTES", "WhipIngest", "WhipSession", "check_offer"]

log = logging.getLogger(__name__)

#: an audio offer is a few kilobytes; anything far larger is not one
MAX_OFFER_BYTES = 64 * 1024


@dataclass
class WhipSession:
    id: str
    meeting_id: str
    tenant_id: str
    participant: str
    pc: RTCPeerConnection = field(repr=False)
    label: str | None = None


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


class WhipIngest:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._sessions: dict[str, WhipSession] = {}
        self._rooms: dict[str, MeetingRoom] = {}
        self._lock = asyncio.Lock()

    def sessions(self, meeting_id: str) -> list[WhipSession]:
        return [s for s in self._sessions.values() if s.meeting_id == meeting_id]

    def room(self, meeting_id: str) -> MeetingRoom | None:
        return self._rooms.get(meeting_id)

    async def offer(self, meeting: Meeting, sdp: str, participant: str) -> tuple[str, str]:
        """Answer a publisher's offer; returns (session id, SDP answer)."""
        check_offer(sdp)
        pc = RTCPeerConnection(rtc_configuration())
        session = WhipSession(
            "w_" + secrets.token_hex(8),
            meeting.id,
            meeting.tenant_id,
            participant_label(participant),
            pc,
        )
        room = await self._room(meeting)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and session.label is None:
                session.label = room.track_added(session.participant, track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.end(session.id)

        self._sessions[session.id] = session
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except _OFFER_REFUSED as exc:
            await self.end(session.id)
            raise InvalidInput(f"the SDP offer was refused: {_reason(exc, sdp)}") from None
        except BaseException:
            await self.end(session.id)
            raise
        return session.id, pc.localDescription.sdp

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
        async with self._lock:
            if room is not None and not self.sessions(session.meeting_id):
                self._rooms.pop(session.meeting_id, None)
                await room.close()

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self.end(session_id)


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
