"""The Janus AudioBridge connector: joins a mixed-audio room, receives the room's mix, and
follows its participants and their talking events.

An AudioBridge room (an audio conference; SIP and plain-RTP callers join it too) mixes every
participant into one stream per listener, so the bot gets one track of everyone and never a
track per person. Who is talking comes separately: with ``audiolevel_event = true`` in the
room's configuration, Janus reports ``talking`` / ``stopped-talking`` per participant, from the
audio level each client puts in its RTP packets (RFC 6464): talking while the average level
over ``audio_active_packets`` packets (20 ms each; default 100, 2 s) is above
``audio_level_average`` (0 loudest, 127 silent; default 25). The join URL's
``audio_active_packets`` must match the room's, since it says how late the events come
(:class:`~pipeline.capture.mix.MixTiming`); 10-25 (200-500 ms) attributes turns far better
than Janus's default.

The bot joins muted under its display name (it sends silence, which the muted room drops, and
unmutes only to say an announcement: the mix it receives never holds its own voice), and
hands the sink (:class:`~pipeline.bot.connectors.base.MixedSink`) the mix, who is present,
and each talking event. A room that sends no talking events leaves everything unattributed,
and so nothing kept (the sink counts such speech). Error codes are AudioBridge's
(``plugins/janus_audiobridge.c``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from pipeline.bot.connectors.base import JoinRejected, MixedSink, ParticipantSink
from pipeline.bot.connectors.janus.room import JanusRoom, display_label
from pipeline.bot.connectors.janus.session import (
    CLOSE_TIMEOUT,
    JanusError,
    JanusSession,
    JanusUnavailable,
)
from pipeline.capture.ice import rtc_configuration
from pipeline.capture.receive import decode_in_loop
from pipeline.config import get_settings
from pipeline.egress import filter_candidates
from pipeline.errors import SealscribeError
from pipeline.publish import VoiceTrack

__all__ = ["AUDIOBRIDGE", "AudioBridgeConnector"]

log = logging.getLogger(__name__)

AUDIOBRIDGE = "janus.plugin.audiobridge"
#: AudioBridge's packets are 20 ms
PACKET_MS = 20
#: silence said before an announcement, while the unmute takes effect
ANNOUNCE_LEAD_S = 0.3

# AudioBridge error codes (plugins/janus_audiobridge.c).
_MISSING_ELEMENT = 483
_NO_SUCH_ROOM = 485
_UNAUTHORIZED = 489


class AudioBridgeConnector(JanusRoom):
    """Joins one Janus AudioBridge room and hands its mix and talking events to the sink."""

    scheme = "janus-audiobridge"
    plugin = AUDIOBRIDGE
    plugin_name = "AudioBridge"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pc: RTCPeerConnection | None = None
        self._own_id: int | None = None
        #: who is in the room: participant id -> display label
        self._people: dict[int, str] = {}
        self._talking: set[int] = set()
        self._mixing = False
        #: the bot's own voice in the room: silence, muted, until it speaks
        self._voice: VoiceTrack | None = None
        self._speaking = asyncio.Lock()

    @property
    def window_ms(self) -> int:
        return self.address.active_packets * PACKET_MS

    # -- joining and leaving -------------------------------------------------------------

    async def _join(self, session: JanusSession, sink: ParticipantSink) -> None:
        """Join muted, then negotiate a receive-only peer connection for the mix."""
        handle = await session.attach(AUDIOBRIDGE)
        self._handle = handle
        data, _ = await session.message(handle, self._join_body(muted=True))
        if data.get("audiobridge") != "joined":
            raise JanusUnavailable(
                f"Janus at {self.address.netloc} did not confirm the "
                f"join of room {self.address.room}"
            )
        own = data.get("id")
        self._own_id = own if isinstance(own, int) else None
        self._participants(data.get("participants"))
        track = await self._receive(session, handle)
        await self._entered(session, sink)
        if not hasattr(sink, "mix_added"):
            raise TypeError("an AudioBridge room gives mixed audio: the sink must be a MixedSink")
        cast(MixedSink, sink).mix_added(track, self.window_ms)
        self._mixing = True
        self._present()
        for pid in self._talking:
            self._tell_talking(pid, True)

    async def speak(self, pcm: bytes) -> bool:
        """Say ``pcm`` into the room: unmute the bot's own voice for as long as it lasts,
        then mute it again. One at a time; False if not in the room or refused."""
        async with self._speaking:
            session, handle, voice = self._session, self._handle, self._voice
            if session is None or handle is None or voice is None or not self._joined:
                return False
            lead = bytes(int(ANNOUNCE_LEAD_S * 16000) * 2)  # the unmute takes effect first
            try:
                await session.message(handle, {"request": "configure", "muted": False})
                await asyncio.wait_for(voice.say(lead + pcm), len(pcm) / 32000 + 15)
            except (JanusError, JanusUnavailable, TimeoutError) as exc:
                log.warning("could not speak into %s: %s", self.describe(), type(exc).__name__)
                return False
            finally:
                with contextlib.suppress(JanusError, JanusUnavailable):
                    await session.message(handle, {"request": "configure", "muted": True})
            return True

    async def _receive(self, session: JanusSession, handle: int) -> MediaStreamTrack:
        """Offer the bot's voice (muted: silence, until it speaks) and to receive the mix;
        Janus's answer sets both up. The mix's track."""
        pc = RTCPeerConnection(rtc_configuration())
        self._pc = pc
        tracks: list[MediaStreamTrack] = []
        pc.on("track", lambda track: tracks.append(track) if track.kind == "audio" else None)
        pc.on("connectionstatechange", lambda: self._pc_state(pc))
        self._voice = VoiceTrack()
        transceiver = pc.addTransceiver(self._voice, direction="sendrecv")
        decode_in_loop(transceiver.receiver)
        await pc.setLocalDescription(await pc.createOffer())
        _, answer = await session.message(
            handle,
            {"request": "configure", "muted": True},
            jsep={"type": "offer", "sdp": pc.localDescription.sdp},
        )
        if answer is None or answer.get("type") != "answer" or "sdp" not in answer:
            raise JanusUnavailable(f"Janus at {self.address.netloc} sent no answer for the mix")
        # Janus's candidates pass the egress policy first: a crafted one is never contacted.
        sdp = filter_candidates(str(answer["sdp"]), self.policy)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        if not tracks:
            raise JanusUnavailable(f"Janus at {self.address.netloc} sent no audio for the mix")
        return tracks[0]

    def _room_error(self, exc: JanusError) -> SealscribeError | None:
        room = self.address.room
        if exc.code == _NO_SUCH_ROOM:
            return JoinRejected(f"Janus AudioBridge room {room} does not exist")
        if exc.code in (_UNAUTHORIZED, _MISSING_ELEMENT) and (
            exc.code == _UNAUTHORIZED or "pin" in exc.reason
        ):
            if self.address.pin is None:
                return JoinRejected(f"Janus AudioBridge room {room} needs a pin (add ?pin=...)")
            return JoinRejected(f"Janus refused the pin for AudioBridge room {room}")
        return None

    async def _release_media(self) -> None:
        sink = self._sink
        if self._mixing and sink is not None:
            cast(MixedSink, sink).mix_removed()
        self._mixing = False
        self._people.clear()
        self._talking.clear()
        voice, self._voice = self._voice, None
        if voice is not None:
            voice.stop()
        pc, self._pc = self._pc, None
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)

    def _pc_state(self, pc: RTCPeerConnection) -> None:
        if pc.connectionState == "failed" and self._pc is pc:
            where = self.address.netloc
            self._end(JanusUnavailable(f"ICE failed for the mix from Janus at {where}"))

    # -- events --------------------------------------------------------------------------

    def _own_event(self, kind: object) -> None:
        if kind == "hangup":  # Janus's side of ICE/DTLS gave up: rejoin
            self._end(JanusUnavailable(f"Janus at {self.address.netloc} hung up the mix"))

    def _room_event(self, data: dict[str, Any]) -> None:
        kind = data.get("audiobridge")
        if kind == "destroyed":
            log.info("%s was destroyed", self.describe())
            self._end(None)
            return
        if kind in ("talking", "stopped-talking"):
            pid = data.get("id")
            if isinstance(pid, int) and pid in self._people:
                self._talked(pid, kind == "talking")
            return
        if "participants" in data:
            self._participants(data["participants"])
            self._present()
        for key in ("leaving", "kicked"):
            pid = data.get(key)
            if pid is None:
                continue
            if pid == self._own_id or pid == "ok":
                log.info("the bot was removed from %s (%s)", self.describe(), key)
                self._end(None)
            elif isinstance(pid, int):
                self._left(pid)

    def _participants(self, listed: object) -> None:
        """Take in who the room lists (a join, a changed display name, who is talking)."""
        if not isinstance(listed, list):
            return
        quota = get_settings().quota_publishers
        for p in listed:
            if not isinstance(p, dict) or not isinstance(p.get("id"), int):
                continue
            pid = p["id"]
            if pid == self._own_id:
                continue
            if pid not in self._people and len(self._people) >= quota:
                continue  # a hostile server could list thousands
            name = display_label(p.get("display")) or f"participant-{pid}"
            if self._people.get(pid) not in (None, name) and pid in self._talking:
                self._talked(pid, False)  # renamed: the old name stops talking
            self._people[pid] = name
            if p.get("talking") is True and pid not in self._talking:
                self._talked(pid, True)

    def _talked(self, pid: int, talking: bool) -> None:
        if talking:
            self._talking.add(pid)
        else:
            self._talking.discard(pid)
        if self._mixing:
            self._tell_talking(pid, talking)

    def _tell_talking(self, pid: int, talking: bool) -> None:
        if self._sink is not None and pid in self._people:
            cast(MixedSink, self._sink).talking(self._people[pid], talking)

    def _left(self, pid: int) -> None:
        if pid in self._talking:
            self._talked(pid, False)
        if self._people.pop(pid, None) is not None:
            self._present()

    def _present(self) -> None:
        if self._mixing and self._sink is not None:
            cast(MixedSink, self._sink).present(sorted(set(self._people.values())))
