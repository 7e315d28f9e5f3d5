"""Meetings: their policy (transcription flag, opt-outs), their wrapped data keys (the
meeting's own and each participant's), and the subject ids the tenant attached.

Also the :class:`keys.service.WrappedKeyStore` that rotation walks.
"""

from __future__ import annotations

import builtins
import secrets
import time
from typing import Any

from keys.types import KeyContext, KeyUse, WrappedKey, key_slot
from pipeline import faults, ids
from pipeline.errors import NotFound
from pipeline.models import CONSENT_NOTICE, Meeting
from pipeline.store import schema
from pipeline.store.connection import Durable, Redis, as_str, redis_errors

__all__ = ["MEETING_ENDED", "POLICY_CHANGED", "SPEAKERS_TALKING", "SPEAKERS_TRACKS", "MeetingStore"]

#: events on a meeting's channel (see ``schema.meeting_events``): names only, never content
POLICY_CHANGED = "policy"
MEETING_ENDED = "ended"

# Give a meeting its place in the tenant's index unless the tenant already holds ARGV[2]
# meetings (0: no limit). KEYS: tenant meetings. ARGV: meeting id, limit.
_ADMIT = """
local limit = tonumber(ARGV[2])
if limit > 0 and redis.call('SCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""

# Swap a wrapped key only if it is still the one we rewrapped (never resurrect a deleted one).
_REPLACE = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


# Add a participant's own wrapped data keys unless they exist (another writer won: the caller
# uses those) or the meeting is gone. KEYS: meeting, keys. ARGV: audio slot, wrapped,
# transcript slot, wrapped. Returns 1 added, 0 exists, -1 no meeting.
_ADD_PARTICIPANT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""


#: where a meeting's speakers come from: each participant's own track, or a mixed room's
#: talking events (who the room reported talking while the mix was heard)
SPEAKERS_TRACKS = "tracks"
SPEAKERS_TALKING = "talking-events"

# KEYS: shreds. ARGV: member, now. A mark again is always newer than the one there.
_MARK_SHRED = """
local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
local now = tonumber(ARGV[2])
if now <= old then now = old + 0.001 end
redis.call('ZADD', KEYS[1], now, ARGV[1])
"""

# KEYS: shreds. ARGV: member, the score read. Cleared only if not marked again since.
_CLEAR_SHRED = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then redis.call('ZREM', KEYS[1], ARGV[1]) end
"""

_SET_IF_EXISTS = """
if redis.call('exists', KEYS[1]) == 1 then redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) end
"""


