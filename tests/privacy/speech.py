"""Canary phrases spoken by espeak-ng, in memory only, and a participant who says them.

``espeak-ng --stdout`` writes a WAV to a pipe; it is decoded and resampled to 16 kHz here,
so no canary audio is ever written to disk. :class:`Speaker` is a WebRTC audio track that
sends silence in real time and, when told to, a phrase: a participant the test can make
talk at the moment it chooses (switch off, then speak; join, speak, leave).
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

__all__ = ["CANARIES", "PHRASES", "Speaker", "require_espeak", "speak"]

RATE = 16000
FRAME = RATE // 50  # 20 ms

#: One canary word per role, each in a sentence that tiny.en transcribes reliably from
#: espeak-ng's en-us voice (checked by ear and by the model: Brambleton, Harrowgate and
#: Ravenscroft come back misspelled, so they would prove nothing).
PHRASES = {
    "Flintwick": "The Flintwick protocol is ready",
    "Copperfield": "The Copperfield account is overdue",
    "Kensington": "The Kensington office is closed",
    "Pemberton": "The Pemberton report is late",
    "Wimbledon": "The Wimbledon project is cancelled",
}
CANARIES = tuple(PHRASES)


def require_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip(
            "espeak-ng (Debian package espeak-ng) is needed to speak the canary "
            "phrases; scripts/setup installs it"
        )


def _wav_samples(wav: bytes) -> tuple[np.ndarray, int]:
    """The s16 samples and rate of a WAV espeak-ng wrote to a pipe (its header claims an
    unknown length, so the data chunk runs to the end)."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise ValueError("espeak-ng did not write a WAV")
    pos, rate = 12, 0
    while pos + 8 <= len(wav):
        chunk, size = wav[pos : pos + 4], struct.unpack("<I", wav[pos + 4 : pos + 8])[0]
        if chunk == b"fmt ":
            channels, rate = struct.unpack("<HI", wav[pos + 10 : pos + 16])
            if channels != 1:
                raise ValueError("espeak-ng wrote more than one channel")
        elif chunk == b"data":
            data = wav[pos + 8 :]
            return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2"), rate
        pos += 8 + size
    raise ValueError("the WAV has no data chunk")


@functools.cache
def speak(text: str, lead_s: float = 0.3) -> bytes:
    """``text`` spoken by espeak-ng (en-us, 160 wpm) as 16 kHz mono s16 PCM, in memory."""
    require_espeak()
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "160", "--stdout", text],
        check=True,
        capture_output=True,
        timeout=30,
    ).stdout
    samples, rate = _wav_samples(wav)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    out = b"".join(
        bytes(f.planes[0])[: f.samples * 2]
        for f in [*resampler.resample(frame), *resampler.resample(None)]
    )
    return bytes(int(lead_s * RATE) * 2) + out


@dataclass
class _Utterance:
    samples: np.ndarray
    done: asyncio.Event


class Speaker(MediaStreamTrack):
    """A participant's microphone: silence in real time (``speed`` times faster), and each
    phrase given to :meth:`say` when its turn comes."""

    kind = "audio"

    def __init__(self, speed: float = 1.0) -> None:
        super().__init__()
        self.speed = speed
        #: the WHIP session's URL while this speaker publishes into a meeting
        self.session: str | None = None
        self._queue: list[_Utterance] = []
        self._pos = 0  # samples of the current utterance already sent
        self._frames = 0
        self._start: float | None = None

    def say(self, pcm: bytes) -> asyncio.Event:
        """Queue ``pcm``; the event is set once its last sample was sent."""
        utterance = _Utterance(np.frombuffer(pcm, dtype="<i2"), asyncio.Event())
        self._queue.append(utterance)
        return utterance.done

    async def says(self, *texts: str) -> None:
        """Say each text and return when the last sample is sent."""
        done = [self.say(speak(t)) for t in texts]
        await done[-1].wait()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._frames * 0.02 / self.speed - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk = np.zeros(FRAME, dtype=np.int16)
        if self._queue:
            current = self._queue[0]
            piece = current.samples[self._pos : self._pos + FRAME]
            chunk[: piece.size] = piece
            self._pos += FRAME
            if self._pos >= current.samples.size:
                self._queue.pop(0)
                self._pos = 0
                current.done.set()
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._frames * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._frames += 1
        return frame
