"""Decode any audio or video file PyAV can read into 16 kHz mono s16 PCM, in memory.

Nothing is written to disk: the file is read by FFmpeg's demuxer and decoded frames are
resampled straight into a bytearray.
"""

from __future__ import annotations

import io
from pathlib import Path

import av

from pipeline.errors import InvalidInput

__all__ = ["SAMPLE_RATE", "decode_bytes", "decode_file"]

SAMPLE_RATE = 16000


def decode_file(path: Path, max_seconds: float) -> bytes:
    """The first audio stream of ``path`` as 16 kHz mono s16le PCM.

    Raises:
      InvalidInput: the file is missing, empty, not decodable audio, has no audio stream,
        holds no samples, or is longer than ``max_seconds``.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{path} is empty")
    return _decode(str(path), str(path), max_seconds)


def decode_bytes(data: bytes, max_seconds: float, name: str = "the audio") -> bytes:
    """As :func:`decode_file`, for a file held in memory (``name`` says what it is)."""
    if not data:
        raise InvalidInput(f"{name} is empty")
    return _decode(io.BytesIO(data), name, max_seconds)


def _decode(source: str | io.BytesIO, name: str, max_seconds: float) -> bytes:
    limit = int(max_seconds * SAMPLE_RATE) * 2
    out = bytearray()
    try:
        with av.open(source, mode="r") as container:
            if not container.streams.audio:
                raise InvalidInput(f"{name} has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for chunk in resampler.resample(frame):
                    out += bytes(chunk.planes[0])[: chunk.samples * 2]
                if len(out) > limit:
                    raise InvalidInput(
                        f"{name} is longer than the limit of {max_seconds:g} s "
                        "(SEALSCRIBE_MAX_FILE_SECONDS)"
                    )
            for chunk in resampler.resample(None):
                out += bytes(chunk.planes[0])[: chunk.samples * 2]
    except av.error.FFmpegError as exc:
        raise InvalidInput(
            f"{name} is not a readable audio or video file ({type(exc).__name__})"
        ) from None
    if len(out) > limit:
        raise InvalidInput(
            f"{name} is longer than the limit of {max_seconds:g} s (SEALSCRIBE_MAX_FILE_SECONDS)"
        )
    if not out:
        raise InvalidInput(f"{name} holds no audio samples")
    return bytes(out)
