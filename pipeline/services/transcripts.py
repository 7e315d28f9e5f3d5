"""Transcripts: transcribing a recorded file through the sealed path, and delivery."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from keys.errors import Conflict
from keys.types import KeyUse, Purpose
from pipeline.audio.decode import SAMPLE_RATE, decode_file
from pipeline.audio.segmenter import Segmenter, pack
from pipeline.datakeys import data_key
from pipeline.models import AudioSegment, Meeting, TranscriptSegment
from pipeline.runtime import Runtime
from pipeline.sealing import open_transcript
from pipeline.services.meetings import create_meeting

__all__ = ["FileJob", "read_transcript", "submit_file", "wait_for"]

FILE_PARTICIPANT = "file"


@dataclass(frozen=True)
class FileJob:
    meeting: Meeting
    segments: int
    audio_seconds: float


def submit_file(rt: Runtime, path: Path, tenant_id: str, meeting_id: str | None = None) -> FileJob:
    """Decode ``path`` in memory, cut it into utterances, seal and enqueue each.

    Without ``meeting_id`` a new meeting is created with transcription on (the customer
    asked for this file to be transcribed); an existing meeting must have it on."""
    rt.store.tenants.get(tenant_id)
    if meeting_id is not None:
        meeting = rt.store.meetings.get(meeting_id, tenant_id)
        if not meeting.transcription:
            raise Conflict(
                f"transcription is off for meeting {meeting_id}; switch it on "
                "first (sealscribe meeting transcription MEETING on)"
            )
    from pipeline.capture import Capture  # capture needs this package: import it late

    pcm = decode_file(path, rt.settings.max_file_seconds)  # before creating anything
    if meeting_id is None:
        meeting = create_meeting(rt, tenant_id, transcription=True)
    capture = Capture(rt, meeting)
    segmenter = Segmenter()
    # A file is not live: join utterances into ~28 s windows (see pack) for throughput.
    utterances = pack([*segmenter.feed(pcm), *segmenter.flush()], pcm, SAMPLE_RATE)
    for seq, utt in enumerate(utterances):
        capture.submit(AudioSegment(FILE_PARTICIPANT, seq, utt.start_ms, SAMPLE_RATE, utt.pcm))
    return FileJob(meeting, capture.sealed, len(pcm) / (2 * SAMPLE_RATE))


def wait_for(
    rt: Runtime,
    job: FileJob,
    progress: Callable[[int, int], None],
    timeout: float,
    poll: float = 0.2,
) -> None:
    """Block until no audio of the job's meeting is pending, calling
    ``progress(done, total)``; raises :class:`Conflict` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pending = rt.store.segments.pending_count(job.meeting.id)
        progress(job.segments - pending, job.segments)
        if pending == 0:
            return
        if time.monotonic() > deadline:
            raise Conflict(
                f"{pending} of {job.segments} segments still waiting after "
                f"{timeout:g} s; is a worker running (sealscribe worker)?"
            )
        time.sleep(poll)


def read_transcript(
    rt: Runtime, meeting_id: str, tenant_id: str | None = None
) -> list[TranscriptSegment]:
    """The meeting's transcript in time order, opened for the customer (purpose deliver)."""
    meeting = rt.store.meetings.get(meeting_id, tenant_id)
    sealed = rt.store.segments.transcript(meeting.id)
    if not sealed:
        return []
    key = data_key(rt, meeting, KeyUse.TRANSCRIPT, Purpose.DELIVER)
    return [open_transcript(key, meeting.tenant_id, s) for s in sealed]
