"""A recorded file as a source of capture: decoded in memory, cut into utterances, packed into
windows, and handed to the same sealer and sink as a live participant's track.

Speech is found as on a live track, by the Silero voice detector (:mod:`pipeline.audio.vad`;
``SEALSCRIBE_VAD=energy``: the segmenter's energy rule), so steady noise or music in a
recording is not sealed as utterances; a file is one track, so there is no crosstalk to
compare. Only two things differ from a live track, both because a file can wait: utterances
are packed into ~28 s windows for throughput (latency does not matter), and when the sealed
backlog is full the file waits for room instead of dropping (:class:`~pipeline.capture.sink.
Sink`, ``wait_for_room``), so nothing of a file is lost to backpressure. The policy (switch,
opt-outs, revocation) and every fault hook of capture apply to files exactly as to tracks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

from keys.errors import KeyRevoked
from pipeline.audio.decode import SAMPLE_RATE, decode_file
from pipeline.audio.segmenter import Segmenter, Utterance, pack
from pipeline.audio.vad import SileroSpeech, segmenter_config
from pipeline.capture.crosstalk import LiveTrack
from pipeline.capture.policy import MeetingPolicy
from pipeline.capture.session import CaptureSession
from pipeline.capture.sink import CaptureStats
from pipeline.errors import NotFound
from pipeline.models import AudioSegment, Meeting
from pipeline.runtime import Runtime

__all__ = ["FILE_PARTICIPANT", "capture_segments", "decode", "feed", "file_segments"]

#: the participant a file's audio is sealed under
FILE_PARTICIPANT = "file"
#: bytes of PCM given to the voice detector at a time (60 s)
_PIECE = 60 * SAMPLE_RATE * 2


def decode(path: Path, max_seconds: float) -> bytes:
    """The file's first audio stream as 16 kHz mono s16le PCM, in memory (never a temp
    file); :class:`~pipeline.errors.InvalidInput` if it is not readable audio or too long."""
    return decode_file(path, max_seconds)


def file_segments(
    pcm: bytes, participant: str = FILE_PARTICIPANT, vad: str = "silero"
) -> list[AudioSegment]:
    """``pcm`` cut into utterances by the voice-activity segmenter (speech found by ``vad``:
    ``silero`` or ``energy``) and joined into ~28 s windows (see
    :func:`~pipeline.audio.segmenter.pack`), numbered from 0."""
    if vad == "silero":
        segmenter = Segmenter(segmenter_config())
        voice = LiveTrack(SileroSpeech(), None, participant, 0)
        found: list[Utterance] = []
        # in pieces: the detector's float copy of a 4-hour file at once would be a gigabyte
        for at in range(0, len(pcm), _PIECE):
            whole, speech = voice.feed(pcm[at : at + _PIECE])
            found += segmenter.feed(whole, speech)
        found += segmenter.flush()
    else:
        segmenter = Segmenter()
        found = [*segmenter.feed(pcm), *segmenter.flush()]
    # windows are cut from the original pcm (a remainder under one frame is never speech)
    utterances = pack(found, pcm, SAMPLE_RATE)
    # a window holding a cut (an utterance longer than the segmenter's maximum) overlaps its
    # neighbour and says which words are its own, as a live piece does
    return [
        AudioSegment(
            participant,
            seq,
            utt.start_ms,
            SAMPLE_RATE,
            utt.pcm,
            keep_from_ms=utt.keep_from_ms,
            keep_to_ms=utt.keep_to_ms,
        )
        for seq, utt in enumerate(utterances)
    ]


def _refuse_if_gone(policy: MeetingPolicy) -> None:
    # A live track goes quiet when its tenant revokes or its meeting is deleted; the caller
    # of a file asked for a transcript and is told why there will be none.
    if policy.revoked:
        raise KeyRevoked(f"the key of tenant {policy.meeting.tenant_id} was revoked")
    if policy.ended:
        raise NotFound(f"no meeting {policy.meeting.id}")


async def feed(session: CaptureSession, segments: Iterable[AudioSegment]) -> None:
    """Hand ``segments`` in order to the session's sealer, then wait until every one sealed
    is stored and queued.

    Raises:
      KeyRevoked: the tenant revoked its key (before or during the file).
      NotFound: the meeting was deleted.
      StoreUnavailable: Redis took nothing for 10 s while segments waited.
    """
    await session.policy.refresh()
    for segment in segments:
        _refuse_if_gone(session.policy)
        await session.sealer.submit(segment)
    await session.sink.flush()
    await session.policy.refresh()
    _refuse_if_gone(session.policy)


def capture_segments(
    rt: Runtime, meeting: Meeting, segments: Iterable[AudioSegment]
) -> CaptureStats:
    """Seal, store and queue recorded ``segments`` of ``meeting`` through the capture path
    (policy, sealer, sink) and return what it did; blocks until all are stored. Segments the
    policy refuses (off, opted out) are dropped and counted, as for a live track."""

    async def run() -> CaptureStats:
        async with CaptureSession(rt, meeting, wait_for_room=True) as session:
            await feed(session, segments)
        return session.stats

    return asyncio.run(run())
