"""The one-time rename of keys written before the hash tags (see :mod:`schema`).

Run it with every sealscribe process stopped (``sealscribe store migrate``): it walks every
``ss:`` key with SCAN and renames those that :func:`schema.tagged` names anew, each with
RENAMENX, so that it never overwrites a key the new version wrote, and it can be run again
after an interruption (a key renamed already is not found under its old name). Leases
counted per meeting are dropped: their holders stop counting them within two lease periods
anyway. Only names change; no value is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.errors import InvalidInput
from pipeline.store import schema
from pipeline.store.connection import Redis, as_str, is_cluster, redis_errors

__all__ = ["MigrationReport", "migrate"]


@dataclass
class MigrationReport:
    """What a migration did (or, dry, would do): counts of keys, and the names of those it
    could not rename because the new name is taken (ids only)."""

    renamed: int = 0
    dropped: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    dry_run: bool = False


@redis_errors
def migrate(
    r: Redis,
    url: str = "",
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> MigrationReport:
    """Rename every untagged key on ``r`` (one Redis, or a Sentinel's primary; a cluster
    only ever holds tagged keys). ``progress`` is called with the keys looked at so far."""
    if is_cluster(url):
        raise InvalidInput(
            "migrate the store on its one Redis before moving it to a cluster: a rename "
            "cannot cross slots"
        )
    report = MigrationReport(dry_run=dry_run)
    seen = 0
    for raw in r.scan_iter(match=f"{schema.PREFIX}*", count=1000):
        key = as_str(raw)
        seen += 1
        if progress is not None and seen % 1000 == 0:
            progress(seen)
        new = schema.tagged(key)
        if new == key:
            report.unchanged += 1
        elif new is None:
            report.dropped += 1
            if not dry_run:
                r.delete(key)
        elif dry_run or r.renamenx(key, new):
            report.renamed += 1
        elif r.exists(key):  # the new name is taken: keep both, say so
            report.conflicts.append(key)
    if progress is not None:
        progress(seen)
    return report
