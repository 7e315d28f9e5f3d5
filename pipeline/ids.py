"""The one validator of the ids that enter sealscribe from outside: meeting, tenant,
participant and segment ids.

Ids become parts of Redis key names (``ss:meeting:{m}``, ``ss:tenant:{t}``), so an id that is
not of its form could name another record: ``M:keys`` would read meeting ``M``'s wrapped keys
as if they were a meeting. Every edge (the API, the caption socket, the CLI) and the store
check ids here before one is used. An id that cannot name anything is :class:`NotFound` (a
meeting or tenant looked up) or :class:`InvalidInput` (a participant or segment id given as
an argument); the message never repeats more of a malformed id than is safe to show.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from pipeline import faults
from pipeline.errors import InvalidInput, NotFound
from pipeline.models import MAX_SPEAKERS, SPEAKERS_SEP

__all__ = [
    "MAX_PARTICIPANT",
    "MEETING_ID",
    "TENANT_ID",
    "meeting_id",
    "participant_id",
    "segment_id",
    "speaker_group",
    "tenant_id",
]

MEETING_ID = re.compile(r"^m_[0-9a-f]{16}$")
TENANT_ID = re.compile(r"^t_[0-9a-f]{16}$")
#: longest participant id (a display name made safe, see ``capture.room.participant_label``)
MAX_PARTICIPANT = 64
_SHOWN = 40


def _shown(value: object) -> str:
    """``value`` as a message may show it: short printable text, else a placeholder."""
    if isinstance(value, str) and value.isprintable() and 0 < len(value) <= _SHOWN:
        return value
    return "(malformed id)"


def _unchecked() -> bool:
    return faults.on("ids-unchecked")


def meeting_id(value: object) -> str:
    """``value`` if it is a meeting id (``m_`` and 16 hex digits); else :class:`NotFound`."""
    if isinstance(value, str) and (_unchecked() or MEETING_ID.match(value)):
        return value
    raise NotFound(f"no meeting {_shown(value)}")


def tenant_id(value: object) -> str:
    """``value`` if it is a tenant id (``t_`` and 16 hex digits); else :class:`NotFound`."""
    if isinstance(value, str) and (_unchecked() or TENANT_ID.match(value)):
        return value
    raise NotFound(f"no tenant {_shown(value)}")


def _is_name(value: str) -> bool:
    """One participant's label: 1-64 characters, no control, format or separator characters
    except single inner spaces, and never the speaker separator (what ``participant_label``
    makes of a display name)."""
    if not 0 < len(value) <= MAX_PARTICIPANT or value != value.strip() or "  " in value:
        return False
    if SPEAKERS_SEP in value:
        return False
    return all(c == " " or unicodedata.category(c)[0] not in "CZ" for c in value)


def _is_label(value: str) -> bool:
    """A participant id: one participant's label, or a group of 2 to :data:`MAX_SPEAKERS`
    of them (speech of a mixed room while they talked at once)."""
    names = value.split(SPEAKERS_SEP)
    if len(names) == 1:
        return _is_name(value)
    return (
        len(names) <= MAX_SPEAKERS
        and names == sorted(set(names))
        and all(_is_name(n) for n in names)
    )


def speaker_group(names: Iterable[str]) -> str:
    """The participant id of speech several participants made at once (in a mixed room):
    their labels, sorted, joined by :data:`SPEAKERS_SEP`; one name is itself.

    Raises:
        InvalidInput: more than :data:`MAX_SPEAKERS` names, or a name that is not a label.
    """
    unique = sorted(set(names))
    if not 0 < len(unique) <= MAX_SPEAKERS or not all(_is_name(n) for n in unique):
        raise InvalidInput(f"a speaker group is 1-{MAX_SPEAKERS} participant labels")
    return SPEAKERS_SEP.join(unique)


def participant_id(value: object) -> str:
    """``value`` if it is a participant id; else :class:`InvalidInput`."""
    if isinstance(value, str) and (_unchecked() or _is_label(value)):
        return value
    raise InvalidInput(
        f"a participant id is 1-{MAX_PARTICIPANT} printable characters, without control "
        "characters, line breaks or surrounding spaces (or, for speech of several at once "
        f"in a mixed room, 2-{MAX_SPEAKERS} of them, sorted, joined by {SPEAKERS_SEP!r})"
    )


def segment_id(value: object) -> str:
    """``value`` if it is a segment id (``PARTICIPANT.SEQ``); else :class:`InvalidInput`."""
    if isinstance(value, str) and _unchecked():
        return value
    if isinstance(value, str):
        participant, _, seq = value.rpartition(".")
        if _is_label(participant) and seq.isascii() and seq.isdigit() and len(seq) <= 20:
            return value
    raise InvalidInput("a segment id is PARTICIPANT.SEQ (a participant id, a dot, a number)")
