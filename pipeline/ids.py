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

from pipeline import faults
from pipeline.errors import InvalidInput, NotFound

__all__ = [
    "MAX_PARTICIPANT",
    "MEETING_ID",
    "TENANT_ID",
    "meeting_id",
    "participant_id",
    "segment_id",
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


def _is_label(value: str) -> bool:
    """A participant label: 1-64 characters, no control, format or separator characters
    except single inner spaces (what ``participant_label`` makes of a display name)."""
    if not 0 < len(value) <= MAX_PARTICIPANT or value != value.strip() or "  " in value:
        return False
    return all(c == " " or unicodedata.category(c)[0] not in "CZ" for c in value)


def participant_id(value: object) -> str:
    """``value`` if it is a participant id; else :class:`InvalidInput`."""
    if isinstance(value, str) and (_unchecked() or _is_label(value)):
        return value
    raise InvalidInput(
        f"a participant id is 1-{MAX_PARTICIPANT} printable characters, without control "
        "characters, line breaks or surrounding spaces"
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