class MeetingStore:
    def __init__(self, r: Redis, durable: Durable | None = None) -> None:
        self.r = r
        self.durable = durable if durable is not None else Durable(r)
        self._replace = r.register_script(_REPLACE)
        self._admit = r.register_script(_ADMIT)
        self._add_participant = r.register_script(_ADD_PARTICIPANT)

    @redis_errors
    def create(
        self,
        meeting_id: str,
        tenant_id: str,
        transcription: bool,
        wrapped: dict[KeyUse, WrappedKey],
        language: str | None = None,
        translate: bool = False,
        limit: int = 0,
        consent_mode: str = CONSENT_NOTICE,
    ) -> Meeting | None:
        """Store a new meeting with its wrapped data keys; None (nothing stored) if the
        tenant already holds ``limit`` meetings (0: no limit). The limit is checked and the
        place taken in one script, so concurrent creates cannot pass the limit together.

        The record and keys (the meeting's slot) are written first, then its place in the
        tenant's index (the tenant's slot), which is where the limit is checked; over the
        limit, the record goes again. A crash in between leaves a record nobody lists,
        holding no content: never an index entry without its record."""
        meeting = Meeting(
            id=meeting_id,
            tenant_id=tenant_id,
            created=time.time(),
            transcription=transcription,
            language=language,
            translate=translate,
            consent_mode=consent_mode,
        )
        record: dict[Any, Any] = {
            "tenant": tenant_id,
            "created": repr(meeting.created),
            "transcription": int(transcription),
            "language": language or "",
            "translate": int(translate),
            "consent": consent_mode,
        }
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(schema.meeting(meeting.id), mapping=record)
        pipe.hset(
            schema.meeting_keys(meeting.id),
            mapping={u.value: w.to_str() for u, w in wrapped.items()},
        )
        pipe.execute()
        if self._admit(keys=[schema.tenant_meetings(tenant_id)], args=[meeting.id, limit]):
            return meeting
        self.r.delete(schema.meeting(meeting.id), schema.meeting_keys(meeting.id))
        return None

    @redis_errors
    def set_speaker_source(self, meeting_id: str, source: str) -> None:
        """Record where the meeting's speakers come from (``SPEAKERS_*``), if it exists."""
        self.r.eval(_SET_IF_EXISTS, 1, schema.meeting(meeting_id), "speakers", source)

    @redis_errors
    def speaker_source(self, meeting_id: str) -> str:
        """Where the meeting's speakers come from: ``tracks`` (one per participant, the
        default) or ``talking-events`` (a mixed room's speaker signal)."""
        raw = self.r.hget(schema.meeting(meeting_id), "speakers")
        return as_str(raw) if raw else SPEAKERS_TRACKS

    @redis_errors
    def count(self, tenant_id: str) -> int:
        """How many meetings the tenant holds."""
        return int(self.r.scard(schema.tenant_meetings(tenant_id)))

    @staticmethod
    def new_id() -> str:
        """A fresh meeting id; the data keys are bound to it before the meeting is stored."""
        return "m_" + secrets.token_hex(8)

    @redis_errors
    def get(self, meeting_id: str, tenant_id: str | None = None) -> Meeting:
        """The meeting; :class:`NotFound` if unknown, malformed or (given ``tenant_id``) not
        theirs."""
        meeting_id = ids.meeting_id(meeting_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(schema.meeting(meeting_id))
        pipe.smembers(schema.meeting_optout(meeting_id))
        pipe.smembers(schema.meeting_optin(meeting_id))
        raw, optout, optin = pipe.execute()
        if not raw or (
            tenant_id is not None
            and raw[b"tenant"].decode() != tenant_id
            and not faults.on("no-tenant-check")
        ):
            raise NotFound(f"no meeting {meeting_id}")
        return Meeting(
            id=meeting_id,
            tenant_id=raw[b"tenant"].decode(),
            created=float(raw[b"created"]),
            transcription=raw[b"transcription"] == b"1",
            opted_out=frozenset(as_str(p) for p in optout),
            language=as_str(raw.get(b"language", b"")) or None,
            translate=raw.get(b"translate") == b"1",
            consent_mode=as_str(raw.get(b"consent", b"")) or CONSENT_NOTICE,
            opted_in=frozenset(as_str(p) for p in optin),
        )

    @redis_errors
    def list(self, tenant_id: str) -> builtins.list[Meeting]:
        ids = [as_str(m) for m in self.r.smembers(schema.tenant_meetings(tenant_id))]
        meetings = []
        for mid in ids:
            try:
                meetings.append(self.get(mid))
            except NotFound:  # deleted (a record goes before its index entry: see delete)
                self.r.srem(schema.tenant_meetings(tenant_id), mid)
        return sorted(meetings, key=lambda m: m.created)

    @redis_errors
    def set_transcription(self, meeting_id: str, on: bool) -> None:
        w = self.durable.client()
        pipe = w.pipeline(transaction=True)
        pipe.hset(schema.meeting(meeting_id), "transcription", int(on))
        if not on:  # an utterance's interim audio and caption go with the switch
            pipe.delete(schema.meeting_interim(meeting_id), schema.meeting_interim_text(meeting_id))
        pipe.execute()
        self.durable.confirm(w, f"the switch of meeting {meeting_id}")
        self.notify(meeting_id)

    @redis_errors
    def set_opt_out(self, meeting_id: str, participant_id: str, opted_out: bool) -> None:
        """A participant opts out (and withdraws any consent), or consents (opting back
        in): one transaction, then capture is told."""
        participant_id = ids.participant_id(participant_id)
        w = self.durable.client()
        pipe = w.pipeline(transaction=True)
        if opted_out:
            pipe.sadd(schema.meeting_optout(meeting_id), participant_id)
            pipe.srem(schema.meeting_optin(meeting_id), participant_id)
            pipe.hdel(schema.meeting_interim(meeting_id), participant_id)
            pipe.hdel(schema.meeting_interim_text(meeting_id), participant_id)
        else:
            pipe.srem(schema.meeting_optout(meeting_id), participant_id)
            pipe.sadd(schema.meeting_optin(meeting_id), participant_id)
        pipe.execute()
        self.durable.confirm(w, f"an opt-out or consent in meeting {meeting_id}")
        self.notify(meeting_id)

    @redis_errors
    def set_consent_mode(self, meeting_id: str, mode: str) -> None:
        """``notice`` or ``opt-in``; switching to ``opt-in`` drops the interims of whoever
        has not consented (capture is told at once and stops keeping their audio)."""
        w = self.durable.client()
        w.hset(schema.meeting(meeting_id), "consent", mode)
        self.durable.confirm(w, f"the consent mode of meeting {meeting_id}")
        self.notify(meeting_id)

    @redis_errors
    def notify(self, meeting_id: str, event: str = POLICY_CHANGED) -> None:
        """Wake whoever captures this meeting (the policy changed, or the meeting ended)."""
        self.r.publish(schema.meeting_events(meeting_id), event)

    @redis_errors
    def wrapped_key(self, meeting_id: str, use: KeyUse) -> WrappedKey:
        """The meeting's own wrapped ``use`` key."""
        return self.content_key(meeting_id, use, None)[1]

    @redis_errors
    def content_key(
        self, meeting_id: str, use: KeyUse, participant_id: str | None
    ) -> tuple[str | None, WrappedKey]:
        """The wrapped key that opens ``use`` content of ``participant_id``: (the
        participant, their own key), or (None, the meeting's) where they have none
        (content from before per-participant keys) or none is named."""
        slots = [key_slot(use)]
        if participant_id is not None:
            slots.insert(0, key_slot(use, participant_id))
        found = self.r.hmget(schema.meeting_keys(meeting_id), slots)
        for slot, raw in zip(slots, found, strict=True):
            if raw is not None:
                owner = participant_id if slot != use.value else None
                return owner, WrappedKey.from_str(as_str(raw))
        raise NotFound(f"meeting {meeting_id} has no {use.value} key (deleted)")

    @redis_errors
    def has_participant_keys(self, meeting_id: str, participant_id: str) -> bool:
        slot = key_slot(KeyUse.AUDIO, participant_id)
        return bool(self.r.hexists(schema.meeting_keys(meeting_id), slot))

    @redis_errors
    def add_participant_keys(
        self, meeting_id: str, participant_id: str, wrapped: dict[KeyUse, WrappedKey]
    ) -> bool:
        """Store a participant's own wrapped keys; False if they have some already (use
        those); :class:`NotFound` if the meeting is gone."""
        args: list[str] = []
        for use in (KeyUse.AUDIO, KeyUse.TRANSCRIPT):
            args += [key_slot(use, participant_id), wrapped[use].to_str()]
        w = self.durable.client()
        added = self._add_participant(
            client=w, keys=[schema.meeting(meeting_id), schema.meeting_keys(meeting_id)], args=args
        )
        if added == -1:
            raise NotFound(f"no meeting {meeting_id}")
        if added:  # what is sealed under them from now on needs them
            self.durable.confirm(w, f"participant keys in meeting {meeting_id}")
        return bool(added)

    @redis_errors
    def key_participants(self, meeting_id: str) -> set[str]:
        """The participants with their own data keys in the meeting."""
        out = set()
        for slot in self.r.hkeys(schema.meeting_keys(meeting_id)):
            _, _, participant = as_str(slot).partition(":")
            if participant:
                out.add(participant)
        return out

    @redis_errors
    def set_subject(self, meeting_id: str, participant_id: str, subject: str) -> None:
        self.r.hset(schema.meeting_subjects(meeting_id), participant_id, subject)

    @redis_errors
    def subjects(self, meeting_id: str) -> dict[str, str]:
        """participant -> the subject id the tenant attached."""
        raw = self.r.hgetall(schema.meeting_subjects(meeting_id))
        return {as_str(k): as_str(v) for k, v in raw.items()}

    @redis_errors
    def shred_keys(self, meeting_id: str) -> None:
        """Destroy the meeting's wrapped data keys: its content becomes unopenable."""
        w = self.durable.client()
        w.delete(schema.meeting_keys(meeting_id))
        self.durable.confirm(w, f"the keys of meeting {meeting_id} destroyed")

    @redis_errors
    def shred(self, meeting: Meeting) -> None:
        """Mark the meeting as waiting for its tenant key's rotation and retirement
        (:meth:`pending_shreds`), destroy its wrapped data keys, then mark it again, so that
        no failure can leave the keys destroyed but their backups' key versions live without
        a mark that says so. The second mark is newer than the first: a rotation that ran
        between the two (and rewrapped the keys still there) cleared only the first
        (:meth:`shreds_done`), so another rotation follows."""
        w = self.durable.client()
        self._mark_shred(w, meeting.tenant_id, meeting.id)
        w.delete(schema.meeting_keys(meeting.id))
        self.durable.confirm(w, f"the keys of meeting {meeting.id} destroyed")
        self._mark_shred(w, meeting.tenant_id, meeting.id)

    @staticmethod
    def _mark_shred(w: Redis, tenant_id: str, meeting_id: str) -> None:
        """Mark (or mark again, with a newer score than the mark there)."""
        w.eval(
            _MARK_SHRED, 1, schema.SHREDS, schema.shred_member(tenant_id, meeting_id), time.time()
        )

    @redis_errors
    def pending_shreds(
        self, tenant_id: str | None = None, before: float | None = None
    ) -> builtins.list[tuple[str, str]]:
        """(tenant, meeting) of deleted meetings whose tenant key is not yet rotated and
        retired: the tenant's (or everyone's), marked before ``before`` (or ever)."""
        return [(t, m) for t, m, _ in self.shred_marks(tenant_id, before)]

    @redis_errors
    def shred_marks(
        self, tenant_id: str | None = None, before: float | None = None
    ) -> builtins.list[tuple[str, str, float]]:
        """As :meth:`pending_shreds`, with each mark's score (for :meth:`shreds_done`)."""
        marked: Any = self.r.zrangebyscore(
            schema.SHREDS, "-inf", "+inf" if before is None else before, withscores=True
        )
        found = [(*schema.parse_shred_member(as_str(m)), float(score)) for m, score in marked]
        return [(t, m, at) for t, m, at in found if tenant_id is None or t == tenant_id]

    @redis_errors
    def shred_pending(self, tenant_id: str, meeting_id: str) -> bool:
        return self.r.zscore(schema.SHREDS, schema.shred_member(tenant_id, meeting_id)) is not None

    @redis_errors
    def shreds_done(self, done: builtins.list[tuple[str, str, float]]) -> None:
        """Clear the marks of ``done`` (as :meth:`shred_marks` read them), each only if it
        is still the mark read: one made again since (see :meth:`shred`) stays."""
        for t, m, at in done:
            self.r.eval(_CLEAR_SHRED, 1, schema.SHREDS, schema.shred_member(t, m), repr(at))

    @redis_errors
    def delete(self, meeting: Meeting) -> None:
        """Delete every record of the meeting. Call :meth:`shred_keys` first."""
        doomed = [
            schema.meeting_keys(meeting.id),
            schema.meeting(meeting.id),
            schema.meeting_optout(meeting.id),
            schema.meeting_optin(meeting.id),
            schema.meeting_audio(meeting.id),
            schema.meeting_transcript(meeting.id),
            schema.meeting_captions(meeting.id),
            schema.meeting_interim(meeting.id),
            schema.meeting_interim_text(meeting.id),
            schema.meeting_interims(meeting.id),
            schema.meeting_manifest(meeting.id),
            schema.meeting_outcomes(meeting.id),
            schema.meeting_subjects(meeting.id),
        ]
        for pattern in schema.meeting_pattern(meeting.id):
            doomed.extend(k.decode() for k in self.r.scan_iter(match=pattern, count=1000))
        pending = [
            schema.pending_member(meeting.id, as_str(sid))
            for sid in self.r.zrange(schema.meeting_audio(meeting.id), 0, -1)
        ]
        w = self.durable.client()
        w.delete(*doomed)  # one slot (the meeting's), so one command: atomic
        self.durable.confirm(w, f"meeting {meeting.id} deleted")
        # then the entries pointing at it (other slots), after: see schema
        if pending:
            self.r.zrem(schema.PENDING, *pending)
        self.r.srem(schema.tenant_meetings(meeting.tenant_id), meeting.id)
        self.notify(meeting.id, MEETING_ENDED)

    @redis_errors
    def participants(self, meeting_id: str) -> set[str]:
        """Everyone the meeting holds anything of: keys, manifest, segments, opt-outs,
        subject ids."""
        found = self.key_participants(meeting_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.hkeys(schema.meeting_manifest(meeting_id))
        pipe.zrange(schema.meeting_audio(meeting_id), 0, -1)
        pipe.zrange(schema.meeting_transcript(meeting_id), 0, -1)
        pipe.smembers(schema.meeting_optout(meeting_id))
        pipe.smembers(schema.meeting_optin(meeting_id))
        pipe.hkeys(schema.meeting_subjects(meeting_id))
        fields, audio, text, optout, optin, subjects = pipe.execute()
        found |= {as_str(f).rpartition("#")[0] for f in fields}
        found |= {as_str(s).rpartition(".")[0] for s in [*audio, *text]}
        found |= {as_str(p) for p in [*optout, *optin, *subjects]}
        return found

    @redis_errors
    def erase_participant(
        self, meeting: Meeting, participant_id: str, keep_keys: bool = False
    ) -> tuple[int, int, bool]:
        """Destroy the participant's own data keys and delete all they left in the meeting
        (audio, transcripts, interims, caption events, manifest, opt-out, subject id),
        marking the meeting in :data:`schema.SHREDS` first, so the tenant key is rotated and
        retired after (as for a meeting delete). Returns (audio segments, transcript
        segments, whether they had their own keys)."""
        m, p = meeting.id, participant_id
        audio = [sid for sid in self._sids(schema.meeting_audio(m)) if sid.rpartition(".")[0] == p]
        audio += [
            k.rpartition(":")[2]
            for k in self._scan(schema.audio(m, _glob(p) + ".*"))
            if k.rpartition(":")[2] not in audio
        ]
        text = [
            sid for sid in self._sids(schema.meeting_transcript(m)) if sid.rpartition(".")[0] == p
        ]
        text += [
            k.rpartition(":")[2]
            for k in self._scan(schema.transcript(m, _glob(p) + ".*"))
            if k.rpartition(":")[2] not in text
        ]
        fields = [f for f in self._fields(schema.meeting_manifest(m)) if f.rpartition("#")[0] == p]
        outcomes = [
            f for f in self._fields(schema.meeting_outcomes(m)) if f.rpartition(".")[0] == p
        ]
        events: builtins.list[bytes] = []
        stream: Any = self.r.xrange(schema.meeting_captions(m))
        for entry_id, body in stream:
            who = as_str(body.get(b"participant", b"")) or as_str(body.get(b"sid", b""))
            if who == p or who.rpartition(".")[0] == p:
                events.append(entry_id)
        own_keys = self.has_participant_keys(m, p)
        w = self.durable.client()
        if not keep_keys:  # marked first, as for a delete (see shred)
            self._mark_shred(w, meeting.tenant_id, m)
        pipe = w.pipeline(transaction=True)
        if not keep_keys:
            pipe.hdel(
                schema.meeting_keys(m), key_slot(KeyUse.AUDIO, p), key_slot(KeyUse.TRANSCRIPT, p)
            )
        doomed = [schema.audio(m, s) for s in audio] + [schema.transcript(m, s) for s in text]
        doomed += [schema.lease(m, s) for s in audio]
        if doomed:
            pipe.delete(*doomed)
        if audio:
            pipe.zrem(schema.meeting_audio(m), *audio)
        if text:
            pipe.zrem(schema.meeting_transcript(m), *text)
        if fields:
            pipe.hdel(schema.meeting_manifest(m), *fields)
        if outcomes:
            pipe.hdel(schema.meeting_outcomes(m), *outcomes)
        if events:
            pipe.xdel(schema.meeting_captions(m), *events)
        pipe.hdel(schema.meeting_interim(m), p)
        pipe.hdel(schema.meeting_interim_text(m), p, f"{p}#e")
        pipe.srem(schema.meeting_optout(m), p)
        pipe.srem(schema.meeting_optin(m), p)
        pipe.hdel(schema.meeting_subjects(m), p)
        pipe.execute()
        self.durable.confirm(w, f"an erasure in meeting {m}")  # erased stays erased
        if not keep_keys:  # marked again: see shred
            self._mark_shred(w, meeting.tenant_id, m)
        if audio:  # out of the global index after (see schema)
            self.r.zrem(schema.PENDING, *(schema.pending_member(m, s) for s in audio))
        return len(audio), len(text), own_keys

    def _sids(self, key: str) -> builtins.list[str]:
        return [as_str(s) for s in self.r.zrange(key, 0, -1)]

    def _fields(self, key: str) -> builtins.list[str]:
        return [as_str(f) for f in self.r.hkeys(key)]

    def _scan(self, pattern: str) -> builtins.list[str]:
        return [as_str(k) for k in self.r.scan_iter(match=pattern, count=1000)]

    # -- keys.service.WrappedKeyStore ------------------------------------------------

    @redis_errors
    def wrapped_keys(
        self, tenant_id: str, cursor: int, count: int
    ) -> tuple[int, builtins.list[tuple[KeyContext, WrappedKey]]]:
        cursor, ids = self.r.sscan(schema.tenant_meetings(tenant_id), cursor, count=count)
        out = []
        for raw_id in ids:
            mid = as_str(raw_id)
            for slot, wrapped in self.r.hgetall(schema.meeting_keys(mid)).items():
                context = KeyContext.from_slot(tenant_id, mid, as_str(slot))
                out.append((context, WrappedKey.from_str(as_str(wrapped))))
        return int(cursor), out

    @redis_errors
    def replace_wrapped(self, context: KeyContext, old: WrappedKey, new: WrappedKey) -> bool:
        if faults.on("rotate-skips-rewrap"):
            return True  # claims the swap, keeps the old wrapped key
        w = self.durable.client()
        replaced = bool(
            self._replace(
                client=w,
                keys=[schema.meeting_keys(context.meeting_id)],
                args=[context.slot, old.to_str(), new.to_str()],
            )
        )
        if replaced:  # the old tenant key version is retired after this
            self.durable.confirm(w, f"a rewrapped key of meeting {context.meeting_id}")
        return replaced


def _glob(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
