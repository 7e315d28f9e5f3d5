"""Service functions: the one place each rule lives. The CLI, the API and the console are
thin layers over these."""

from pipeline.datakeys import data_key
from pipeline.services.consent import make_link
from pipeline.services.custody import (
    KeyReport,
    audit_head,
    audit_migrate,
    audit_show,
    audit_verify,
    import_key,
    key_status,
    migrate_keys,
    retire_keys,
    revoke_keys,
    rotate_keys,
)
from pipeline.services.meetings import (
    create_meeting,
    delete_meeting,
    finish_shreds,
    get_meeting,
    list_meetings,
    set_consent,
    set_consent_mode,
    set_subject,
    set_transcription,
)
from pipeline.services.records import verify_meeting
from pipeline.services.rights import (
    erase_participant,
    erase_tenant,
    export_tenant,
    verify_receipt,
)
from pipeline.services.tenants import (
    announcements,
    authenticate,
    create_tenant,
    get_tenant,
    list_tenants,
    set_announcement,
)
from pipeline.services.transcripts import read_transcript

__all__ = [
    "KeyReport",
    "announcements",
    "audit_head",
    "audit_migrate",
    "audit_show",
    "audit_verify",
    "authenticate",
    "create_meeting",
    "create_tenant",
    "data_key",
    "delete_meeting",
    "erase_participant",
    "erase_tenant",
    "export_tenant",
    "finish_shreds",
    "get_meeting",
    "get_tenant",
    "import_key",
    "key_status",
    "list_meetings",
    "list_tenants",
    "make_link",
    "migrate_keys",
    "read_transcript",
    "retire_keys",
    "revoke_keys",
    "rotate_keys",
    "set_announcement",
    "set_consent",
    "set_consent_mode",
    "set_subject",
    "set_transcription",
    "verify_meeting",
    "verify_receipt",
]
