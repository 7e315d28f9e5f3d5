"""A hostile Janus on loopback: just enough of the Janus HTTP API (sessions, handles, the
VideoRoom ``join``, the long poll) for ``sealscribe bots`` to join a room, that lists as many
publishers as a test asks and records what the bot sends it.

A real Janus lists only real publishers (its rooms cap them); this one stands in for a
meeting server a tenant controls. Subscriber joins are acknowledged and never answered, so a
subscription stays pending (as against a slow server) and is counted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FakeJanus", "Seen", "fake_janus"]


@dataclass
class Seen:
    """What the bot sent: every ``join`` body (with the API secret it carried)."""

    publisher_joins: list[dict[str, Any]] = field(default_factory=list)
    subscriber_joins: list[dict[str, Any]] = field(default_factory=list)
    apisecrets: set[str] = field(default_factory=set)
    joined: threading.Event = field(default_factory=threading.Event)


class FakeJanus:
    """The server; ``publishers`` is how many it lists in the join answer."""

    def __init__(self, publishers: int = 0) -> None:
        self.publishers = publishers
        self.seen = Seen()
        self._ids = itertools.count(1000)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        handler = _handler(self)
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, room: int = 1234, query: str = "") -> str:
        return f"janus://127.0.0.1:{self.port}/{room}" + (f"?{query}" if query else "")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def answer(self, path: str, request: dict[str, Any]) -> dict[str, Any]:
        kind, transaction = request.get("janus"), request.get("transaction")
        if isinstance(request.get("apisecret"), str):
            with self._lock:
                self.seen.apisecrets.add(request["apisecret"])
        base = {"transaction": transaction}
        parts = [p for p in path.split("/") if p]  # janus, session, handle
        if kind in ("create", "attach"):
            return {**base, "janus": "success", "data": {"id": self.next_id()}}
        if kind in ("keepalive", "trickle"):
            return {**base, "janus": "ack"}
        if kind != "message":
            return {**base, "janus": "success"}
        body = request.get("body", {})
        handle = int(parts[2]) if len(parts) > 2 else 0
        reply: dict[str, Any] = {**base, "janus": "success", "sender": handle}
        if body.get("request") == "join" and body.get("ptype") == "publisher":
            with self._lock:
                self.seen.publisher_joins.append(body)
            self.seen.joined.set()
            listed = [
                {
                    "id": 10_000 + i,
                    "display": f"listed {i}",
                    "streams": [{"type": "audio", "mid": "0", "codec": "opus"}],
                }
                for i in range(self.publishers)
            ]
            data = {
                "videoroom": "joined",
                "room": body.get("room"),
                "id": self.next_id(),
                "private_id": self.next_id(),
                "publishers": listed,
            }
            return {**reply, "plugindata": {"plugin": "janus.plugin.videoroom", "data": data}}
        if body.get("request") == "join":  # a subscriber: acknowledged, never answered
            with self._lock:
                self.seen.subscriber_joins.append(body)
            return {**base, "janus": "ack"}
        data = {"videoroom": "event", "configured": "ok"}
        return {**reply, "plugindata": {"plugin": "janus.plugin.videoroom", "data": data}}

    def long_poll(self) -> list[dict[str, Any]]:
        self._stop.wait(2.0)
        return [{"janus": "keepalive"}]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: a bot that leaves drops its long poll midway."""


def _handler(server: FakeJanus) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, doc: object) -> None:
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path.endswith("/info"):
                self._send({"janus": "server_info", "session-timeout": 60})
            else:
                self._send(server.long_poll())

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            try:
                request = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                request = {}
            self._send(server.answer(urlsplit(self.path).path, request))

    return Handler


@contextlib.contextmanager
def fake_janus(publishers: int = 0) -> Iterator[FakeJanus]:
    server = FakeJanus(publishers)
    server.start()
    try:
        yield server
    finally:
        server.stop()
