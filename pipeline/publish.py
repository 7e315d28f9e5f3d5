"""A WHIP publisher: sends PCM (a decoded file) into a meeting as one participant.

This is a client, not part of capture: ``sealscribe demo`` uses it to publish its bundled
meeting over real WebRTC, and the tests and benchmarks use it as a stand-in for a browser or
OBS. :class:`PcmTrack` paces audio in real time from memory (no file is played from disk),
then sends silence until the publisher stops, so the receiver hears a normal end of speech.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from urllib.parse import urljoin

import aiohttp
import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from pipeline.capture.ice import rtc_configuration
from pipeline.errors import InvalidInput, SealscribeError

__all__ = ["PcmTrack", "VoiceTrack", "WhipPublisher"]

FRAME_MS = 20
#: redirects of an offer followed (the WHIP endpoint sends it to the meeting's process)
MAX_REDIRECTS = 3


class PcmTrack(MediaStreamTrack):
    """Mono s16 PCM at ``sample_rate``, as 20 ms audio frames in real time."""

    kind = "audio"

    def __init__(
        self,
        pcm: bytes,
        sample_rate: int = 16000,
        tail_silence: float = 1.5,
        speed: float = 1.0,
        gate: asyncio.Event | None = None,
    ) -> None:
        super().__init__()
        #: >1 sends faster than real time (tests and benchmarks; the audio is unchanged)
        self.speed = speed
        #: the first frame waits for it: the tracks of one recorded meeting, connected one
        #: after the other, start together, as the people of a live meeting speak together
        self.gate = gate
        self.samples = np.frombuffer(pcm, dtype="<i2")
        self.rate = sample_rate
        self.per_frame = sample_rate * FRAME_MS // 1000
        self.tail = int(tail_silence * 1000 / FRAME_MS)
        self._pos = 0
        self._start: float | None = None
        #: set once every sample was sent (and the silence after it)
        self.finished = asyncio.Event()
        #: wall-clock time (time.time()) at which the last sample was sent
        self.ended_at: float | None = None
        #: frames sent more than 100 ms after their time (the sender could not keep up)
        self.late = 0

    @property
    def duration(self) -> float:
        return len(self.samples) / self.rate

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            if self.gate is not None:
                await self.gate.wait()
            self._start = time.monotonic()
        index = self._pos // self.per_frame
        wait = self._start + index * FRAME_MS / 1000 / self.speed - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.1:
            self.late += 1
        chunk = self.samples[self._pos : self._pos + self.per_frame]
        if chunk.size < self.per_frame:
            if self.ended_at is None:
                self.ended_at = time.time()
            if index * self.per_frame >= len(self.samples) + self.tail * self.per_frame:
                self.finished.set()
            chunk = np.concatenate([chunk, np.zeros(self.per_frame - chunk.size, np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pos
        frame.time_base = fractions.Fraction(1, self.rate)
        self._pos += self.per_frame
        return frame


class VoiceTrack(MediaStreamTrack):
    """Silence in real time, and whatever :meth:`say` is given, as 20 ms frames: the voice of
    a participant that is in a room all along and speaks now and then (the bot in a mixed
    room, which cannot publish a separate track for an announcement)."""

    kind = "audio"

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__()
        self.rate = sample_rate
        self.per_frame = sample_rate * FRAME_MS // 1000
        self._pcm = np.zeros(0, dtype=np.int16)
        self._said: asyncio.Event | None = None
        self._start: float | None = None
        self._frames = 0

    async def say(self, pcm: bytes) -> None:
        """Send mono s16 ``pcm`` next; returns once its last sample went out."""
        if self._said is not None:
            raise RuntimeError("the voice is already saying something")
        self._pcm = np.frombuffer(pcm, dtype="<i2")
        self._said = said = asyncio.Event()
        try:
            await said.wait()
        finally:
            self._said, self._pcm = None, np.zeros(0, dtype=np.int16)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._frames * FRAME_MS / 1000 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk, self._pcm = self._pcm[: self.per_frame], self._pcm[self.per_frame :]
        if chunk.size < self.per_frame:
            if self._said is not None and not self._pcm.size:
                self._said.set()
            chunk = np.concatenate([chunk, np.zeros(self.per_frame - chunk.size, np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._frames * self.per_frame
        frame.time_base = fractions.Fraction(1, self.rate)
        self._frames += 1
        return frame


class WhipPublisher:
    """One WHIP session: ``await start()`` publishes ``track``; ``await stop()`` ends it."""

    def __init__(
        self, endpoint: str, token: str, track: MediaStreamTrack, participant: str | None = None
    ) -> None:
        self.endpoint = endpoint
        self.token = token
        self.track = track
        self.participant = participant
        self.pc = RTCPeerConnection(rtc_configuration())
        self.resource: str | None = None

    async def start(self, timeout: float = 15.0) -> None:
        self.pc.addTransceiver(self.track, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        params = {"participant": self.participant} if self.participant else {}
        endpoint = self.endpoint
        async with aiohttp.ClientSession() as http:
            # A WHIP endpoint may redirect an offer (RFC 9725 section 4.5; sealscribe sends a
            # meeting's sessions to the process holding the others). Followed here, not by
            # aiohttp, which would drop the Authorization header for another host; the
            # Location already carries the query, so params go to the first request only.
            for _ in range(MAX_REDIRECTS + 1):
                async with http.post(
                    endpoint,
                    data=self.pc.localDescription.sdp,
                    params=params,
                    headers={
                        "Content-Type": "application/sdp",
                        "Authorization": f"Bearer {self.token}",
                    },
                    timeout=aiohttp.ClientTimeout(total=timeout),
                    allow_redirects=False,
                ) as resp:
                    body = await resp.text()
                    location = resp.headers.get("Location", "")
                    status = resp.status
                if status in (307, 308) and location:
                    endpoint, params = urljoin(endpoint, location), {}
                    continue
                break
            if status != 201:
                await self.pc.close()
                raise InvalidInput(
                    f"the WHIP endpoint refused the offer ({status}): {_detail(body)}"
                )
            self.resource = urljoin(endpoint, location)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                await self.stop()
                raise SealscribeError(
                    f"the WHIP connection did not come up ({self.pc.connectionState})"
                )
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.resource is not None:
            resource, self.resource = self.resource, None
            try:
                async with (
                    aiohttp.ClientSession() as http,
                    http.delete(
                        resource,
                        headers={"Authorization": f"Bearer {self.token}"},
                        timeout=aiohttp.ClientTimeout(total=10),
                    ),
                ):
                    pass
            except (aiohttp.ClientError, TimeoutError):
                pass  # the server ends the session itself when the connection closes
        await self.pc.close()


def _detail(body: str) -> str:
    import json

    try:
        return str(json.loads(body).get("detail", ""))[:300]
    except (ValueError, AttributeError):
        return body[:300]
