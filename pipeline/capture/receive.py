"""Received audio decoded in the event loop, as mono, instead of in a thread per track.

aiortc (1.x) gives each receiver a decoder thread: the event loop puts every complete
encoded frame on a ``queue.Queue``, the thread decodes it and hands each decoded 20 ms frame
back with ``run_coroutine_threadsafe``. Per frame that is a thread wake-up, two hand-overs of
the GIL, a future and a write to the loop's self-pipe; with 50 tracks, 2500 of each a second
in a capture process whose one core is the limit. Decoding a 20 ms Opus frame costs a few
tens of microseconds, less than the hand-overs, so capture decodes in the loop instead:
:func:`decode_in_loop` swaps the receiver's decoder queue, before the receiver starts, for a
:class:`LoopDecoder` whose ``put`` decodes at once and queues the frames on the track. The
thread aiortc still starts waits, idle, until the receiver stops.

Opus is decoded as mono (libopus mixes the channels down while decoding): capture wants
16 kHz mono, and a stereo frame costs more to decode and twice as much to resample.

The swap reaches into aiortc's private attributes, so it checks the receiver looks as
expected and otherwise leaves aiortc's own thread to decode (``tests/unit/test_receive.py``
fails if an upgrade of aiortc stops it from applying).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Any

import av
from aiortc import RTCRtpReceiver
from aiortc.codecs import get_decoder
from aiortc.codecs.opus import OpusDecoder

__all__ = ["LoopDecoder", "MonoOpusDecoder", "decode_in_loop"]

log = logging.getLogger(__name__)

_QUEUE = "_RTCRtpReceiver__decoder_queue"
_STARTED = "_RTCRtpReceiver__started"


class MonoOpusDecoder(OpusDecoder):
    """aiortc's Opus decoder (libopus, 48 kHz, s16), asking libopus for one channel."""

    def __init__(self) -> None:
        super().__init__()
        self.codec.layout = "mono"  # set before the codec opens, at the first decode


def _decoder(codec: Any) -> Any:
    if codec.name.lower() == "opus":
        return MonoOpusDecoder()
    return get_decoder(codec)  # aiortc's, for the other audio codecs it negotiates


class LoopDecoder:
    """Stands in for a receiver's decoder queue: ``put`` decodes in the caller (the event
    loop) and queues the decoded frames on the track; ``None`` ends the track."""

    def __init__(self, frames: asyncio.Queue[Any]) -> None:
        self._frames = frames
        self._codec_name: str | None = None
        self._decoder: Any = None
        self._stopped = threading.Event()
        #: frames libav could not decode (skipped, as aiortc's thread does)
        self.errors = 0

    def put(self, task: tuple[Any, Any] | None) -> None:
        if task is None:
            self._frames.put_nowait(None)
            self._stopped.set()
            return
        codec, encoded = task
        if codec.name != self._codec_name:
            self._decoder, self._codec_name = _decoder(codec), codec.name
        try:
            frames = self._decoder.decode(encoded)
        except av.FFmpegError:
            self.errors += 1
            if self.errors == 1:
                log.warning("a received audio frame could not be decoded (skipped)")
            return
        for frame in frames:
            self._frames.put_nowait(frame)

    def get(self) -> None:
        """Where aiortc's decoder thread waits, idle, until the receiver stops (its end
        marker then reaches a track that already ended)."""
        self._stopped.wait()


def decode_in_loop(receiver: RTCRtpReceiver) -> bool:
    """Make ``receiver`` (an audio receiver not yet started: right after
    ``setRemoteDescription``) decode in the event loop. False, and nothing changed, when
    this aiortc's receiver is not laid out as expected; its own thread then decodes."""
    track = getattr(receiver, "_track", None)
    frames = getattr(track, "_queue", None)
    if (
        getattr(track, "kind", None) != "audio"
        or getattr(receiver, _STARTED, True)
        or not isinstance(getattr(receiver, _QUEUE, None), queue.Queue)
        or not isinstance(frames, asyncio.Queue)
    ):
        return False
    setattr(receiver, _QUEUE, LoopDecoder(frames))
    return True
