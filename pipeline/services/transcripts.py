"""Transcripts: transcribing a recorded file through the sealed path, and delivery."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from keys.types import KeyUse, Purpose
from pipeline.audio.decode import SAMPLE_RATE
from pipeline.datakeys import ParticipantKeys
from pipeline.errors import Conflict
from pipeline.models import Meeting, TranscriptSegment
from pipeline.runtime import Runtime
from pipeline.sealing import open_transcript
from pipeline.services.meetings import create_meeting
from pipeline.store.meetings import SPEAKERS_TALKING

__all__ = ["FileJob", "read_transcript", "speakers_note", "submit_file", "wait_for"]


@dataclass(frozen=True)
class FileJob:
    meeting: Meeting
    segments: int
    audio_seconds: float


def submit_file(rt: Runtime, path: Path, tenant_id: str, meeting_id: str | None = None) -> FileJob:
    """Decode ``path`` in memory, cut it into utterances, seal and enqueue each, through
    the capture path live tracks take (:mod:`pipeline.capture.file`).

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
    # imported when used: capture brings the Celery client, which most users of services skip
    from pipeline.capture.file import capture_segments, decode, file_segments

    pcm = decode(path, rt.settings.max_file_seconds)  # before creating anything
    if meeting_id is None:
        meeting = create_meeting(rt, tenant_id, transcription=True)
    # A file is not live: its utterances are joined into ~28 s windows for throughput.
    stats = capture_segments(rt, meeting, file_segments(pcm, vad=rt.settings.vad))
    return FileJob(meeting, stats.stored, len(pcm) / (2 * SAMPLE_RATE))


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
    keys = ParticipantKeys(rt, meeting, KeyUse.TRANSCRIPT, Purpose.DELIVER)
    return [open_transcript(keys(s.participant_id), meeting.tenant_id, s) for s in sealed]


def speakers_note(rt: Runtime, meeting_id: str) -> tuple[str, str]:
    """Where the meeting's speaker names come from, and what that means, for a reader of its
    transcript: ``tracks`` (each participant's own audio) or ``talking-events`` (a mixed
    room: who the room reported talking; speech of several at once is under all of them)."""
    source = rt.store.meetings.speaker_source(meeting_id)
    if source == SPEAKERS_TALKING:
        return source, (
            "speakers from the room's talking events (one mixed track, not separate tracks); "
            "speech of several at once is under all their names"
        )
    return source, "speakers from each participant's own audio track"
