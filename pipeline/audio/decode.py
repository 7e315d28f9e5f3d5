"""Decode any audio or video file PyAV can read into 16 kHz mono s16 PCM, in memory.

Nothing is written to disk: the file is read by FFmpeg's demuxer and decoded frames are
resampled straight into a bytearray.
"""

from __future__ import annotations

from pathlib import Path

import av

from pipeline.errors import InvalidInput

__all__ = ["SAMPLE_RATE", "decode_file"]

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
    limit = int(max_seconds * SAMPLE_RATE) * 2
    out = bytearray()
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                raise InvalidInput(f"{path} has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for chunk in resampler.resample(frame):
                    out += bytes(chunk.planes[0])[: chunk.samples * 2]
                if len(out) > limit:
                    raise InvalidInput(
                        f"{path} is longer than the limit of {max_seconds:g} s "
                        "(SEALSCRIBE_MAX_FILE_SECONDS)"
                    )
            for chunk in resampler.resample(None):
                out += bytes(chunk.planes[0])[: chunk.samples * 2]
    except av.error.FFmpegError as exc:
        raise InvalidInput(
            f"{path} is not a readable audio or video file ({type(exc).__name__})"
        ) from None
    if len(out) > limit:
        raise InvalidInput(
            f"{path} is longer than the limit of {max_seconds:g} s (SEALSCRIBE_MAX_FILE_SECONDS)"
        )
    if not out:
        raise InvalidInput(f"{path} holds no audio samples")
    return bytes(out)
