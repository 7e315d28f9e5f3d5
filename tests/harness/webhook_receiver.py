"""A real webhook receiver for tests: an HTTP server on loopback that records every request
(headers and body) and answers a chosen status. It can be started late, on a port chosen in
advance, to play a receiver that was down."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.net import free_port

__all__ = ["Received", "Receiver"]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Records POSTs to ``http://HOST:PORT/...``; :attr:`status` is what it answers.

    Args:
        host: ``127.0.0.1`` or ``::1``.
        status: the HTTP status every request is answered with.
    """

    def __init__(self, host: str = "127.0.0.1", status: int = 200) -> None:
        self.host = host
        self.port = free_port() if host == "127.0.0.1" else 0
        self.status = status
        self.received: list[Received] = []
        #: TCP connections accepted (a refused delivery must open none)
        self.connections = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/hook"

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with outer._lock:
                    outer.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                self.send_response(outer.status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in outer.host else socket.AF_INET

            def get_request(self) -> Any:
                got = super().get_request()
                with outer._lock:
                    outer.connections += 1
                return got

        self._server = Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)
