"""Every Redis key sealscribe uses. No other module formats a key string.

All keys start with ``ss:``. Content (audio, transcript text) only ever appears sealed;
ids, flags, counts and times are in the clear.

=============================  ======  =========================================  ===========
key                            type    holds                                      TTL
=============================  ======  =========================================  ===========
ss:tenants                     set     tenant ids                                 none
ss:tenant:{t}                  hash    name, created, revoked, key provider,      none
                                       token_key (the hashed token's key),
                                       transcript_ttl, audio_ttl (retention)
ss:tenant:{t}:meetings         set     the tenant's meeting ids                   none
ss:token:{sha256(token)}       string  tenant id (tokens are stored hashed)       none
ss:meeting:{m}                 hash    tenant, created, transcription, language,  none
                                       translate
ss:meeting:{m}:optout          set     participant ids that opted out             none
ss:meeting:{m}:keys            hash    audio / transcript -> wrapped data key     none
ss:meeting:{m}:audio           zset    pending audio segment ids, score = seq     none
ss:audio:{m}:{segment}         string  sealed audio segment                       audio TTL
ss:meeting:{m}:transcript      zset    transcript segment ids, score = start ms   none
ss:transcript:{m}:{segment}    string  sealed transcript segment                  transcript TTL
ss:pending                     zset    every pending "{m}/{segment}", score = time  none
ss:lease:{m}:{segment}         string  worker holding a segment in a batch        lease TTL
ss:audit:{t}                   list    audit entries (JSON, hash-chained)         none
ss:audit:{t}:head              hash    count, hash of the last entry              none
ss:meeting:{m}:captions        stream  one entry per stored transcript segment:   transcript TTL
                                       its id only (live captions, resumable)
ss:meeting:{m}:events          pubsub  "policy" / "leave": wakes bots at once     -
ss:bot:{m}                     hash    state, reason, target (join URL), since,   none
                                       described (URL without pin), participants
ss:bot:{m}:owner               string  the bot service running this meeting's bot lease TTL
ss:bots:wanted                 set     meetings whose bot should be in the meeting none
ss:bots:requests               list    meeting ids, to wake a bot service          none
=============================  ======  =========================================  ===========

Pub/sub channels carry only ids and event names, never content.

Deleting a meeting removes ``ss:meeting:{m}:keys`` first (crypto-shredding), then the rest.
"""

from __future__ import annotations

import hashlib

PREFIX = "ss:"

TENANTS = f"{PREFIX}tenants"


def tenant(tenant_id: str) -> str:
    return f"{PREFIX}tenant:{tenant_id}"


def tenant_meetings(tenant_id: str) -> str:
    return f"{PREFIX}tenant:{tenant_id}:meetings"


def token(raw_token: str) -> str:
    return f"{PREFIX}token:{hashlib.sha256(raw_token.encode()).hexdigest()}"


def meeting(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{meeting_id}"


def meeting_optout(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{meeting_id}:optout"


def meeting_keys(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{meeting_id}:keys"


def meeting_audio(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{meeting_id}:audio"


def audio(meeting_id: str, segment_id: str) -> str:
    return f"{PREFIX}audio:{meeting_id}:{segment_id}"


PENDING = f"{PREFIX}pending"


def pending_member(meeting_id: str, segment_id: str) -> str:
    return f"{meeting_id}/{segment_id}"


def parse_pending_member(member: str) -> tuple[str, str]:
    meeting_id, _, segment_id = member.partition("/")
    return meeting_id, segment_id


def lease(meeting_id: str, segment_id: str) -> str:
    return f"{PREFIX}lease:{meeting_id}:{segment_id}"


def meeting_transcript(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{meeting_id}:transcript"


def transcript(meeting_id: str, segment_id: str) -> str:
    return f"{PREFIX}transcript:{meeting_id}:{segment_id}"


def audit(tenant_id: str) -> str:
    return f"{PREFIX}audit:{tenant_id}"


def audit_head(tenant_id: str) -> str:
    return f"{PREFIX}audit:{tenant_id}:head"


def meeting_captions(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{meeting_id}:captions"


def meeting_events(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{meeting_id}:events"


def bot(meeting_id: str) -> str:
    return f"{PREFIX}bot:{meeting_id}"


def bot_owner(meeting_id: str) -> str:
    return f"{PREFIX}bot:{meeting_id}:owner"


#: Celery's queue (a Redis list named by the queue): task messages, ids only
CELERY_QUEUE = "sealscribe"

BOTS_WANTED = f"{PREFIX}bots:wanted"
BOTS_REQUESTS = f"{PREFIX}bots:requests"


def meeting_pattern(meeting_id: str) -> list[str]:
    """Patterns matching every per-segment key of a meeting (for deletion)."""
    return [audio(meeting_id, "*"), transcript(meeting_id, "*"), lease(meeting_id, "*")]
