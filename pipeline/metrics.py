"""Prometheus metrics. Labels carry kinds and reasons only: never a meeting, tenant or
participant name, never content. The API serves them at ``/metrics``.

Counters live in the process that does the work (the API for WHIP capture, ``sealscribe
bots`` for the bot); queue depth is read from Redis when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "CAPTION_LATENCY",
    "FRAMES",
    "SEGMENTS_DROPPED",
    "SEGMENTS_SEALED",
    "SEGMENTS_STORED",
    "QueueCollector",
]

FRAMES = Counter(
    "sealscribe_capture_frames_total", "Audio frames received from participants", ["outcome"]
)
SEGMENTS_SEALED = Counter("sealscribe_segments_sealed_total", "Utterances sealed at capture")
SEGMENTS_STORED = Counter(
    "sealscribe_segments_queued_total",
    "Sealed utterances stored in Redis and queued for transcription",
)
SEGMENTS_DROPPED = Counter(
    "sealscribe_segments_dropped_total",
    "Utterances not stored, by reason (policy: transcription off or "
    "opted out; backlog: Redis too slow or down)",
    ["reason"],
)
CAPTION_LATENCY = Histogram(
    "sealscribe_caption_delivery_seconds",
    "Transcript stored to caption sent on a WebSocket",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)


class QueueCollector(Collector):
    """Queue depth at scrape time: segments waiting, and Celery messages queued."""

    def __init__(self, depth: object) -> None:
        self._depth = depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        pending, messages = self._depth()  # type: ignore[operator]
        g = GaugeMetricFamily("sealscribe_queue_depth", "Work waiting, by kind", labels=["kind"])
        g.add_metric(["segments"], pending)
        g.add_metric(["messages"], messages)
        yield g
