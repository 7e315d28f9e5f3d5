"""Prometheus metrics. Labels carry kinds and reasons only: never a meeting, tenant or
participant name, never content. The API serves them at ``/metrics``.

Counters live in the process that does the work (the API for WHIP capture, ``sealscribe
bots`` for the bot); queue depth is read from Redis when scraped.

With ``SEALSCRIBE_METRICS_TOKEN`` set, every metrics endpoint (the API's ``/metrics``, and
the ports ``sealscribe worker`` and ``sealscribe bots`` serve with ``--metrics-port``)
answers only a request with ``Authorization: Bearer <that token>`` (:func:`authorized`);
unset, they are open, as a scrape inside a private network expects.
"""

from __future__ import annotations

import hmac
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline import faults

__all__ = [
    "CAPTION_LATENCY",
    "FRAMES",
    "SEGMENTS_DROPPED",
    "SEGMENTS_SEALED",
    "SEGMENTS_STORED",
    "WHIP_ROUTING",
    "QueueCollector",
    "WebhookQueueCollector",
    "authorized",
    "serve_metrics",
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
WHIP_ROUTING = Counter(
    "sealscribe_whip_routing_total",
    "WHIP offers for a meeting whose sessions another API process holds: redirected there "
    "(SEALSCRIBE_WHIP_URL), or captured here without crosstalk comparison (uncompared)",
    ["outcome"],
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


class WebhookQueueCollector(Collector):
    """Webhook queue age at scrape time: how long the most overdue delivery has waited."""

    def __init__(self, age: Callable[[], float]) -> None:
        self._age = age

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "sealscribe_webhook_queue_age_seconds",
            "Seconds the most overdue webhook delivery has waited past its due time",
            value=self._age(),
        )


def authorized(authorization: str | None, token: str) -> bool:
    """Whether a request with this ``Authorization`` header may read metrics: any request
    when no token is set, else only ``Bearer <token>`` (compared in constant time)."""
    if not token or faults.on("metrics-open"):
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr (scrapes come every few seconds)."""


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def serve_metrics(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY, token: str = ""
) -> WSGIServer:
    """Serve ``registry`` on ``host:port`` from a daemon thread, behind :func:`authorized`
    (``token``: ``SEALSCRIBE_METRICS_TOKEN``); returns the server (``shutdown()`` stops it)."""
    metrics_app: WsgiApp = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not authorized(environ.get("HTTP_AUTHORIZATION"), token):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", "Bearer")],
            )
            return [b"metrics need Authorization: Bearer <SEALSCRIBE_METRICS_TOKEN>\n"]
        return metrics_app(environ, start_response)

    server_class = _Server6 if ":" in host else _Server
    httpd = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True).start()
    return httpd
