"""Meeting participants for Janus tests: aiortc publishers in a real VideoRoom, and
participants of a real AudioBridge room (:class:`MixedParticipant`).

A :class:`Publisher` joins with a display name and publishes a file's audio over Opus, PCM
from memory (:meth:`Publisher.publish_pcm`, paced by :class:`~pipeline.publish.PcmTrack`:
nothing is written to disk), or a synthetic video track alone (the "video-only participant"
case), through the same Janus HTTP client the connector uses. Call
``configure_ice(ns.peer_addr)`` first, so its ICE offers only the namespace address.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack

from pipeline.bot.connectors.janus import VIDEOROOM, JanusAddress, JanusSession, parse_janus_url
from pipeline.bot.connectors.janus.audiobridge import AUDIOBRIDGE
from pipeline.capture.ice import rtc_configuration
from pipeline.publish import PcmTrack

__all__ = [
    "MixedParticipant",
    "Publisher",
    "create_audio_room",
    "create_room",
    "destroy_room",
    "list_participants",
]


class _Participant:
    """Someone in a Janus room: a session, a handle once joined, a peer connection once
    media flows; :meth:`leave` undoes all three."""

    def __init__(self, url: str, display: str) -> None:
        self.address = parse_janus_url(url)
        self.display = display
        self.session = JanusSession(self.address)
        self.handle: int | None = None
        self.pc: RTCPeerConnection | None = None

    async def leave(self) -> None:
        """Leave the room cleanly (``leave``), then close the peer connection and session."""
        if self.handle is not None:
            with contextlib.suppress(Exception):
                await self.session.message(self.handle, {"request": "leave"}, timeout=3)
            self.handle = None
        if self.pc is not None:
            await self.pc.close()
            self.pc = None
        self._stop_media()
        await self.session.destroy()

    def _stop_media(self) -> None:
        """Stop what this participant sends."""


class Publisher(_Participant):
    """One participant publishing into a VideoRoom. Use :meth:`join`, then a ``publish_*``.

    Args:
        url: the room's ``janus://`` URL (with ``?pin=`` where the room has one).
        display: the display name the room shows.
    """

    def __init__(self, url: str, display: str) -> None:
        super().__init__(url, display)
        self.feed: int | None = None
        self._player: MediaPlayer | None = None
        self._track: MediaStreamTrack | None = None

    async def join(self) -> int:
        """Join as a publisher (nothing published yet); returns the feed id."""
        await self.session.create()
        self.handle = await self.session.attach(VIDEOROOM)
        body: dict[str, Any] = {
            "request": "join",
            "ptype": "publisher",
            "room": self.address.room,
            "display": self.display,
        }
        if self.address.pin is not None:
            body["pin"] = self.address.pin
        data, _ = await self.session.message(self.handle, body)
        self.feed = int(data["id"])
        return self.feed

    async def publish_audio(self, path: Path, loop: bool = True) -> None:
        """Publish the audio of ``path`` (wav, ogg, flac) as Opus, looping by default."""
        self._player = MediaPlayer(str(path), loop=loop)
        if self._player.audio is None:
            raise ValueError(f"{path} has no audio stream")
        await self._publish(self._player.audio)

    async def publish_pcm(
        self, pcm: bytes, speed: float = 1.0, sample_rate: int = 16000
    ) -> PcmTrack:
        """Publish mono s16 ``pcm`` from memory as Opus, in real time (or ``speed`` times
        faster), then silence until :meth:`leave`; returns the track (``finished`` is set
        once every sample went out)."""
        track = PcmTrack(pcm, sample_rate=sample_rate, speed=speed)
        await self._publish(track)
        return track

    async def publish_video_only(self) -> None:
        """Publish a synthetic video track and no audio at all."""
        await self._publish(VideoStreamTrack())

    async def _publish(self, track: MediaStreamTrack, timeout: float = 15.0) -> None:
        if self.handle is None:
            await self.join()
        assert self.handle is not None
        pc = self.pc = RTCPeerConnection(rtc_configuration())
        self._track = track
        pc.addTransceiver(track, direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        _, answer = await self.session.message(
            self.handle,
            {"request": "publish", "display": self.display},
            jsep={"type": "offer", "sdp": pc.localDescription.sdp},
        )
        if answer is None:
            raise RuntimeError("Janus sent no answer to the publish offer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        await self.session.trickle_completed(self.handle)
        async with asyncio.timeout(timeout):
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise RuntimeError(f"the publisher's ICE/DTLS {pc.connectionState}")
                await asyncio.sleep(0.05)

    def _stop_media(self) -> None:
        if self._player is not None:
            for track in (self._player.audio, self._player.video):
                if track is not None:
                    track.stop()
            self._player = None
        if self._track is not None:
            self._track.stop()
            self._track = None

    async def __aenter__(self) -> Publisher:
        await self.join()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()


class MixedParticipant(_Participant):
    """One participant of an AudioBridge room: joins under ``display`` and sends PCM from
    memory as Opus (with the audio level in each packet, as browsers send it), paced in real
    time; the room mixes it for everyone else.

    Args:
        url: the room's ``janus-audiobridge://`` URL.
        display: the display name the room shows.
    """

    def __init__(self, url: str, display: str) -> None:
        super().__init__(url, display)
        self.id: int | None = None
        self.track: PcmTrack | None = None

    async def join(self, pcm: bytes, gate: asyncio.Event | None = None) -> PcmTrack:
        """Join and send ``pcm`` (16 kHz mono s16; from when ``gate`` is set, if given),
        then silence until :meth:`leave`."""
        await self.session.create()
        self.handle = await self.session.attach(AUDIOBRIDGE)
        body: dict[str, Any] = {
            "request": "join",
            "room": self.address.room,
            "display": self.display,
        }
        if self.address.pin is not None:
            body["pin"] = self.address.pin
        data, _ = await self.session.message(self.handle, body)
        self.id = int(data["id"])
        self.track = track = PcmTrack(pcm, gate=gate)
        pc = self.pc = RTCPeerConnection(rtc_configuration())
        pc.addTransceiver(track, direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        _, answer = await self.session.message(
            self.handle,
            {"request": "configure", "muted": False},
            jsep={"type": "offer", "sdp": pc.localDescription.sdp},
        )
        if answer is None:
            raise RuntimeError("Janus sent no answer to the participant's offer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        async with asyncio.timeout(15):
            while pc.connectionState != "connected":
                if pc.connectionState in ("failed", "closed"):
                    raise RuntimeError(f"the participant's ICE/DTLS {pc.connectionState}")
                await asyncio.sleep(0.05)
        return track

    def _stop_media(self) -> None:
        if self.track is not None:
            self.track.stop()


async def _admin(url: str, body: dict[str, Any], plugin: str = VIDEOROOM) -> dict[str, Any]:
    session = JanusSession(parse_janus_url(url))
    try:
        await session.create()
        handle = await session.attach(plugin)
        data, _ = await session.message(handle, body)
        return data
    finally:
        await session.destroy()


async def list_participants(url: str) -> list[dict[str, Any]]:
    """The room's participants as Janus lists them (``display``, ``publisher``, ...)."""
    address: JanusAddress = parse_janus_url(url)
    data = await _admin(url, {"request": "listparticipants", "room": address.room})
    return list(data.get("participants", []))


async def create_room(url: str, secret: str) -> None:
    """Create the room named by ``url`` (not permanent), with admin ``secret``."""
    room = parse_janus_url(url).room
    await _admin(
        url,
        {
            "request": "create",
            "room": room,
            "secret": secret,
            "publishers": 16,
            "audiocodec": "opus",
        },
    )


async def destroy_room(url: str, secret: str) -> None:
    """Destroy the room named by ``url``; its participants get a ``destroyed`` event."""
    room = parse_janus_url(url).room
    await _admin(url, {"request": "destroy", "room": room, "secret": secret})


async def create_audio_room(url: str, secret: str, active_packets: int, level: int) -> None:
    """Create the AudioBridge room named by ``url`` (not permanent) with talking events over
    ``active_packets`` packets above ``level`` (``audio_level_average``)."""
    body = {
        "request": "create",
        "room": parse_janus_url(url).room,
        "secret": secret,
        "sampling_rate": 16000,
        "audiolevel_ext": True,
        "audiolevel_event": True,
        "audio_active_packets": active_packets,
        "audio_level_average": level,
    }
    await _admin(url, body, AUDIOBRIDGE)
