"""The worker's Prometheus metrics, and serving them from a prefork worker.

A ``sealscribe worker`` is a Celery main process and N forked children that do the work. With
``--metrics-port`` each child counts into its own files under ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode) and the main process serves their sum, so a child
that dies or is replaced keeps its counts.

Labels carry kinds and reasons only, each from a fixed set (anything else is counted as
``other``): never a meeting, tenant or participant id, never content.

===========================================  =========  ======================================
metric                                       type       labels
===========================================  =========  ======================================
sealscribe_segments_transcribed_total        counter    (none): transcripts stored
sealscribe_audio_transcribed_seconds_total   counter    (none): their audio, in seconds
sealscribe_segments_purged_total             counter    reason: transcription-off, opted-out,
                                                        key-revoked, failed-authentication,
                                                        meeting-gone
sealscribe_transcription_rtf                 histogram  (none): model seconds per audio
                                                        second, one observation per model call
sealscribe_key_unwraps_total                 counter    purpose: transcribe (data keys
                                                        unwrapped; cache hits are not counted)
sealscribe_transcribe_tasks_total            counter    outcome: what a task did for its own
                                                        segment (transcribed, already-done,
                                                        deferred, or a purge reason)
sealscribe_webhook_deliveries_total          counter    event (a webhook event type, or
                                                        other), outcome: delivered, failed,
                                                        refused (egress policy)
sealscribe_webhook_delivery_age_seconds      histogram  (none): webhook event made to a
                                                        delivery attempt (its time queued)
===========================================  =========  ======================================
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, values

from keys.types import Purpose
from pipeline.config import get_settings
from pipeline.metrics import serve_metrics

__all__ = [
    "AUDIO_SECONDS",
    "INTERIMS",
    "INTERIM_OUTCOMES",
    "KEY_UNWRAPS",
    "PURGE_REASONS",
    "RTF",
    "SEGMENTS_PURGED",
    "SEGMENTS_TRANSCRIBED",
    "TASKS",
    "TASK_OUTCOMES",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_DELIVERY_AGE",
    "WEBHOOK_OUTCOMES",
    "count_interim",
    "count_purge",
    "count_task",
    "count_transcribed",
    "count_unwrap",
    "count_webhook",
    "serve",
    "timed_model_call",
]

PURGE_REASONS = frozenset(
    {
        "transcription-off",
        "opted-out",
        "key-revoked",
        "failed-authentication",
        "meeting-gone",
        "audio-expired",
    }
)
TASK_OUTCOMES = PURGE_REASONS | {"transcribed", "already-done", "deferred"}
_PURPOSES = frozenset(p.value for p in Purpose)
#: what became of an interim caption's audio: transcribed and shown, or deleted untranscribed
#: ("empty": the task found its slot already taken by a newer interim, a batch or the final)
INTERIM_OUTCOMES = PURGE_REASONS | {"transcribed", "empty", "too-late", "finals-first"}

SEGMENTS_TRANSCRIBED = Counter(
    "sealscribe_segments_transcribed_total",
    "Audio segments transcribed (transcript sealed and stored)",
)
AUDIO_SECONDS = Counter(
    "sealscribe_audio_transcribed_seconds_total", "Seconds of audio in the segments transcribed"
)
SEGMENTS_PURGED = Counter(
    "sealscribe_segments_purged_total",
    "Audio segments deleted untranscribed, by reason",
    ["reason"],
)
RTF = Histogram(
    "sealscribe_transcription_rtf",
    "Transcription real-time factor: model seconds per second of audio, per "
    "model call (a batch of segments counts once)",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0),
)
KEY_UNWRAPS = Counter(
    "sealscribe_key_unwraps_total",
    "Data keys unwrapped by this worker, by purpose (key cache hits are not counted)",
    ["purpose"],
)
TASKS = Counter(
    "sealscribe_transcribe_tasks_total",
    "Transcribe tasks by what they did for their own segment",
    ["outcome"],
)


INTERIMS = Counter(
    "sealscribe_interims_total",
    "Interim caption tasks by outcome (transcribed, or why the audio went untranscribed)",
    ["outcome"],
)


WEBHOOK_OUTCOMES = frozenset({"delivered", "failed", "refused"})
WEBHOOK_DELIVERIES = Counter(
    "sealscribe_webhook_deliveries_total",
    "Webhook delivery attempts by event type and outcome",
    ["event", "outcome"],
)
WEBHOOK_DELIVERY_AGE = Histogram(
    "sealscribe_webhook_delivery_age_seconds",
    "Seconds from a webhook event being made to a delivery attempt (its time in the queue)",
    buckets=(0.1, 0.5, 1, 5, 30, 60, 300, 3600, 6 * 3600, 24 * 3600),
)


def _label(value: str, allowed: frozenset[str]) -> str:
    # A label outside the fixed set could one day carry an id: count it as "other" instead.
    return value if value in allowed else "other"


def count_purge(reason: str) -> None:
    SEGMENTS_PURGED.labels(_label(reason, PURGE_REASONS)).inc()


def count_task(outcome: str) -> None:
    TASKS.labels(_label(outcome, TASK_OUTCOMES)).inc()


def count_interim(outcome: str) -> None:
    INTERIMS.labels(_label(outcome, INTERIM_OUTCOMES)).inc()


def count_webhook(event: str, events: frozenset[str], outcome: str, age: float) -> None:
    """One webhook delivery attempt: ``event`` counted as itself only if in ``events``."""
    WEBHOOK_DELIVERIES.labels(_label(event, events), _label(outcome, WEBHOOK_OUTCOMES)).inc()
    WEBHOOK_DELIVERY_AGE.observe(max(0.0, age))


def count_unwrap(purpose: Purpose | str) -> None:
    KEY_UNWRAPS.labels(
        _label(Purpose(purpose).value if isinstance(purpose, Purpose) else purpose, _PURPOSES)
    ).inc()


def count_transcribed(audio_seconds: float) -> None:
    SEGMENTS_TRANSCRIBED.inc()
    AUDIO_SECONDS.inc(audio_seconds)


@contextmanager
def timed_model_call(audio_seconds: float) -> Iterator[None]:
    """Observe the real-time factor of the model call inside the block (if it returns and
    there was audio to transcribe)."""
    start = time.perf_counter()
    yield
    if audio_seconds > 0:
        RTF.observe((time.perf_counter() - start) / audio_seconds)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve the sum of every process's metrics on ``host:port`` from a thread of the
    calling process (the worker's main process).

    ``PROMETHEUS_MULTIPROC_DIR`` must have been set, to an empty directory, before
    prometheus-client was first imported (``sealscribe worker --metrics-port`` does it);
    otherwise each child would count in its own memory and nothing would be served.
    With ``SEALSCRIBE_METRICS_TOKEN`` set, only requests bearing it are answered."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR") or values.ValueClass is values.MutexValue:
        raise RuntimeError(
            "worker metrics need PROMETHEUS_MULTIPROC_DIR set before prometheus_client is imported"
        )
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    serve_metrics(port, host, registry, get_settings().metrics_token)
