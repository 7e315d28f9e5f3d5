"""Live captions: each transcript segment as the worker stores it, resumable by cursor.

The worker appends the segment's *id* to the meeting's caption stream in the same
transaction that stores the sealed transcript (``SegmentStore.complete``). A follower reads
the stream from its cursor (a stream entry id; ``0`` for everything still kept, ``$`` for
only what comes next), opens each segment with the transcript key unwrapped once for
purpose ``deliver`` (audited), and hands it on with the cursor to resume from, so a client
that reconnects with the last cursor it saw misses nothing and gets nothing twice.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from keys.types import DataKey, KeyUse, Purpose
from pipeline import faults
from pipeline.datakeys import data_key
from pipeline.errors import InvalidInput, StoreUnavailable
from pipeline.models import Meeting, TranscriptSegment
from pipeline.runtime import Runtime
from pipeline.sealing import open_transcript
from pipeline.store import schema
from pipeline.store.connection import as_str

__all__ = ["Caption", "follow_captions", "parse_cursor"]

_CURSOR = re.compile(r"\A(0|\$|[0-9]{1,20}-[0-9]{1,20})\Z")


@dataclass(frozen=True)
class Caption:
    cursor: str
    segment: TranscriptSegment

    def to_dict(self) -> dict[str, object]:
        s = self.segment
        return {
            "cursor": self.cursor,
            "participant": s.participant_id,
            "start_ms": s.start_ms,
            "end_ms": s.end_ms,
            "text": s.text,
            "language": s.language,
        }


def parse_cursor(cursor: str | None) -> str:
    cursor = cursor or "0"
    if not _CURSOR.match(cursor):
        raise InvalidInput("cursor must be 0, $ or a caption cursor such as 1700000000000-0")
    return cursor


async def follow_captions(
    rt: Runtime, meeting: Meeting, cursor: str = "0", block_ms: int = 1000
) -> AsyncGenerator[Caption, None]:
    """Captions after ``cursor`` until the caller stops iterating."""
    cursor = "$" if faults.on("captions-ignore-cursor") else parse_cursor(cursor)
    client = aioredis.Redis.from_url(rt.settings.redis_url, socket_connect_timeout=5)
    key: DataKey | None = None
    stream = schema.meeting_captions(meeting.id)
    try:
        if cursor == "$":  # resolve "from now" once, so reconnecting never skips
            last: Any = await client.xrevrange(stream, count=1)
            cursor = as_str(last[0][0]) if last else "0"
        while True:
            try:
                got: Any = await client.xread({stream: cursor}, count=100, block=block_ms)
            except (aioredis.ConnectionError, aioredis.TimeoutError):
                raise StoreUnavailable("Redis is unreachable") from None
            entries = got[0][1] if got else []
            if not entries:
                continue
            sids = [as_str(fields[b"sid"]) for _, fields in entries]
            sealed = await asyncio.to_thread(
                rt.store.segments.transcript_segments, meeting.id, sids
            )
            if key is None and sealed:
                key = await asyncio.to_thread(
                    data_key, rt, meeting, KeyUse.TRANSCRIPT, Purpose.DELIVER
                )
            by_sid = {s.segment_id: s for s in sealed}
            for entry_id, fields in entries:
                cursor = as_str(entry_id)
                segment = by_sid.get(as_str(fields[b"sid"]))
                if segment is not None and key is not None:  # expired ones are skipped
                    yield Caption(cursor, open_transcript(key, meeting.tenant_id, segment))
    finally:
        await client.aclose()
