"""``sealscribe scan``: look for a plaintext canary everywhere sealscribe keeps anything.

Searches every key of the Redis database (ours and Celery's: strings, lists, hashes, sets,
sorted sets, streams), every file under ``$SEALSCRIBE_HOME`` (keyring, logs, models), any
extra log directories, and the temporary directory. Matching is case-insensitive, on UTF-8
and UTF-16 encodings, and on the canary's UTF-8 in base64 (Celery's Redis transport stores
message bodies base64-encoded). Findings name the place, never the content around the match.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InvalidInput
from pipeline.store.connection import Redis, as_bytes, redis_errors

__all__ = ["Finding", "scan"]

_MAX_FILE = 1 << 30  # skip single files above 1 GiB (model weights are below that)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Finding:
    where: str  # "redis" or "file"
    name: str  # key name or path


def _needles(canary: str) -> list[bytes]:
    text = canary.strip()
    if len(text) < 4:
        raise InvalidInput("the canary must be at least 4 characters, or it matches noise")
    forms = {text.lower(), text.upper(), text.capitalize(), text}
    out = set()
    for f in forms:
        out.add(f.encode("utf-8"))
        out.add(f.encode("utf-16-le"))
        out.update(_base64_forms(f.encode("utf-8")))
    return sorted(out)


def _base64_forms(data: bytes) -> set[bytes]:
    """What ``data`` looks like inside any base64 text, at each of the three alignments:
    the characters that depend on ``data`` alone (not on the bytes around it)."""
    forms = set()
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + data)
        start = -(-4 * shift // 3)  # characters that also hold the bytes before it
        whole = (shift + len(data)) // 3 * 4  # the last group may hold the bytes after it
        if whole - start >= 4:
            forms.add(encoded[start:whole])
    return forms


def _contains(blob: bytes, needles: list[bytes]) -> bool:
    lowered = blob.lower()
    return any(n.lower() in lowered for n in needles)


def _redis_values(r: Redis, key: bytes) -> Iterator[bytes]:
    kind = as_bytes(r.type(key))
    if kind == b"string":
        yield as_bytes(r.get(key) or b"")
    elif kind == b"list":
        yield from (as_bytes(v) for v in r.lrange(key, 0, -1))
    elif kind == b"hash":
        for k, v in r.hgetall(key).items():
            yield as_bytes(k)
            yield as_bytes(v)
    elif kind == b"set":
        yield from (as_bytes(v) for v in r.smembers(key))
    elif kind == b"zset":
        yield from (as_bytes(v) for v in r.zrange(key, 0, -1))
    elif kind == b"stream":
        for _id, fields in r.xrange(key) or []:
            for k, v in (fields or {}).items():
                yield as_bytes(k)
                yield as_bytes(v)


@redis_errors
def _scan_redis(r: Redis, needles: list[bytes]) -> Iterator[Finding]:
    for key in r.scan_iter(count=1000):
        key_b = as_bytes(key)
        if _contains(key_b, needles) or any(_contains(v, needles) for v in _redis_values(r, key_b)):
            yield Finding("redis", key_b.decode(errors="replace"))


def _file_contains(path: Path, needles: list[bytes]) -> bool:
    overlap = max(len(n) for n in needles)
    tail = b""
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            if _contains(tail + chunk, needles):
                return True
            tail = chunk[-overlap:]
    return False


def _scan_files(roots: Iterable[Path], needles: list[bytes]) -> Iterator[Finding]:
    seen: set[Path] = set()
    for root in roots:
        if not root.exists():
            continue
        for dirpath, _dirs, files in os.walk(root, onerror=lambda _e: None):
            for name in files:
                path = Path(dirpath, name)
                try:
                    real = path.resolve()
                    if real in seen or not path.is_file() or path.is_symlink():
                        continue
                    seen.add(real)
                    if path.stat().st_size <= _MAX_FILE and _file_contains(path, needles):
                        yield Finding("file", str(path))
                except OSError:
                    continue  # vanished or unreadable: not ours to read


def scan(
    r: Redis, canary: str, home: Path, extra_dirs: Iterable[Path] = (), temp_dir: Path | None = None
) -> list[Finding]:
    """Every place holding ``canary`` in the clear (``temp_dir`` defaults to the system's)."""
    needles = _needles(canary)
    roots = [home, *extra_dirs, temp_dir or Path(tempfile.gettempdir())]
    return [*_scan_redis(r, needles), *_scan_files(roots, needles)]
