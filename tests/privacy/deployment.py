"""What the privacy suite runs against: a sealscribe it starts on loopback (a private
``redis-server``, ``sealscribe serve`` and ``sealscribe worker`` as real processes), or a
deployment someone already runs (its API URL, tenant tokens and Redis URL).

Either way the tests speak to the API over HTTP and WebRTC, and read Redis directly: what an
operator (or an attacker with a Redis backup) could see. Only the local stack can also pause
its workers, inject faults and read its processes' homes, logs and temp directories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from tests.harness.stack import LocalStack, T

__all__ = ["TOKEN_OPTIONS", "Api", "Deployment", "LocalStack", "T"]

#: tenant role -> the option that gives its token when running against a deployment
TOKEN_OPTIONS = {
    "a": "--deployment-token",
    "b": "--deployment-other-token",
    "revoke": "--deployment-revoke-token",
}


class Api:
    """The HTTP API, as one tenant (or nobody) calls it."""

    def __init__(self, base: str, token: str | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base = base
        self.token = token
        self.http = httpx.Client(base_url=base, headers=headers, timeout=60)

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self(method, path, **kwargs)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text[:300]}"
        return (
            r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
        )

    def meeting(self, transcription: bool = True) -> str:
        meeting_id: str = self.ok("POST", "/v1/meetings", json={"transcription": transcription})[
            "id"
        ]
        return meeting_id

    def switch(self, meeting_id: str, on: bool) -> None:
        self.ok("PUT", f"/v1/meetings/{meeting_id}/transcription", json={"enabled": on})

    def consent(self, meeting_id: str, participant: str, transcribe: bool) -> None:
        self.ok(
            "PUT",
            f"/v1/meetings/{meeting_id}/participants/{participant}/consent",
            json={"transcribe": transcribe},
        )

    def transcript(self, meeting_id: str) -> str:
        """The transcript as text, opened by the API with purpose deliver."""
        text: str = self.ok("GET", f"/v1/meetings/{meeting_id}/transcript")
        return text

    def audit(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        while True:
            page = self.ok("GET", "/v1/audit", params={"offset": len(entries), "limit": 1000})
            entries += page["entries"]
            if len(page["entries"]) < 1000:
                return entries

    def whip(self, meeting_id: str) -> str:
        return f"{self.base}/v1/meetings/{meeting_id}/whip"

    def captions(self, meeting_id: str) -> str:
        ws = "ws" + self.base[len("http") :]
        return f"{ws}/v1/meetings/{meeting_id}/captions"

    def close(self) -> None:
        self.http.close()


@dataclass
class Deployment:
    api_url: str
    redis_url: str
    local: LocalStack | None
    #: role ("a", "b", "revoke") -> token, for a deployment the suite did not start
    tokens: dict[str, str] = field(default_factory=dict)
    scan_dirs: list[Path] = field(default_factory=list)
    _apis: list[Api] = field(default_factory=list)
    _redis: redis.Redis | None = None

    def tenant(self, role: str) -> T:
        """A tenant for ``role``: a new one on the local stack, or the one whose token was
        given for that role (the test is skipped if none was)."""
        if self.local is not None:
            return self.local.tenant(f"privacy-{role}")
        token = self.tokens.get(role)
        if token is None:
            pytest.skip(
                f"needs {TOKEN_OPTIONS[role]} (the token of a tenant the suite may "
                f"{'revoke' if role == 'revoke' else 'use'})"
            )
        me = self.api(token).ok("GET", "/v1/tenant")
        return T(me["id"], token)

    def api(self, who: T | str | None) -> Api:
        token = who.token if isinstance(who, T) else who
        api = Api(self.api_url, token)
        self._apis.append(api)
        return api

    def need_local(self, why: str) -> LocalStack:
        if self.local is None:
            pytest.skip(
                f"needs the suite's own processes ({why}); not possible against --deployment-url"
            )
        return self.local

    def redis(self) -> redis.Redis:
        """The deployment's Redis, as an operator (or a backup) sees it."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url, socket_connect_timeout=5)
        return self._redis

    def close(self) -> None:
        for api in self._apis:
            api.close()
        self._apis.clear()
        if self._redis is not None:
            self._redis.close()


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "::1", "localhost")
