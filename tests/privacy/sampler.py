"""A background sampler: scans Redis (Celery's keys too), logs, homes and temp directories
for canary plaintext every half second while a test runs, and watches which sealed segments
exist and which are queued.

Matching is ``pipeline.scan``'s own (UTF-8, UTF-16 and base64 forms, any case), so the suite
proves exactly what ``sealscribe scan`` would see; all canaries are looked for in one pass.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from pipeline import scan
from pipeline.store import schema
from pipeline.store.connection import as_bytes, as_str

__all__ = ["Found", "Sampler", "Seen"]

#: where kombu's Redis transport keeps messages delivered but not yet acknowledged
UNACKED = "unacked"


@dataclass(frozen=True)
class Found:
    at: float
    canary: str
    where: str
    name: str


@dataclass(frozen=True)
class Seen:
    """A segment key, or a queued task, the first time the sampler saw it."""

    at: float
    #: "audio", "transcript", "queued", or "interim" (an interim audio slot:
    #: segment_id is PARTICIPANT.SEQ#PART)
    kind: str
    meeting_id: str
    segment_id: str

    @property
    def participant(self) -> str:
        return self.segment_id.partition("#")[0].rpartition(".")[0]


@dataclass
class Sampler:
    redis_url: str
    canaries: tuple[str, ...]
    dirs: list[Path]
    interval: float = 0.5
    key_interval: float = 0.1
    found: list[Found] = field(default_factory=list)
    scans: list[float] = field(default_factory=list)
    seen: dict[tuple[str, str, str], Seen] = field(default_factory=dict)
    stages: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._needles = {c: scan._needles(c) for c in self.canaries}
        self._all = sorted({n for ns in self._needles.values() for n in ns})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    # -- control ---------------------------------------------------------------------------

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="privacy-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._error is not None:
            raise self._error

    def mark(self, stage: str) -> None:
        """Note that the test entered ``stage`` (what was sampled when is reported)."""
        with self._lock:
            self.stages.append((time.time(), stage))

    def scans_during(self, stage: str) -> int:
        """Full scans made while ``stage`` was the current stage."""
        with self._lock:
            stages = [*self.stages, (float("inf"), "")]
            scans = list(self.scans)
        windows = [(t, stages[i + 1][0]) for i, (t, s) in enumerate(stages[:-1]) if s == stage]
        return sum(1 for at in scans for lo, hi in windows if lo <= at < hi)

    def segments(self, meeting_id: str, kind: str | None = None) -> list[Seen]:
        with self._lock:
            return [
                s
                for s in self.seen.values()
                if s.meeting_id == meeting_id and (kind is None or s.kind == kind)
            ]

    def report(self) -> str:
        return (
            f"{len(self.scans)} scans of Redis and {len(self.dirs)} directories; "
            f"plaintext found {len(self.found)} times: "
            f"{sorted({(f.canary, f.where, f.name) for f in self.found})}"
        )

    # -- sampling --------------------------------------------------------------------------

    def _run(self) -> None:
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
        try:
            next_scan = 0.0
            while not self._stop.is_set():
                self.watch(client)
                if time.monotonic() >= next_scan:
                    self.sample(client)
                    next_scan = time.monotonic() + self.interval
                self._stop.wait(self.key_interval)
            self.watch(client)
            self.sample(client)
        except BaseException as exc:  # reported by stop()
            self._error = exc
        finally:
            client.close()

    def sample(self, client: redis.Redis | None = None) -> list[Found]:
        """One full scan for every canary now; returns (and records) what it found."""
        own = client is None
        r = client or redis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
        try:
            at = time.time()
            places = [*scan._scan_redis(r, self._all), *scan._scan_files(self.dirs, self._all)]
            found = [
                Found(at, canary, p.where, p.name) for p in places for canary in self._which(r, p)
            ]
        finally:
            if own:
                r.close()
        with self._lock:
            self.scans.append(at)
            self.found.extend(found)
        return found

    def _which(self, r: redis.Redis, place: scan.Finding) -> list[str]:
        """The canaries in one place (found there by the combined pass)."""
        out = []
        for canary, needles in self._needles.items():
            if place.where == "file":
                try:
                    hit = scan._file_contains(Path(place.name), needles)
                except OSError:
                    hit = False
            else:
                key = place.name.encode()
                hit = scan._contains(key, needles) or any(
                    scan._contains(v, needles) for v in scan._redis_values(r, key)
                )
            if hit:
                out.append(canary)
        return out or ["?"]  # gone again before it could be attributed: still a finding

    def watch(self, r: redis.Redis) -> None:
        """Record sealed segments and queued tasks that exist now."""
        at = time.time()
        now: list[tuple[str, str, str]] = []
        for kind, pattern in (
            ("audio", schema.audio("*", "*")),
            ("transcript", schema.transcript("*", "*")),
        ):
            for key in r.scan_iter(match=pattern, count=1000):
                now.append((kind, *schema.split_segment_key(as_str(key))))
        # interim audio slots: one per participant, "SEQ:PART:" + sealed audio
        prefix, suffix = schema.meeting_interim("*").split("*", 1)
        for key in r.scan_iter(match=schema.meeting_interim("*"), count=1000):
            meeting_id = as_str(key)[len(prefix) : -len(suffix)]
            for participant, value in r.hgetall(key).items():
                seq, part, _ = as_bytes(value).split(b":", 2)
                sid = f"{as_str(participant)}.{int(seq)}#{int(part)}"
                now.append(("interim", meeting_id, sid))
        raw: Iterable[object] = [*r.lrange(schema.CELERY_QUEUE, 0, -1), *r.hvals(UNACKED)]
        for message in raw:
            ids = task_ids(as_bytes(message))
            if ids is not None:
                now.append(("queued", *ids))
        with self._lock:
            for kind, meeting_id, sid in now:
                self.seen.setdefault((kind, meeting_id, sid), Seen(at, kind, meeting_id, sid))


def task_ids(message: bytes) -> tuple[str, str] | None:
    """(meeting id, segment id) of a queued transcribe task, from kombu's Redis message
    (JSON, body base64-encoded JSON ``[args, kwargs, embed]``); None for anything else."""
    try:
        doc = json.loads(message)
        if isinstance(doc, list):  # the unacked hash holds [message, exchange, routing key]
            doc = doc[0]
        body = json.loads(base64.b64decode(doc["body"]))
        args = body[0]
        if doc.get("headers", {}).get("task") == "sealscribe.transcribe" and len(args) == 2:
            return str(args[0]), str(args[1])
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
        pass
    return None
