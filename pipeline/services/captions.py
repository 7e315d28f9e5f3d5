"""Live captions: each transcript segment as the worker stores it, resumable by cursor, and
the interim captions of utterances still being spoken.

The worker appends the segment's *id* to the meeting's caption stream in the same
transaction that stores the sealed transcript (``SegmentStore.complete``). A follower reads
the stream from its cursor (a stream entry id; ``0`` for everything still kept, ``$`` for
only what comes next), opens each segment with the transcript key unwrapped once for
purpose ``deliver`` (audited), and hands it on with the cursor to resume from, so a client
that reconnects with the last cursor it saw misses nothing and gets nothing twice.

Stream entries come in two shapes: a final ``{sid}`` (the segment id, ``PARTICIPANT.SEQ``)
and an interim ``{sid, kind: "interim", part}``, where ``sid`` is the id its utterance's
final will have. An interim's text is not in the stream's entry but in its participant's
one interim slot (:class:`~pipeline.store.interims.InterimStore`), which holds only the
newest interim of the utterance in progress: an interim entry is delivered only while the
slot still holds exactly that utterance and part, and skipped once a newer interim or the
final replaced it (the cursor moves over it either way). A client shows an interim in the
place of its utterance and replaces it with newer interims, then with the final
(:meth:`Caption.to_dict` says which is which).

Every follower in a process shares one :class:`CaptionHub`: a small pool of Redis
connections (not one per socket), one blocking reader that watches every followed meeting's
stream and wakes that meeting's followers, and, for the API's caption sockets, the caps per
meeting and per tenant and a check every :data:`CHECK_INTERVAL` seconds that the token each
socket was opened with (directly or through a ticket) still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.crc import key_slot

from keys.errors import KeyRevoked
from keys.types import KeyUse, Purpose
from pipeline import faults
from pipeline.aio import cancel_all, raise_if_cancelled
from pipeline.datakeys import ParticipantKeys
from pipeline.errors import (
    AuthenticationFailed,
    InvalidInput,
    QuotaExceeded,
    StoreUnavailable,
)
from pipeline.models import Meeting, SealedSegment, TranscriptSegment, parse_segment_id, segment_id
from pipeline.runtime import Runtime
from pipeline.sealing import open_interim_transcript, open_transcript
from pipeline.store import schema
from pipeline.store.connection import as_str, async_client, close_async, is_cluster
from pipeline.store.leases import MEETING_FULL

__all__ = [
    "CHECK_INTERVAL",
    "Caption",
    "CaptionHub",
    "CaptionSocket",
    "follow_captions",
    "parse_cursor",
]

log = logging.getLogger(__name__)

#: seconds between checks that each open socket's token still holds (and lease renewals)
CHECK_INTERVAL = 2.0
#: seconds a socket counts against the caps without a renewal (its process died)
LEASE = 30.0
#: Redis connections a process's followers share (one of them blocks in the reader)
POOL_SIZE = 8
#: how long the reader blocks before it looks again at which meetings are followed
READ_BLOCK_MS = 250
#: a follower re-reads its stream at least this often, woken or not
FALLBACK_S = 5.0
#: sockets being admitted at once (each admission takes a thread and a Redis connection)
ADMITTING = 8

_CURSOR = re.compile(r"\A(0|\$|[0-9]{1,20}-[0-9]{1,20})\Z")


@dataclass(frozen=True)
class Caption:
    """One caption as followers get it: a final segment, or an interim (``segment.part``
    >= 1) of an utterance still being spoken."""

    cursor: str
    segment: TranscriptSegment

    @property
    def kind(self) -> str:
        return "interim" if self.segment.part else "final"

    @property
    def utterance(self) -> str:
        """The utterance's id: its final segment's id, shared by all its interims."""
        return segment_id(self.segment.participant_id, self.segment.seq)

    def to_dict(self) -> dict[str, object]:
        """The caption as sent to clients: ``kind`` is ``final`` or ``interim``; an interim
        also has ``part`` (newer interims of an utterance have higher parts). A client
        replaces what it shows for ``utterance`` with each newer interim and with the final.
        """
        s = self.segment
        doc: dict[str, object] = {"kind": self.kind, "cursor": self.cursor}
        doc["utterance"] = self.utterance
        if s.part:
            doc["part"] = s.part
        doc |= {
            "participant": s.participant_id,
            "start_ms": s.start_ms,
            "end_ms": s.end_ms,
            "text": s.text,
            "language": s.language,
        }
        return doc


def parse_cursor(cursor: str | None) -> str:
    cursor = cursor or "0"
    if not _CURSOR.match(cursor):
        raise InvalidInput("cursor must be 0, $ or a caption cursor such as 1700000000000-0")
    return cursor


@dataclass(eq=False)
class CaptionSocket:
    """One open caption socket, as the hub counts and checks it."""

    tenant_id: str
    meeting_id: str
    #: SHA-256 of the token it was opened with (directly, or through a ticket)
    token_digest: str
    id: str = field(default_factory=lambda: "cs_" + secrets.token_hex(8))
    #: set to the reason when the socket must close (its token revoked, the key revoked)
    ended: asyncio.Future[Exception] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def end(self, reason: Exception) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)


class CaptionHub:
    """What one process's caption followers share: a connection pool, one reader that
    wakes followers, and (for sockets) the caps and the token check.

    Args:
        rt: the process's runtime (settings: Redis URL and the socket caps).
        pool_size: Redis connections shared by every follower.
    """

    def __init__(self, rt: Runtime, pool_size: int = POOL_SIZE) -> None:
        self.rt = rt
        self.redis = async_client(rt.settings.redis_url, max_connections=pool_size, timeout=10)
        self._cluster = is_cluster(rt.settings.redis_url)
        self._followers: dict[str, set[asyncio.Event]] = {}
        self._last: dict[str, str] = {}
        self._sockets: dict[str, CaptionSocket] = {}
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: held while a socket is admitted (signed in, counted): a burst of sockets waits
        #: here rather than holding a thread and a Redis connection each
        self.admitting = asyncio.Semaphore(ADMITTING)

    # -- waking followers ----------------------------------------------------------------

    def _start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._read(), name="captions-reader"),
                asyncio.create_task(self._check(), name="captions-check"),
            ]

    def watch(self, meeting_id: str) -> asyncio.Event:
        """An event set whenever the meeting's caption stream may have grown."""
        self._start()
        woken = asyncio.Event()
        self._followers.setdefault(meeting_id, set()).add(woken)
        self._wanted.set()
        return woken

    def unwatch(self, meeting_id: str, woken: asyncio.Event) -> None:
        followers = self._followers.get(meeting_id)
        if followers is None:
            return
        followers.discard(woken)
        if not followers:
            del self._followers[meeting_id]
            self._last.pop(meeting_id, None)

    def _wake(self, meeting_ids: Iterable[str]) -> None:
        for meeting_id in list(meeting_ids):
            for woken in self._followers.get(meeting_id, ()):
                woken.set()

    async def _read(self) -> None:
        """One blocking XREAD over every followed meeting's stream, from the newest entry
        each has: whatever arrives wakes that meeting's followers, who read for themselves."""
        while True:
            if not self._followers:
                self._wanted.clear()
                await self._wanted.wait()
                continue
            try:
                new = [m for m in self._followers if m not in self._last]
                if new:
                    pipe = self.redis.pipeline(transaction=False)
                    for m in new:
                        pipe.xrevrange(schema.meeting_captions(m), count=1)
                    for m, newest in zip(new, await pipe.execute(), strict=True):
                        if m in self._followers:  # (followers come and go during an await)
                            self._last[m] = as_str(newest[0][0]) if newest else "0-0"
                    self._wake(new)  # whatever came before the newest: followers read it
                by_stream = {schema.meeting_captions(m): m for m in self._last}
                streams: Any = {k: self._last[m] for k, m in by_stream.items()}
                if not streams:
                    continue
                got = await self._xread(streams, by_stream)
                raise_if_cancelled()  # else close() might never return
            except (aioredis.ConnectionError, aioredis.TimeoutError):
                self._wake(self._followers)  # they find out for themselves, and say so
                await asyncio.sleep(1)
                continue
            except Exception:  # never die: followers would then wait FALLBACK_S each time
                log.exception("caption reader failed; retrying")
                await asyncio.sleep(1)
                continue
            woke = []
            for stream, entries in got or []:
                meeting_id = by_stream.get(as_str(stream))
                if meeting_id is not None and entries and meeting_id in self._last:
                    self._last[meeting_id] = as_str(entries[-1][0])
                    woke.append(meeting_id)
            self._wake(woke)

    # -- sockets: caps and the token check -----------------------------------------------

    @contextlib.asynccontextmanager
    async def socket(
        self, tenant_id: str, meeting_id: str, token_digest: str
    ) -> AsyncIterator[CaptionSocket]:
        """Count a socket for the block; :class:`QuotaExceeded` when the meeting or the
        tenant already holds as many as the settings allow."""
        sock = CaptionSocket(tenant_id, meeting_id, token_digest)
        settings = self.rt.settings
        async with self.admitting:
            full = await asyncio.to_thread(
                self.rt.store.sockets.claim,
                tenant_id,
                meeting_id,
                sock.id,
                settings.caption_sockets_per_meeting,
                settings.caption_sockets_per_tenant,
                LEASE,
            )
        if full and not faults.on("caption-sockets-unbounded"):
            cap = (
                settings.caption_sockets_per_meeting
                if full == MEETING_FULL
                else settings.caption_sockets_per_tenant
            )
            raise QuotaExceeded(f"this {full} already has {cap} caption sockets open (the most)")
        self._start()
        self._sockets[sock.id] = sock
        try:
            yield sock
        finally:
            del self._sockets[sock.id]
            with contextlib.suppress(StoreUnavailable):
                await asyncio.to_thread(
                    self.rt.store.sockets.release, tenant_id, meeting_id, sock.id
                )

    def _verify(self, sockets: list[CaptionSocket]) -> dict[tuple[str, str], str]:
        self.rt.store.sockets.renew(((s.tenant_id, s.meeting_id, s.id) for s in sockets), LEASE)
        return self.rt.store.tokens.valid((s.tenant_id, s.token_digest) for s in sockets)

    async def _check(self) -> None:
        """Every few seconds: renew the sockets' leases, and end each socket whose token
        was revoked, rotated or expired, or whose tenant was erased or revoked its key."""
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            sockets = list(self._sockets.values())
            if not sockets:
                continue
            try:
                verdicts = await asyncio.to_thread(self._verify, sockets)
            except StoreUnavailable:
                log.warning("caption sockets: Redis unreachable, tokens not re-checked")
                continue
            for sock in sockets:
                why = verdicts.get((sock.tenant_id, sock.token_digest), "")
                if not why or faults.on("caption-socket-outlives-token"):
                    continue
                sock.end(
                    KeyRevoked(f"the key of tenant {sock.tenant_id} was revoked")
                    if why == "revoked"
                    else AuthenticationFailed(
                        "the token this socket was opened with was revoked, rotated or expired"
                    )
                )

    async def _xread(self, streams: Any, by_stream: dict[str, str]) -> list[Any]:
        """XREAD ``streams``. A cluster serves one slot per command, so there it is one
        XREAD per slot's streams, all at once: a wake from any comes as soon as it is read,
        and the next round starts once every one has answered (within ``READ_BLOCK_MS``)."""
        if not self._cluster:
            got: Any = await self.redis.xread(streams, count=1000, block=READ_BLOCK_MS)
            return list(got or [])
        by_slot: dict[int, Any] = {}
        for stream, last in streams.items():
            by_slot.setdefault(key_slot(stream.encode()), {})[stream] = last
        out: list[Any] = []
        for read in asyncio.as_completed(
            [self.redis.xread(group, count=1000, block=READ_BLOCK_MS) for group in by_slot.values()]
        ):
            got = list(await read or [])
            self._wake(by_stream[as_str(s)] for s, entries in got if entries)
            out += got
        return out

    @property
    def open_sockets(self) -> int:
        return len(self._sockets)

    async def close(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []
        await close_async(self.redis)


@dataclass(frozen=True)
class _Entry:
    """One caption stream entry: a final (``part`` 0) or an interim of an utterance."""

    cursor: str
    sid: str
    part: int
    #: the utterance's participant and position (interims only: finals need no parsing)
    participant: str = ""
    seq: int = -1

    @classmethod
    def parse(cls, entry_id: Any, fields: dict[bytes, bytes]) -> _Entry:
        cursor, sid = as_str(entry_id), as_str(fields[b"sid"])
        if fields.get(b"kind") != b"interim":
            return cls(cursor, sid, 0)
        try:
            part = int(fields.get(b"part", b""))
            participant, seq = parse_segment_id(sid)
        except ValueError:  # not an interim this code wrote: nothing to show
            return cls(cursor, sid, -1)
        return cls(cursor, sid, part, participant, seq) if part >= 1 else cls(cursor, sid, -1)


def _read(
    rt: Runtime, meeting_id: str, batch: list[_Entry]
) -> tuple[dict[str, SealedSegment], dict[str, tuple[int, SealedSegment]]]:
    """The sealed finals a batch of entries names (by segment id), and the interim slot of
    each participant it has interims of (by participant): one read each, not one per entry."""
    sids = [e.sid for e in batch if e.part == 0]
    sealed = rt.store.segments.transcript_segments(meeting_id, sids) if sids else []
    participants = list(dict.fromkeys(e.participant for e in batch if e.part > 0))
    slots = rt.store.interims.get_texts(meeting_id, participants)
    return {s.segment_id: s for s in sealed}, slots


async def follow_captions(
    rt: Runtime, meeting: Meeting, cursor: str = "0", hub: CaptionHub | None = None
) -> AsyncGenerator[Caption, None]:
    """Captions (finals and interims) after ``cursor`` until the caller stops iterating;
    through ``hub`` (the process's shared one), or a hub of its own."""
    cursor = "$" if faults.on("captions-ignore-cursor") else parse_cursor(cursor)
    own = hub is None
    shared = CaptionHub(rt, pool_size=2) if hub is None else hub
    keys = ParticipantKeys(rt, meeting, KeyUse.TRANSCRIPT, Purpose.DELIVER)
    stream = schema.meeting_captions(meeting.id)
    woken = shared.watch(meeting.id)
    try:
        if cursor == "$":  # resolve "from now" once, so reconnecting never skips
            last: Any = await shared.redis.xrevrange(stream, count=1)
            cursor = as_str(last[0][0]) if last else "0"
        while True:
            woken.clear()  # before reading: a wake-up meanwhile is not lost
            try:
                got: Any = await shared.redis.xread({stream: cursor}, count=100)
            except (aioredis.ConnectionError, aioredis.TimeoutError):
                raise StoreUnavailable("Redis is unreachable") from None
            entries = got[0][1] if got else []
            if not entries:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), FALLBACK_S)
                continue
            batch = [_Entry.parse(entry_id, fields) for entry_id, fields in entries]
            finals, slots = await asyncio.to_thread(_read, rt, meeting.id, batch)
            for entry in batch:
                cursor = entry.cursor
                if entry.part == 0:
                    final = finals.get(entry.sid)
                    if final is not None:  # expired ones are skipped
                        key = keys.known(final.participant_id)
                        if key is None:
                            key = await asyncio.to_thread(keys, final.participant_id)
                        yield Caption(cursor, open_transcript(key, meeting.tenant_id, final))
                    continue
                slot = slots.get(entry.participant)
                if slot is None or (slot[0], slot[1].seq) != (entry.part, entry.seq):
                    continue  # superseded by a newer interim, or replaced by the final
                key = keys.known(slot[1].participant_id)
                if key is None:
                    key = await asyncio.to_thread(keys, slot[1].participant_id)
                interim = open_interim_transcript(key, meeting.tenant_id, slot[1])
                if interim.part == entry.part:  # (the slot's clear prefix is not sealed)
                    yield Caption(cursor, interim)
    finally:
        shared.unwatch(meeting.id, woken)
        if own:
            await shared.close()
