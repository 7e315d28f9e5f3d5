"""Every Redis key sealscribe uses. No other module formats a key string.

All keys start with ``ss:``. Content (audio, transcript text) only ever appears sealed;
ids, flags, counts and times are in the clear.

Braces are part of the key: ``{m}`` is the meeting id, ``{t}`` the tenant's, ``{e}`` a
webhook endpoint's, written as a Redis Cluster hash tag, so that every key of one meeting
(tenant, endpoint) lives in one slot and its transactions and scripts run on a cluster as on
one Redis. Upper-case parts are other ids, outside the tag. Keys without a tag (the global
indexes ``ss:pending``, ``ss:interims:waiting``, ``ss:shreds``, ``ss:tenants``,
``ss:bots:*``, ``ss:webhooks:due`` / ``awaiting``, and tokens, tickets and auth counters)
each hash to a slot of their own, so nothing writes one of them in the same transaction as a
tagged key. Such a pair of writes goes in an order that leaves, after a crash between them,
only an index entry that points at nothing (every reader of an index skips those and the
sweeps drop them), never an entry missing: an index entry is added before what it points at
and removed after.

=============================  ======  =========================================  ===========
key                            type    holds                                      TTL
=============================  ======  =========================================  ===========
ss:tenants                     set     tenant ids                                 none
ss:tenant:{t}                  hash    name, created, revoked, key provider,      none
                                       token_key (the hashed token's key: only
                                       tenants made before named tokens; moved to
                                       ss:tenant:{t}:tokens on first use),
                                       transcript_ttl, audio_ttl (retention)
ss:tenant:{t}:meetings         set     the tenant's meeting ids                   none
ss:tenant:{t}:announce         hash    join / on / off -> the tenant's own spoken none
                                       announcement (16 kHz PCM; not content)
ss:token:SHA256                 string  tenant id (tokens are stored hashed)       its expiry
ss:tenant:{t}:tokens           hash    sha256(token) -> JSON: id, name, scopes,   none
                                       created, expires, lifetime (never the
                                       token itself)
ss:ticket:SHA256                string  JSON: tenant, meeting, sha256 of the       60 s
                                       token that asked (a caption ticket,
                                       taken once with GETDEL)
ss:authfail:ADDRESS             string  failed authentications from a client       60 s
                                       address (IPv6: its /64) this minute
ss:sockets:{t}:meeting:M        zset    caption sockets open on the meeting,       lease TTL x2
                                       score = the time its lease lapses
ss:sockets:tenant:{t}          zset    caption sockets open for the tenant,       lease TTL x2
                                       score = the time its lease lapses
ss:meeting:{m}                 hash    tenant, created, transcription, language,  none
                                       translate, consent (notice | opt-in)
ss:meeting:{m}:optout          set     participant ids that opted out             none
ss:meeting:{m}:optin           set     participant ids that consented (what an    none
                                       opt-in meeting waits for)
ss:meeting:{m}:keys            hash    audio / transcript -> the meeting's        none
                                       wrapped data keys (the sealed join URL;
                                       content from before per-participant keys);
                                       audio:{p} / transcript:{p} -> participant
                                       p's own (made when capture first hears p)
ss:meeting:{m}:manifest        hash    {p}#{n} -> record n of participant p's     none
                                       manifest: "SEQ|EXPIRES|MAC" of a sealed
                                       audio segment stored; {p}#n -> records
ss:meeting:{m}:outcomes        hash    {p}.{seq} -> "STATE|EXPIRES|MAC": what     none
                                       became of it (transcribed, purged:WHY)
ss:meeting:{m}:subjects        hash    participant -> the subject id the tenant   none
                                       attached (for erasure by subject)
ss:meeting:{m}:audio           zset    pending audio segment ids, score = seq     none
ss:audio:{m}:SEGMENT           string  sealed audio segment                       audio TTL
ss:meeting:{m}:transcript      zset    transcript segment ids, score = start ms   none
ss:transcript:{m}:SEGMENT      string  sealed transcript segment                  transcript TTL
ss:pending                     zset    every pending "{m}/{segment}", score = time  none
ss:lease:{m}:SEGMENT           string  worker holding a segment in a batch        lease TTL
ss:audit:{t}                   list    audit entries (JSON, hash-chained)         none
ss:audit:{t}:head              hash    count, hash of the last entry              none
ss:meeting:{m}:captions        stream  one entry per stored transcript segment:   transcript TTL
                                       its id only (live captions, resumable);
                                       and one per interim caption (kind,
                                       participant, utterance, number), deleted
                                       when the utterance's final lands
ss:meeting:{m}:interim         hash    participant -> "SEQ:PART:" + the newest    60 s
                                       sealed interim audio of the utterance in
                                       progress (older ones are overwritten
                                       untranscribed)
ss:meeting:{m}:interimtext     hash    participant -> "SEQ:PART:" + the newest    120 s
                                       sealed interim caption text; PARTICIPANT#e
                                       -> its caption stream entry ids
ss:meeting:{m}:interims        hash    interim counts by outcome (transcribed,    none
                                       superseded, transcription-off, ...)
ss:interims:waiting            zset    "{m}/{participant}" of every interim slot  none
                                       holding audio, score = time written
ss:meeting:{m}:events          pubsub  "policy" / "leave": wakes bots at once     -
ss:bot:{m}                     hash    state, reason, target (the join URL        none
                                       sealed under the meeting's audio data
                                       key: pin and secret never in the clear;
                                       dropped when the bot is done), since,
                                       described (URL without pin), participants
ss:bot:{m}:owner               string  the bot service running this meeting's bot lease TTL
ss:bots:wanted                 set     meetings whose bot should be in the meeting none
ss:bots:requests               list    meeting ids, to wake a bot service          none
ss:tenant:{t}:bots             set     the tenant's meetings with a bot wanted    none
                                       (its bot quota; pruned against
                                       ss:bots:wanted at each join)
ss:tenant:{t}:rate             hash    tokens, at: the tenant's request bucket    a few s
                                       (its requests-per-second quota)
ss:shreds                      zset    deleted meetings whose tenant key is not   none
                                       yet rotated and retired: "{t}/{m}",
                                       score = time of the delete
ss:whip:{t}:meeting:M           zset    WHIP sessions held for the meeting, score = lease TTL x2
                                       the time its lease lapses
ss:whip:tenant:{t}             zset    WHIP sessions held for the tenant, score =  lease TTL x2
                                       the time its lease lapses
ss:whip:meeting:{m}:owner      string  the base URL of the API process holding    lease TTL
                                       the meeting's WHIP sessions (offers that
                                       land elsewhere are redirected to it)
ss:tenant:{t}:webhooks         set     the tenant's webhook endpoint ids          none
ss:webhook:{e}                 hash    tenant, url, events, created, secret       none
                                       (sealed; never in the clear), generation,
                                       previous (sealed) + previous_until,
                                       failing_since, disabled (reason),
                                       disabled_at
ss:webhook:{e}:msgs            hash    message id -> event JSON (ids, state       none
                                       names, counts: never content); bounded
ss:webhook:{e}:recent          list    message ids, newest first (bounds msgs)    none
ss:webhook:{e}:q:STREAM        list    message ids waiting, in order; stream =    none
                                       a meeting id, or "-" (tenant events)
ss:webhook:{e}:streams         set     streams with messages waiting              none
ss:webhook:{e}:tries           hash    message id -> attempts so far              none
ss:webhook:{e}:lock:STREAM     string  the worker delivering the stream's head    lease TTL
ss:webhook:{e}:log             list    delivery attempts (JSON: message, event,   none
                                       outcome, status, next try), bounded
ss:webhooks:due                zset    "{e}/{stream}", score = its next try       none
ss:webhooks:awaiting           zset    meetings whose bot left, not yet           none
                                       announced "transcript ready"
ss:webhooks:ready:{m}          string  the bot session announced ready            none
=============================  ======  =========================================  ===========

Pub/sub channels carry only ids and event names, never content.

Deleting a meeting marks it in ``ss:shreds``, then removes ``ss:meeting:{m}:keys``
(crypto-shredding), then the rest; a worker rotates and retires the tenant key and clears
the mark (the beat retries marks left behind).

Keys written before the tags (``ss:meeting:m_1`` rather than ``ss:meeting:{m_1}``) are
renamed once by ``sealscribe store migrate`` (:func:`tagged`).
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "ss:"


def _tag(entity_id: str) -> str:
    """``{entity_id}``: a Redis Cluster hash tag. Keys with the same tag hash to the same
    slot, so a meeting's keys (or a tenant's, or a webhook endpoint's) can change together in
    one transaction or script on a cluster as on one Redis."""
    return "{" + entity_id + "}"


TENANTS = f"{PREFIX}tenants"


def tenant(tenant_id: str) -> str:
    return f"{PREFIX}tenant:{_tag(tenant_id)}"


def tenant_announcements(tenant_id: str) -> str:
    return f"{PREFIX}tenant:{_tag(tenant_id)}:announce"


def tenant_meetings(tenant_id: str) -> str:
    return f"{PREFIX}tenant:{_tag(tenant_id)}:meetings"


def token_digest(raw_token: str) -> str:
    """The SHA-256 of a token or ticket (hex): all that is ever stored of one."""
    return hashlib.sha256(raw_token.encode()).hexdigest()


def token(raw_token: str) -> str:
    return token_by_digest(token_digest(raw_token))


def token_by_digest(digest: str) -> str:
    return f"{PREFIX}token:{digest}"


def digest_of_token_key(key: str) -> str:
    """The digest inside a key made by :func:`token` (a legacy tenant's ``token_key``)."""
    return key.rsplit(":", 1)[1]


def tenant_tokens(tenant_id: str) -> str:
    return f"{PREFIX}tenant:{_tag(tenant_id)}:tokens"


def ticket(raw_ticket: str) -> str:
    return f"{PREFIX}ticket:{token_digest(raw_ticket)}"


def auth_failures(address: str) -> str:
    return f"{PREFIX}authfail:{address}"


def sockets_meeting(tenant_id: str, meeting_id: str) -> str:
    return f"{PREFIX}sockets:{_tag(tenant_id)}:meeting:{meeting_id}"


def sockets_tenant(tenant_id: str) -> str:
    return f"{PREFIX}sockets:tenant:{_tag(tenant_id)}"


def meeting(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}"


def meeting_optout(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:optout"


def meeting_optin(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:optin"


def meeting_keys(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:keys"


def meeting_manifest(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:manifest"


def meeting_outcomes(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:outcomes"


def meeting_subjects(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:subjects"


def manifest_record(participant_id: str, n: int) -> str:
    return f"{participant_id}#{n}"


def manifest_count(participant_id: str) -> str:
    return f"{participant_id}#n"


def meeting_audio(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:audio"


def audio(meeting_id: str, segment_id: str) -> str:
    return f"{PREFIX}audio:{_tag(meeting_id)}:{segment_id}"


def split_segment_key(key: str) -> tuple[str, str]:
    """(meeting id, segment id) of a key made by :func:`audio`, :func:`transcript` or
    :func:`lease` (the meeting is the tag, the segment what follows it)."""
    rest = key[len(PREFIX) :].partition(":")[2]
    if not rest.startswith("{") or "}:" not in rest:
        raise ValueError("not a segment's key")
    meeting_id, _, segment_id = rest[1:].partition("}:")
    return meeting_id, segment_id


PENDING = f"{PREFIX}pending"


def pending_member(meeting_id: str, segment_id: str) -> str:
    return f"{meeting_id}/{segment_id}"


def parse_pending_member(member: str) -> tuple[str, str]:
    meeting_id, _, segment_id = member.partition("/")
    return meeting_id, segment_id


def lease(meeting_id: str, segment_id: str) -> str:
    return f"{PREFIX}lease:{_tag(meeting_id)}:{segment_id}"


def meeting_transcript(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:transcript"


def transcript(meeting_id: str, segment_id: str) -> str:
    return f"{PREFIX}transcript:{_tag(meeting_id)}:{segment_id}"


def audit(tenant_id: str) -> str:
    return f"{PREFIX}audit:{_tag(tenant_id)}"


def audit_head(tenant_id: str) -> str:
    return f"{PREFIX}audit:{_tag(tenant_id)}:head"


def meeting_captions(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:captions"


def meeting_interim(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:interim"


def meeting_interim_text(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:interimtext"


def meeting_interims(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:interims"


INTERIMS_WAITING = f"{PREFIX}interims:waiting"


def meeting_events(meeting_id: str) -> str:
    return f"{PREFIX}meeting:{_tag(meeting_id)}:events"


def bot(meeting_id: str) -> str:
    return f"{PREFIX}bot:{_tag(meeting_id)}"


def bot_owner(meeting_id: str) -> str:
    return f"{PREFIX}bot:{_tag(meeting_id)}:owner"


#: Celery's queue (a Redis list named by the queue): task messages, ids only
CELERY_QUEUE = "sealscribe"
#: the queue of interim captions, which workers take only when the first is empty
CELERY_INTERIM_QUEUE = "sealscribe-interim"

BOTS_WANTED = f"{PREFIX}bots:wanted"
BOTS_REQUESTS = f"{PREFIX}bots:requests"

#: deleted meetings waiting for their tenant key's rotation and retirement
SHREDS = f"{PREFIX}shreds"


def shred_member(tenant_id: str, meeting_id: str) -> str:
    return f"{tenant_id}/{meeting_id}"


def parse_shred_member(member: str) -> tuple[str, str]:
    tenant_id, _, meeting_id = member.partition("/")
    return tenant_id, meeting_id


def tenant_bots(tenant_id: str) -> str:
    return f"{PREFIX}tenant:{_tag(tenant_id)}:bots"


def tenant_rate(tenant_id: str) -> str:
    return f"{PREFIX}tenant:{_tag(tenant_id)}:rate"


def whip_meeting(tenant_id: str, meeting_id: str) -> str:
    return f"{PREFIX}whip:{_tag(tenant_id)}:meeting:{meeting_id}"


def whip_tenant(tenant_id: str) -> str:
    return f"{PREFIX}whip:tenant:{_tag(tenant_id)}"


def whip_owner(meeting_id: str) -> str:
    return f"{PREFIX}whip:meeting:{_tag(meeting_id)}:owner"


def tenant_webhooks(tenant_id: str) -> str:
    return f"{PREFIX}tenant:{_tag(tenant_id)}:webhooks"


def webhook(endpoint_id: str) -> str:
    return f"{PREFIX}webhook:{_tag(endpoint_id)}"


def webhook_messages(endpoint_id: str) -> str:
    return f"{PREFIX}webhook:{_tag(endpoint_id)}:msgs"


def webhook_recent(endpoint_id: str) -> str:
    return f"{PREFIX}webhook:{_tag(endpoint_id)}:recent"


def webhook_stream(endpoint_id: str, stream: str) -> str:
    return f"{PREFIX}webhook:{_tag(endpoint_id)}:q:{stream}"


def webhook_streams(endpoint_id: str) -> str:
    return f"{PREFIX}webhook:{_tag(endpoint_id)}:streams"


def webhook_tries(endpoint_id: str) -> str:
    return f"{PREFIX}webhook:{_tag(endpoint_id)}:tries"


def webhook_lock(endpoint_id: str, stream: str) -> str:
    return f"{PREFIX}webhook:{_tag(endpoint_id)}:lock:{stream}"


def webhook_log(endpoint_id: str) -> str:
    return f"{PREFIX}webhook:{_tag(endpoint_id)}:log"


WEBHOOKS_DUE = f"{PREFIX}webhooks:due"
WEBHOOKS_AWAITING = f"{PREFIX}webhooks:awaiting"


def webhook_ready(meeting_id: str) -> str:
    return f"{PREFIX}webhooks:ready:{_tag(meeting_id)}"


def meeting_pattern(meeting_id: str) -> list[str]:
    """Patterns matching every per-segment key of a meeting (for deletion)."""
    return [audio(meeting_id, "*"), transcript(meeting_id, "*"), lease(meeting_id, "*")]


# Key names from before the hash tags: (pattern, what the id becomes). The id is the first
# group; the rest of the name is kept.
_UNTAGGED = [
    re.compile(rf"^({re.escape(PREFIX)}(?:tenant|meeting|audit|bot|webhook):)([^:{{}}]+)(:.*)?$"),
    re.compile(rf"^({re.escape(PREFIX)}(?:audio|transcript|lease):)([^:{{}}]+)(:.*)$"),
    re.compile(rf"^({re.escape(PREFIX)}(?:whip:meeting|webhooks:ready):)([^:{{}}]+)(:owner)?$"),
    re.compile(rf"^({re.escape(PREFIX)}(?:sockets|whip):tenant:)([^:{{}}]+)()$"),
]
#: leases counted per meeting, named by meeting alone before the tags; they lapse within two
#: lease periods, and their holders renew only what is counted: dropped, not renamed
_UNTAGGED_LEASES = re.compile(rf"^{re.escape(PREFIX)}(?:sockets|whip):meeting:[^:{{}}]+$")


def tagged(key: str) -> str | None:
    """The name a key written before the hash tags has now: ``key`` itself where it needs
    none (or has one already), None where it is a lease to drop (see ``migrate``)."""
    if not key.startswith(PREFIX):
        return key
    # (a key tagged already fails every pattern: its id starts with "{"; braces later in
    # the name, in a participant's label, say nothing)
    if _UNTAGGED_LEASES.match(key):
        return None
    for pattern in _UNTAGGED:
        found = pattern.match(key)
        if found:
            head, entity, rest = found.groups()
            return f"{head}{_tag(entity)}{rest or ''}"
    return key
