"""The HTTP API end to end, in process (FastAPI's TestClient, real Redis, real aiortc for WHIP).

Every operation of the OpenAPI document, and the captions WebSocket, has a test of its success
path (``@covers`` claims it, and the claim is checked: the test must get a success answer from
that route); every tenant-scoped route is checked for tenant isolation, and the error paths
(401, 403, 404, 400/422, 409, 413, 503) are exercised across the routes. Every response passes
one check, whatever the test: errors are RFC 9457 problem details, nothing is a 500, and the
canary string that bad requests carry never comes back.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import re
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

import anyio
import pytest
from aiortc import RTCPeerConnection
from fastapi.routing import APIWebSocketRoute
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from keys.types import KeyUse, Purpose
from pipeline import egress, services
from pipeline.api.app import MAX_BODY_BYTES, create_app
from pipeline.api.problems import MAX_JSON_BYTES
from pipeline.capture.ice import configure_ice, rtc_configuration
from pipeline.capture.whip import MAX_OFFER_BYTES
from pipeline.config import Settings
from pipeline.datakeys import sealing_key
from pipeline.egress import EgressPolicy
from pipeline.models import TranscriptSegment
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.sealing import seal_transcript
from pipeline.services.retention import MAX_AUDIO_TTL, MAX_TRANSCRIPT_TTL
from tests.conftest import TEST_REDIS_URL
from tests.harness.processes import broker_for

#: bad requests carry this; no response may ever contain it
CANARY = "zebra-canary-7f3a"
#: a secret inside a join URL: never shown back
PIN = "pin-4u7q"

Route = tuple[str, str]  # (METHOD, path template); WebSocket routes use the method "WS"
F = TypeVar("F", bound=Callable[..., Any])

# -- the schema, read once ------------------------------------------------------------------

_APP = create_app()
SCHEMA: dict[str, Any] = _APP.openapi()
METHODS = {"get", "put", "post", "delete", "patch"}
ROUTES: list[Route] = sorted(
    (m.upper(), p) for p, item in SCHEMA["paths"].items() for m in item if m in METHODS
)


def _websockets(routes: list[Any], prefix: str = "") -> Iterator[Route]:
    for r in routes:
        if isinstance(r, APIWebSocketRoute):
            yield "WS", prefix + r.path
        inner = getattr(r, "original_router", None)  # an included router (FastAPI >= 0.160)
        if inner is not None:
            yield from _websockets(inner.routes, prefix + r.include_context.prefix)


WS_ROUTES: list[Route] = sorted(_websockets(_APP.routes))


def operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = SCHEMA["paths"][route[1]][route[0].lower()]
    return op


SECURED = [r for r in ROUTES if operation(r).get("security")]
MEETING_SCOPED = [r for r in SECURED if "{meeting_id}" in r[1]]
TENANT_WIDE = [r for r in SECURED if r not in MEETING_SCOPED]
JSON_BODY = [
    r
    for r in ROUTES
    if "application/json" in operation(r).get("requestBody", {}).get("content", {})
]
WHIP = ("POST", "/v1/meetings/{meeting_id}/whip")
WHIP_SESSION = "/v1/meetings/{meeting_id}/whip/{session_id}"
CAPTIONS = "/v1/meetings/{meeting_id}/captions"
TICKET = "/v1/meetings/{meeting_id}/captions/ticket"
TOKENS = "/v1/tokens"
TOKEN = "/v1/tokens/{token_id}"
WEBHOOKS = "/v1/webhooks"
WEBHOOK = "/v1/webhooks/{endpoint_id}"
#: a success that is not 2xx: WHIP sessions refuse trickle ICE by design (RFC 9725)
SUCCESS_STATUS = {("PATCH", WHIP_SESSION): 405}


class Response(Protocol):
    """What the test client answers (httpx's or its successor's response)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    def json(self, **kwargs: Any) -> Any: ...


def ids(routes: list[Route]) -> list[str]:
    return [f"{m} {p}" for m, p in routes]


# -- which test covers which route ----------------------------------------------------------

_CLAIMED: dict[Route, set[str]] = {}
_succeeded: set[Route] = set()


def covers(*routes: str) -> Callable[[F], F]:
    """Claims the success path of ``routes`` ("METHOD /path/{template}"); the claim is
    checked after the test (see ``_claims_hold``)."""

    def mark(fn: F) -> F:
        claimed = [(r.split(" ", 1)[0], r.split(" ", 1)[1]) for r in routes]
        for route in claimed:
            _CLAIMED.setdefault(route, set()).add(fn.__name__)
        setattr(fn, "__covers__", claimed)
        return fn

    return mark


@pytest.fixture(autouse=True)
def _claims_hold(request: pytest.FixtureRequest) -> Iterator[None]:
    _succeeded.clear()
    yield
    claimed: list[Route] = getattr(request.function, "__covers__", [])
    missing = [r for r in claimed if r not in _succeeded]
    assert not missing, f"{request.function.__name__} claims but never succeeded on {missing}"


def test_every_route_is_covered() -> None:
    everything = set(ROUTES) | set(WS_ROUTES)
    untested = sorted(everything - set(_CLAIMED))
    stale = sorted(set(_CLAIMED) - everything)
    assert not untested, f"routes without a success-path test: {untested}"
    assert not stale, f"tests claim routes that no longer exist: {stale}"
    # every tenant-scoped route is in one of the isolation tests below
    assert set(SECURED) == set(MEETING_SCOPED) | set(TENANT_WIDE)
    assert set(TENANT_WIDE) == set(VIEWS_CHECKED_FOR_ISOLATION)
    assert ROUTES and WS_ROUTES == [("WS", CAPTIONS)]


# -- the client -----------------------------------------------------------------------------


def check_response(route: Route, r: Response) -> None:
    """What holds for every answer: no 500, problem details for errors, no canary."""
    assert CANARY.encode() not in r.content, f"{route} echoed the request: {r.text[:300]}"
    assert all(CANARY not in v for v in r.headers.values())
    assert r.status_code != 500, f"{route}: {r.text[:500]}"
    if r.status_code >= 400 and route != ("GET", "/healthz"):
        assert_problem(r, r.status_code)
    expected = SUCCESS_STATUS.get(route)
    if r.status_code < 400 if expected is None else r.status_code == expected:
        _succeeded.add(route)


def assert_problem(r: Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status
    assert body["title"] == HTTPStatus(status).phrase
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["type"].startswith("https://sealscribe.dev/problems/")
    if slug is not None:
        assert body["type"].endswith("/" + slug), body
    if status == 401:
        assert r.headers.get("www-authenticate") == "Bearer"
    return body


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    def __call__(
        self,
        method: str,
        template: str,
        token: str | None = None,
        *,
        path: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> Response:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        url = template.format(**(path or {}))
        r = self.client.request(method, url, headers=sent, **kwargs)
        check_response((method, template), r)
        return r

    def ws(
        self,
        meeting_id: str,
        token: str | None = None,
        *,
        cursor: str | None = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> WebSocketTestSession:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        params = dict(query or {})
        if cursor is not None:
            params["cursor"] = cursor
        url = CAPTIONS.format(meeting_id=meeting_id)
        if params:
            url += "?" + urlencode(params)
        return self.client.websocket_connect(url, headers=sent)


def receive(ws: WebSocketTestSession, timeout: float = 10.0) -> dict[str, Any]:
    """One caption, or a failure after ``timeout`` seconds rather than a hung test."""

    async def get() -> Any:
        with anyio.fail_after(timeout):
            return await ws._send_rx.receive()

    message = ws.portal.call(get)
    ws._raise_on_close(message)
    doc: dict[str, Any] = json.loads(message["text"])
    _succeeded.add(("WS", CAPTIONS))
    return doc


def refused(
    api: Api, meeting_id: str, token: str | None = None, **kwargs: Any
) -> WebSocketDisconnect:
    """The close the captions socket answers with, instead of captions."""
    with pytest.raises(WebSocketDisconnect) as info, api.ws(meeting_id, token, **kwargs) as ws:
        receive(ws)
    assert CANARY not in (info.value.reason or "")
    return info.value


# -- fixtures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class T:
    id: str
    token: str


@pytest.fixture
def app_rt(rt: Runtime) -> Iterator[Runtime]:
    # WHIP peers meet on loopback (the egress policy lets exactly that through); queued
    # tasks land in the flushed test database
    rt.settings = dataclasses.replace(rt.settings, ice_hosts="127.0.0.1")
    egress.configure(EgressPolicy.parse("127.0.0.1"))
    use_broker(broker_for(TEST_REDIS_URL))
    yield rt
    egress.configure(None)
    configure_ice("")


@pytest.fixture
def api(app_rt: Runtime) -> Iterator[Api]:
    with TestClient(create_app(app_rt)) as client:
        yield Api(client)


def new_tenant(rt: Runtime, name: str) -> T:
    tenant, token = services.create_tenant(rt, name)
    return T(tenant.id, token)


@pytest.fixture
def a(app_rt: Runtime) -> T:
    return new_tenant(app_rt, "acme")


@pytest.fixture
def b(app_rt: Runtime) -> T:
    return new_tenant(app_rt, "globex")


def meeting(api: Api, t: T, **body: Any) -> str:
    r = api("POST", "/v1/meetings", t.token, json=body)
    assert r.status_code == 201, r.text
    meeting_id: str = r.json()["id"]
    return meeting_id


def store_transcript(
    rt: Runtime, meeting_id: str, texts: list[str], first_seq: int = 0, participant: str = "alice"
) -> None:
    """Transcript segments as a worker stores them (sealed, with a caption entry each)."""
    m = rt.store.meetings.get(meeting_id)
    key = services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE)
    for seq, text in enumerate(texts, first_seq):
        segment = TranscriptSegment(
            participant, seq, seq * 2000, seq * 2000 + 1500, text, language="en"
        )
        sealed = seal_transcript(key, m.tenant_id, m.id, segment)
        rt.store.segments.complete(sealed, segment.start_ms)


def sdp_offer() -> str:
    """A real audio offer from an aiortc publisher on loopback (no STUN, no traffic)."""

    async def make() -> str:
        pc = RTCPeerConnection(rtc_configuration())
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        await pc.close()
        return sdp

    configure_ice("127.0.0.1")
    return asyncio.run(make())


def whip_session(api: Api, t: T, meeting_id: str, participant: str = "whip") -> str:
    r = api(
        "POST",
        WHIP[1],
        t.token,
        path={"meeting_id": meeting_id},
        params={"participant": participant},
        content=sdp_offer(),
        headers={"Content-Type": "application/sdp"},
    )
    assert r.status_code == 201, r.text
    session_id = r.headers["location"].rsplit("/", 1)[1]
    assert r.headers["location"] == f"/v1/meetings/{meeting_id}/whip/{session_id}"
    return session_id


def valid_request(route: Route, tenant_id: str) -> dict[str, Any]:
    """A request body (and headers) the route accepts."""
    bodies: dict[Route, Any] = {
        ("PUT", "/v1/tenant/retention"): {"transcript_ttl": 3600},
        ("POST", "/v1/meetings"): {},
        ("PUT", "/v1/meetings/{meeting_id}/transcription"): {"enabled": False},
        ("PUT", "/v1/meetings/{meeting_id}/participants/{participant}/consent"): {
            "transcribe": False
        },
        ("POST", "/v1/meetings/{meeting_id}/bot"): {"url": "janus://127.0.0.1:8088/999"},
        ("POST", "/v1/keys/retire"): {"below": 1},
        ("POST", "/v1/keys/revoke"): {"confirm": f"revoke {tenant_id}"},
        ("POST", TOKENS): {"scopes": ["read"]},
        ("POST", WEBHOOKS): {"url": "http://127.0.0.1:9/hook"},
        ("POST", WEBHOOK + "/replay"): {"message_id": None},
        ("PUT", "/v1/meetings/{meeting_id}/participants/{participant}/subject"): {
            "subject": "crm-1"
        },
        ("POST", "/v1/audit/verify"): {},
        ("PUT", "/v1/meetings/{meeting_id}/consent-mode"): {"mode": "opt-in"},
        ("POST", "/v1/meetings/{meeting_id}/participants/{participant}/link"): {"ttl": 3600},
        ("POST", "/v1/participants/erase"): {"name": "nobody", "confirm": "erase"},
        ("POST", "/v1/audit/receipts/verify"): {
            "tenant": tenant_id,
            "subject": "name:nobody",
            "erased_at": 0,
            "meetings": [],
            "key_version": None,
            "audit_head": None,
            "mac": "",
        },
    }
    if route == WHIP:
        return {
            "content": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            "headers": {"Content-Type": "application/sdp"},
        }
    if route in bodies:
        return {"json": bodies[route]}
    assert route not in JSON_BODY, f"valid_request needs a body for {route}"
    return {}


UNKNOWN_TOKEN = "sst_" + "A" * 43
UNKNOWN_MEETING = "m_" + "0" * 16
UNKNOWN_SESSION = "w_" + "0" * 16
UNKNOWN_TOKEN_ID = "tk_" + "0" * 16


def path_for(
    meeting_id: str = UNKNOWN_MEETING,
    session_id: str = UNKNOWN_SESSION,
    token_id: str = UNKNOWN_TOKEN_ID,
) -> dict[str, str]:
    return {
        "meeting_id": meeting_id,
        "participant": "alice",
        "session_id": session_id,
        "token_id": token_id,
        "endpoint_id": "wh_" + "0" * 16,
        "kind": "join",
    }


# -- success paths --------------------------------------------------------------------------


@covers("GET /v1/tenant", "PUT /v1/tenant/retention", "GET /v1/tenant/export")
def test_tenant_retention_and_export(api: Api, app_rt: Runtime, a: T, b: T) -> None:
    me = api("GET", "/v1/tenant", a.token).json()
    defaults = {
        "transcript_ttl": app_rt.settings.transcript_ttl,
        "audio_ttl": app_rt.settings.audio_ttl,
    }
    assert me == {
        "id": a.id,
        "name": "acme",
        "created": me["created"],
        "revoked": False,
        "key_provider": "local",
        "retention": defaults,
    }

    r = api("PUT", "/v1/tenant/retention", a.token, json={"transcript_ttl": 7200})
    assert r.json() == {**defaults, "transcript_ttl": 7200}
    r = api("PUT", "/v1/tenant/retention", a.token, json={"audio_ttl": 600.0})  # 600.0 is 600
    assert r.json() == {"transcript_ttl": 7200, "audio_ttl": 600}
    assert api("PUT", "/v1/tenant/retention", a.token, json={}).json() == r.json()
    assert api("GET", "/v1/tenant", a.token).json()["retention"] == r.json()
    assert api("GET", "/v1/tenant", b.token).json()["retention"] == defaults

    out_of_range = [
        {"transcript_ttl": 0},
        {"transcript_ttl": MAX_TRANSCRIPT_TTL + 1},
        {"audio_ttl": MAX_AUDIO_TTL + 1},
        {"audio_ttl": -5},
        {"transcript_ttl": True},
        {"audio_ttl": "3600"},
        {"audio_ttl": 1.5},
        {"keep": CANARY},
    ]
    for body in out_of_range:
        problem = assert_problem(
            api("PUT", "/v1/tenant/retention", a.token, json=body), 422, "validation"
        )
        assert problem["errors"], problem
    assert api("GET", "/v1/tenant", a.token).json()["retention"] == r.json()

    m = meeting(api, a)
    store_transcript(app_rt, m, ["hello export"])
    r = api("GET", "/v1/tenant/export", a.token)
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["cache-control"] == "no-store"
    assert f'filename="sealscribe-{a.id}.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = set(zf.namelist())
        assert {
            "tenant.json",
            "audit.jsonl",
            f"meetings/{m}/meeting.json",
            f"meetings/{m}/transcript.json",
            f"meetings/{m}/transcript.vtt",
        } <= names
        assert json.loads(zf.read(f"meetings/{m}/transcript.json"))[0]["text"] == "hello export"
        assert json.loads(zf.read("tenant.json"))["id"] == a.id


@covers(
    "POST /v1/meetings",
    "GET /v1/meetings",
    "GET /v1/meetings/{meeting_id}",
    "PUT /v1/meetings/{meeting_id}/transcription",
    "PUT /v1/meetings/{meeting_id}/participants/{participant}/consent",
    "GET /v1/meetings/{meeting_id}/privacy",
    "DELETE /v1/meetings/{meeting_id}",
)
def test_meeting_lifecycle(api: Api, a: T) -> None:
    r = api("POST", "/v1/meetings", a.token, json={})
    created = r.json()
    assert r.status_code == 201
    assert created["transcription"] is False  # off unless asked for
    assert created["opted_out"] == [] and created["language"] is None
    m = created["id"]
    on = meeting(api, a, transcription=True, language="en")
    assert (
        api("GET", "/v1/meetings/{meeting_id}", a.token, path={"meeting_id": on}).json()[
            "transcription"
        ]
        is True
    )
    listed = api("GET", "/v1/meetings", a.token).json()
    assert sorted(x["id"] for x in listed) == sorted([m, on])
    got = api("GET", "/v1/meetings/{meeting_id}", a.token, path={"meeting_id": m}).json()
    assert got == {**created, "notices": "none", "notices_why": "no room is connected"}

    switch = "/v1/meetings/{meeting_id}/transcription"
    assert (
        api("PUT", switch, a.token, path={"meeting_id": m}, json={"enabled": True}).json()[
            "transcription"
        ]
        is True
    )
    assert (
        api("PUT", switch, a.token, path={"meeting_id": m}, json={"enabled": False}).json()[
            "transcription"
        ]
        is False
    )
    for bad in (
        {},
        {"enabled": "yes"},
        {"enabled": 1},
        {"enabled": None},
        {"enabled": True, "why": CANARY},
    ):
        assert_problem(api("PUT", switch, a.token, path={"meeting_id": m}, json=bad), 422)

    consent = "/v1/meetings/{meeting_id}/participants/{participant}/consent"
    where = {"meeting_id": m, "participant": "Zed Speaker"}
    r = api("PUT", consent, a.token, path=where, json={"transcribe": False})
    assert r.json()["opted_out"] == ["Zed Speaker"]
    r = api("PUT", consent, a.token, path=where, json={"transcribe": True})
    assert r.json()["opted_out"] == []
    assert_problem(
        api(
            "PUT",
            consent,
            a.token,
            path={**where, "participant": "x" * 65},
            json={"transcribe": False},
        ),
        422,
    )
    # Janus display names may hold a slash: the name is the rest of the path
    slashed = api(
        "PUT",
        consent,
        a.token,
        path={**where, "participant": "R&D / Ann"},
        json={"transcribe": False},
    )
    assert slashed.json()["opted_out"] == ["R&D / Ann"]
    api(
        "PUT",
        consent,
        a.token,
        path={**where, "participant": "R&D / Ann"},
        json={"transcribe": True},
    )

    privacy = api(
        "GET", "/v1/meetings/{meeting_id}/privacy", a.token, path={"meeting_id": m}
    ).json()
    assert privacy["meeting_id"] == m and privacy["transcription_now"] is False
    assert [s[1] for s in privacy["switches"]] == ["on", "off"]
    assert [c[1] for c in privacy["consent_changes"]] == [
        "Zed Speaker:opted-out",
        "Zed Speaker:opted-in",
        "R&D / Ann:opted-out",
        "R&D / Ann:opted-in",
    ]
    assert privacy["audit_intact"] is True and privacy["audit_problems"] == []

    r = api("DELETE", "/v1/meetings/{meeting_id}", a.token, path={"meeting_id": m})
    assert r.status_code == 204 and r.content == b""
    assert_problem(
        api("GET", "/v1/meetings/{meeting_id}", a.token, path={"meeting_id": m}), 404, "not-found"
    )
    assert_problem(api("DELETE", "/v1/meetings/{meeting_id}", a.token, path={"meeting_id": m}), 404)
    assert [x["id"] for x in api("GET", "/v1/meetings", a.token).json()] == [on]


def test_meeting_create_refusals(api: Api, a: T) -> None:
    unusable: list[dict[str, Any]] = [{"language": "E1"}, {"translate": True}, {"language": "fr"}]
    for body in unusable:  # the deployment's tiny.en knows English only; codes are ISO 639-1
        assert_problem(api("POST", "/v1/meetings", a.token, json=body), 400, "invalid-input")
    for body in (
        {"transcription": "on"},
        {"transcription": 1},
        {"language": CANARY},
        {"language": 5},
        {"meeting": CANARY},
    ):
        assert_problem(api("POST", "/v1/meetings", a.token, json=body), 422, "validation")
    assert api("GET", "/v1/meetings", a.token).json() == []


@covers(
    "POST /v1/meetings/{meeting_id}/bot",
    "GET /v1/meetings/{meeting_id}/bot",
    "DELETE /v1/meetings/{meeting_id}/bot",
)
def test_bot_join_status_leave(api: Api, a: T) -> None:
    m = meeting(api, a)
    bot = "/v1/meetings/{meeting_id}/bot"
    where = {"meeting_id": m}
    assert_problem(api("GET", bot, a.token, path=where), 404)  # none sent yet
    assert_problem(api("DELETE", bot, a.token, path=where), 404)

    r = api(
        "POST", bot, a.token, path=where, json={"url": f"janus://127.0.0.1:8088/1234?pin={PIN}"}
    )
    assert r.status_code == 202
    joined = r.json()
    assert joined["meeting_id"] == m and joined["state"] == "requested"
    assert joined["target"] == "janus://127.0.0.1:8088/1234" and PIN not in r.text
    assert api("GET", bot, a.token, path=where).json()["state"] == "requested"

    again = api("POST", bot, a.token, path=where, json={"url": "janus://127.0.0.1:8088/1234"})
    assert_problem(again, 409, "conflict")

    r = api("DELETE", bot, a.token, path=where)
    assert r.status_code == 202 and r.json()["state"] == "left"  # no bot service holds it
    assert (
        api(
            "POST", bot, a.token, path=where, json={"url": "janus://127.0.0.1:8088/1234"}
        ).status_code
        == 202
    )


def test_bot_join_url_is_checked(api: Api, a: T) -> None:
    m = meeting(api, a)
    bot = "/v1/meetings/{meeting_id}/bot"
    bad = [
        "http://127.0.0.1:8088/1234",
        "janus://",
        "janus://127.0.0.1:8088/0",
        "janus://127.0.0.1:8088/room",
        f"janus://{CANARY}_/1234",
        f"{CANARY}://x/1",
        f"janus://127.0.0.1:8088/1234?pin={CANARY} x",
        "",
    ]
    for url in bad:
        r = api("POST", bot, a.token, path={"meeting_id": m}, json={"url": url})
        detail = assert_problem(r, 400, "invalid-input")["detail"]
        assert "URL" in detail
    assert_problem(
        api("POST", bot, a.token, path={"meeting_id": m}, json={"url": "janus://h/1" + "1" * 2048}),
        422,
    )
    assert_problem(
        api(
            "POST",
            bot,
            a.token,
            path={"meeting_id": m},
            json={"url": "janus://127.0.0.1:8088/1", "pin": CANARY},
        ),
        422,
    )
    assert_problem(api("GET", bot, a.token, path={"meeting_id": m}), 404)  # nothing was sent


@covers("GET /v1/meetings/{meeting_id}/transcript")
def test_transcript_formats(api: Api, app_rt: Runtime, a: T) -> None:
    m = meeting(api, a, transcription=True)
    transcript = "/v1/meetings/{meeting_id}/transcript"
    empty = api("GET", transcript, a.token, path={"meeting_id": m})
    assert empty.status_code == 200 and empty.text == ""
    store_transcript(app_rt, m, ["hello there", "general kenobi"])

    media = {
        "txt": "text/plain",
        "srt": "application/x-subrip",
        "vtt": "text/vtt",
        "json": "application/json",
    }
    bodies = {}
    for fmt, kind in media.items():
        r = api("GET", transcript, a.token, path={"meeting_id": m}, params={"format": fmt})
        assert r.headers["content-type"].split(";")[0] == kind
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["content-disposition"] == f'attachment; filename="{m}.{fmt}"'
        bodies[fmt] = r.text
    assert api("GET", transcript, a.token, path={"meeting_id": m}).text == bodies["txt"]
    assert "alice: hello there" in bodies["txt"] and "alice: general kenobi" in bodies["txt"]
    assert "00:00:02,000 --> 00:00:03,500" in bodies["srt"]
    assert bodies["vtt"].startswith("WEBVTT") and "<v alice>general kenobi" in bodies["vtt"]
    doc = json.loads(bodies["json"])
    assert [(s["speaker"], s["seq"], s["text"]) for s in doc] == [
        ("alice", 0, "hello there"),
        ("alice", 1, "general kenobi"),
    ]

    for params in ({"format": "xml"}, {"format": CANARY}):
        assert_problem(
            api("GET", transcript, a.token, path={"meeting_id": m}, params=params),
            422,
            "validation",
        )
    assert_problem(api("GET", transcript, a.token, path={"meeting_id": "m_nothex"}), 422)
    audit = api("GET", "/v1/audit", a.token, params={"limit": 1000}).json()["entries"]
    assert any(
        e["action"] == "unwrap" and e["purpose"] == "deliver" and e["meeting"] == m for e in audit
    )


@covers(
    "POST /v1/meetings/{meeting_id}/whip",
    "PATCH /v1/meetings/{meeting_id}/whip/{session_id}",
    "DELETE /v1/meetings/{meeting_id}/whip/{session_id}",
)
def test_whip_publish_and_end(api: Api, a: T, b: T) -> None:
    m = meeting(api, a)
    r = api(
        "POST",
        WHIP[1],
        a.token,
        path={"meeting_id": m},
        params={"participant": "Ann"},
        content=sdp_offer(),
        headers={"Content-Type": "application/sdp"},
    )
    assert r.status_code == 201
    assert r.headers["content-type"].startswith("application/sdp")
    assert r.text.startswith("v=0") and "m=audio" in r.text
    session = r.headers["location"].rsplit("/", 1)[1]
    assert re.fullmatch(r"w_[0-9a-f]{16}", session) and r.headers["etag"] == f'"{session}"'
    where = path_for(m, session)

    r = api("PATCH", WHIP_SESSION, a.token, path=where)
    assert_problem(r, 405)
    assert r.headers["allow"] == "DELETE"
    # another tenant can neither see nor end the session
    assert_problem(api("PATCH", WHIP_SESSION, b.token, path=where), 404)
    assert_problem(api("DELETE", WHIP_SESSION, b.token, path=where), 404)
    assert_problem(
        api("DELETE", WHIP_SESSION, a.token, path={**where, "meeting_id": meeting(api, a)}), 404
    )  # the session belongs to another meeting
    assert api("DELETE", WHIP_SESSION, a.token, path=where).status_code == 200
    assert_problem(api("DELETE", WHIP_SESSION, a.token, path=where), 404)
    assert_problem(api("PATCH", WHIP_SESSION, a.token, path=where), 404)


def test_whip_offer_refusals(api: Api, a: T) -> None:
    m = meeting(api, a)
    where = {"meeting_id": m}
    sdp = {"Content-Type": "application/sdp"}

    r = api(
        "POST",
        WHIP[1],
        a.token,
        path=where,
        content=f"v=0 {CANARY}",
        headers={"Content-Type": "text/plain"},
    )
    assert_problem(r, 415, "unsupported-media-type")
    assert r.headers["accept-post"] == "application/sdp"
    assert_problem(api("POST", WHIP[1], a.token, path=where, content=CANARY, headers=sdp), 400)
    assert_problem(
        api(
            "POST",
            WHIP[1],
            a.token,
            path=where,
            content=f"v=0\r\nm=video 9 RTP/AVP 96\r\ns={CANARY}\r\n",
            headers=sdp,
        ),
        400,
    )
    assert_problem(
        api("POST", WHIP[1], a.token, path=where, content=b"v=0\r\nm=audio \xff\xfe", headers=sdp),
        400,
    )

    # aiortc's own parse errors quote what they choke on: the answer must not
    offer = sdp_offer()
    broken = [
        re.sub(r"^m=audio \d+", f"m=audio {CANARY}", offer, flags=re.M),
        re.sub(r"^a=rtpmap:\d+", f"a=rtpmap:{CANARY}", offer, count=1, flags=re.M),
        re.sub(r"^a=setup:\w+", f"a=setup:{CANARY}", offer, flags=re.M),
        re.sub(r"^a=fingerprint:.*$", f"a=fingerprint:{CANARY}", offer, flags=re.M),
        re.sub(r"^a=ice-ufrag:.*$", "", offer, flags=re.M),
        "v=0\r\nm=audio\r\n",
    ]
    for body in broken:
        assert body != offer
        problem = assert_problem(
            api("POST", WHIP[1], a.token, path=where, content=body, headers=sdp),
            400,
            "invalid-input",
        )
        assert problem["detail"].startswith("the SDP offer was refused: ")

    for participant in ("", "x" * 65):
        assert_problem(
            api(
                "POST",
                WHIP[1],
                a.token,
                path=where,
                content=offer,
                headers=sdp,
                params={"participant": participant},
            ),
            422,
        )
    assert_problem(
        api(
            "POST",
            WHIP[1],
            a.token,
            path={"meeting_id": UNKNOWN_MEETING},
            content=offer,
            headers=sdp,
        ),
        404,
    )

    big = (offer + f"a=x-{CANARY}:" + "a" * MAX_OFFER_BYTES + "\r\n").encode()
    assert_problem(api("POST", WHIP[1], a.token, path=where, content=big, headers=sdp), 413)
    streamed = api(
        "POST", WHIP[1], a.token, path=where, content=iter([big[:1000], big[1000:]]), headers=sdp
    )  # chunked: no Content-Length to go by
    assert_problem(streamed, 413, "offer-too-large")


@covers("GET /v1/keys", "POST /v1/keys/rotate", "POST /v1/keys/retire")
def test_keys_rotate_and_retire(api: Api, app_rt: Runtime, a: T) -> None:
    m1, m2 = meeting(api, a), meeting(api, a)
    store_transcript(app_rt, m1, ["still readable"])
    keys = api("GET", "/v1/keys", a.token).json()
    assert keys == {
        "provider": "local",
        "primary_version": 1,
        "min_version": 1,
        "versions": [1],
        "revoked": False,
        "wrapped_by_version": {"1": 4},
    }

    r = api("POST", "/v1/keys/rotate", a.token).json()
    assert r == {"primary_version": 2, "rewrapped": 4}  # two data keys per meeting
    assert api("GET", "/v1/keys", a.token).json()["wrapped_by_version"] == {"2": 4}

    for bad in (
        {"below": 0},
        {"below": True},
        {"below": "2"},
        {"below": 1.5},
        {},
        {"below": 2, "force": CANARY},
    ):
        assert_problem(api("POST", "/v1/keys/retire", a.token, json=bad), 422, "validation")
    assert_problem(api("POST", "/v1/keys/retire", a.token, json={"below": 3}), 400)

    r = api("POST", "/v1/keys/retire", a.token, json={"below": 2.0}).json()
    assert r == {"min_version": 2, "retired_below": 2, "rewrapped": 0}
    keys = api("GET", "/v1/keys", a.token).json()
    assert keys["min_version"] == 2 and keys["primary_version"] == 2
    text = api("GET", "/v1/meetings/{meeting_id}/transcript", a.token, path={"meeting_id": m1}).text
    assert "still readable" in text
    assert m2 in [x["id"] for x in api("GET", "/v1/meetings", a.token).json()]


@covers("POST /v1/keys/revoke")
def test_revoke_is_a_kill_switch(api: Api, app_rt: Runtime, a: T, b: T) -> None:
    m = meeting(api, a)
    store_transcript(app_rt, m, ["before the revoke"])
    for confirm in ("revoke", f"revoke {b.id}", f"revoke {CANARY}", ""):
        assert_problem(
            api("POST", "/v1/keys/revoke", a.token, json={"confirm": confirm}), 400, "invalid-input"
        )
    assert_problem(api("POST", "/v1/keys/revoke", a.token, json={}), 422)
    assert api("GET", "/v1/keys", a.token).json()["revoked"] is False

    r = api("POST", "/v1/keys/revoke", a.token, json={"confirm": f"revoke {a.id}"})
    assert r.json()["revoked"] is True
    assert api("GET", "/v1/tenant", a.token).json()["revoked"] is True
    assert api("GET", "/v1/keys", b.token).json()["revoked"] is False  # only A's

    where = {"meeting_id": m}
    for r in (
        api("POST", "/v1/meetings", a.token, json={}),
        api("POST", "/v1/keys/rotate", a.token),
        api("POST", "/v1/keys/retire", a.token, json={"below": 1}),
        api("GET", "/v1/tenant/export", a.token),
        api("GET", "/v1/meetings/{meeting_id}/transcript", a.token, path=where),
        api(
            "POST",
            WHIP[1],
            a.token,
            path=where,
            content=sdp_offer(),
            headers={"Content-Type": "application/sdp"},
        ),
    ):
        assert_problem(r, 403, "key-revoked")
    assert refused(api, m, a.token).code == 4403
    audit = api("GET", "/v1/audit", a.token, params={"limit": 1000}).json()["entries"]
    assert any(e["action"] == "revoke" for e in audit)
    assert any(e["action"] == "unwrap" and e["outcome"] == "KeyRevoked" for e in audit)


@covers("GET /v1/audit", "GET /v1/audit/verify")
def test_audit_show_and_verify(api: Api, a: T) -> None:
    for _ in range(3):
        meeting(api, a)
    everything = api("GET", "/v1/audit", a.token).json()
    assert everything["offset"] == 0 and everything["limit"] == 100
    entries = everything["entries"]
    assert [e["seq"] for e in entries] == list(range(len(entries))) and len(entries) >= 7
    page = api("GET", "/v1/audit", a.token, params={"offset": 2, "limit": 3}).json()
    assert page["entries"] == entries[2:5]
    assert api("GET", "/v1/audit", a.token, params={"offset": 10**6}).json()["entries"] == []
    verdict = api("GET", "/v1/audit/verify", a.token).json()
    assert verdict == {
        "ok": True,
        "entries": len(entries),
        "problems": [],
        "authenticated": len(entries),
        "since": None,
        "notes": [],
    }
    for params in (
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"limit": CANARY},
        {"offset": "1.5"},
    ):
        assert_problem(api("GET", "/v1/audit", a.token, params=params), 422, "validation")


def store_own_transcript(rt: Runtime, meeting_id: str, participant: str, text: str) -> None:
    """A transcript segment sealed with the participant's own key, as capture and the
    worker seal one (no manifest record: that needs the capture path)."""
    m = rt.store.meetings.get(meeting_id)
    sealing_key(rt, m, participant)
    key = services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE, participant)
    segment = TranscriptSegment(participant, 0, 0, 1500, text, language="en")
    rt.store.segments.complete(seal_transcript(key, m.tenant_id, m.id, segment), 0)


@covers(
    "GET /v1/audit/head",
    "POST /v1/audit/verify",
    "GET /v1/meetings/{meeting_id}/verify",
    "PUT /v1/meetings/{meeting_id}/participants/{participant}/subject",
    "POST /v1/participants/erase",
    "POST /v1/audit/receipts/verify",
)
def test_heads_meeting_verification_and_erasure(api: Api, app_rt: Runtime, a: T) -> None:
    m = meeting(api, a, transcription=True)
    path = {"meeting_id": m, "participant": "alice"}
    store_own_transcript(app_rt, m, "alice", "alice said this")
    store_own_transcript(app_rt, m, "bob", "bob said that")
    tagged = api(
        "PUT",
        "/v1/meetings/{meeting_id}/participants/{participant}/subject",
        a.token,
        path=path,
        json={"subject": "crm-7"},
    )
    assert tagged.status_code == 200 and tagged.json()["id"] == m

    head = api("GET", "/v1/audit/head", a.token).json()
    assert head["tenant"] == a.id and head["count"] >= 6 and head["mac"].startswith("local:v1:")
    assert api("POST", "/v1/audit/verify", a.token, json={}).json()["ok"] is True
    verdict = api("POST", "/v1/audit/verify", a.token, json={"since": head}).json()
    assert verdict["ok"] is True and verdict["since"] == head["count"]
    assert verdict["authenticated"] == verdict["entries"]

    checked = api("GET", "/v1/meetings/{meeting_id}/verify", a.token, path=path).json()
    assert checked["complete"] is True and checked["missing"] == []
    assert [p["participant"] for p in checked["participants"]] == ["alice", "bob"]
    assert checked["notes"] == [
        "2 transcript segments are from before manifests (not recorded in one)"
    ]

    for bad in (
        {"name": "alice", "subject": "crm-7", "confirm": "erase"},
        {"subject": "crm-7"},
        {"name": "alice", "confirm": "yes"},
    ):
        assert_problem(
            api("POST", "/v1/participants/erase", a.token, json=bad),
            400 if "confirm" in bad else 422,
        )
    receipt = api(
        "POST", "/v1/participants/erase", a.token, json={"subject": "crm-7", "confirm": "erase"}
    ).json()
    assert receipt["subject"] == "subject:crm-7" and receipt["mac"].startswith("local:v1:")
    assert [
        (e["meeting"], e["participant"], e["transcript_segments"], e["keys_shredded"])
        for e in receipt["meetings"]
    ] == [(m, "alice", 1, True)]
    text = api("GET", "/v1/meetings/{meeting_id}/transcript", a.token, path=path).text
    assert "bob said that" in text and "alice" not in text
    ok = api("POST", "/v1/audit/receipts/verify", a.token, json=receipt).json()
    assert ok == {"ok": True, "problems": [], "notes": []}
    forged = {**receipt, "subject": "subject:crm-8"}
    assert api("POST", "/v1/audit/receipts/verify", a.token, json=forged).json()["ok"] is False
    assert_problem(api("POST", "/v1/audit/receipts/verify", a.token, json={"tenant": a.id}), 422)
    bad_head = {"since": {**head, "count": 0}}
    assert_problem(api("POST", "/v1/audit/verify", a.token, json=bad_head), 422, "validation")


@covers(
    "PUT /v1/meetings/{meeting_id}/consent-mode",
    "POST /v1/meetings/{meeting_id}/participants/{participant}/link",
)
def test_consent_modes_and_participant_links(
    api: Api, app_rt: Runtime, a: T, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = api(
        "POST", "/v1/meetings", a.token, json={"consent_mode": "opt-in", "transcription": True}
    )
    assert made.status_code == 201 and made.json()["consent_mode"] == "opt-in"
    m = made.json()["id"]
    meeting = app_rt.store.meetings.get(m)
    assert not meeting.transcribes("alice"), "opt-in: nobody until they consent"
    path = {"meeting_id": m, "participant": "alice"}
    r = api(
        "POST",
        "/v1/meetings/{meeting_id}/participants/{participant}/link",
        a.token,
        path=path,
        json={"ttl": 600, "subject": "crm-9"},
    )
    assert r.status_code == 201, r.text
    link = r.json()
    assert link["participant"] == "alice" and link["url"].startswith(
        "http://testserver/consent/sl_"
    )
    page = api.client.get(link["url"])
    assert page.status_code == 200 and "have not consented" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["referrer-policy"] == "no-referrer"
    chosen = api.client.post(link["url"], data={"choice": "optin"})
    assert chosen.status_code == 200 and "Saved: you will be transcribed" in chosen.text
    meeting = app_rt.store.meetings.get(m)
    assert meeting.opted_in == {"alice"} and meeting.transcribes("alice")
    assert not meeting.transcribes("bob")
    assert app_rt.store.meetings.subjects(m) == {"alice": "crm-9"}
    entries = services.audit_show(app_rt, a.id, limit=1000)
    consent = [e for e in entries if e.action == "consent"]
    assert consent[-1].outcome == "alice:opted-in" and consent[-1].actor.startswith(
        "participant-link@"
    )
    # notice mode: everyone transcribed unless they opt out; alice's link opts her out only
    mode = api(
        "PUT", "/v1/meetings/{meeting_id}/consent-mode", a.token, path=path, json={"mode": "notice"}
    )
    assert mode.status_code == 200 and mode.json()["consent_mode"] == "notice"
    assert api.client.post(link["url"], data={"choice": "optout"}).status_code == 200
    meeting = app_rt.store.meetings.get(m)
    assert meeting.opted_out == {"alice"} and meeting.transcribes("bob")

    # alice's token altered to name bob, forged, expired, garbage: refused, nothing changes
    token = link["url"].rsplit("/", 1)[1]
    body, _, tag = token[3:].partition(".")
    doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    doc["p"] = "bob"
    as_bob = (
        "sl_"
        + base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode())
        .rstrip(b"=")
        .decode()
        + "."
        + tag
    )
    for bad in (as_bob, token[:-2] + "AA", "sl_x.y", "garbage"):
        r = api.client.post(f"/consent/{bad}", data={"choice": "optout"})
        assert r.status_code == 403 and "not valid" in r.text, bad
        assert api.client.get(f"/consent/{bad}").status_code == 403
    assert app_rt.store.meetings.get(m).opted_out == {"alice"}
    assert api.client.post(link["url"], data={"choice": "maybe"}).status_code == 400
    later = time.time() + 601
    monkeypatch.setattr("pipeline.services.consent.time.time", lambda: later)
    assert api.client.get(link["url"]).status_code == 403  # expired
    monkeypatch.undo()
    # the link's token is no API token: it reads nothing
    r = api("GET", "/v1/meetings/{meeting_id}/transcript", token, path=path)
    assert_problem(r, 401, "unauthenticated")
    for bad_body in ({"ttl": 10}, {"ttl": 10**7}, {"subject": "no spaces allowed"}):
        r = api(
            "POST",
            "/v1/meetings/{meeting_id}/participants/{participant}/link",
            a.token,
            path=path,
            json=bad_body,
        )
        assert_problem(r, 422, "validation")
    r = api(
        "PUT", "/v1/meetings/{meeting_id}/consent-mode", a.token, path=path, json={"mode": "maybe"}
    )
    assert_problem(r, 422, "validation")


@covers("GET /v1/tenant/announcements", "PUT /v1/tenant/announcements/{kind}")
def test_the_tenant_sets_its_bots_spoken_announcements(
    api: Api, app_rt: Runtime, a: T, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = {"kind": "join"}
    got = api("GET", "/v1/tenant/announcements", a.token)
    assert got.json() == {"join": "default", "on": "default", "off": "default"}
    said = api(
        "PUT", "/v1/tenant/announcements/{kind}", a.token, path=path, json={"text": "Welcome."}
    )
    assert said.status_code == 200, said.text
    assert said.json()["join"] == "own"
    own = app_rt.store.tenants.announcement(a.id, "join")
    assert own is not None and len(own) > 16000  # espeak-ng spoke it: over half a second
    ogg = (Path(__file__).resolve().parents[2] / "pipeline/audio/announcements/on.ogg").read_bytes()
    r = api(
        "PUT",
        "/v1/tenant/announcements/{kind}",
        a.token,
        path={"kind": "on"},
        content=ogg,
        headers={"Content-Type": "audio/ogg"},
    )
    assert r.status_code == 200 and r.json()["on"] == "own", r.text
    r = api("PUT", "/v1/tenant/announcements/{kind}", a.token, path=path, json={"text": None})
    assert r.json()["join"] == "default"
    # bad input: clear answers, nothing changes
    bad: list[tuple[dict[str, str], dict[str, Any], int]] = [
        ({"kind": "leave"}, {"json": {"text": "x"}}, 422),
        (path, {"content": b"not audio", "headers": {"Content-Type": "audio/ogg"}}, 400),
        (path, {"content": b"{", "headers": {"Content-Type": "application/json"}}, 422),
        (path, {"json": {"text": ""}}, 422),
        (path, {"content": b"x", "headers": {"Content-Type": "text/plain"}}, 400),
    ]
    for where, kwargs, status in bad:
        r = api("PUT", "/v1/tenant/announcements/{kind}", a.token, path=where, **kwargs)
        assert r.status_code == status, (where, kwargs, r.text)
    monkeypatch.setattr("pipeline.audio.announce.shutil.which", lambda name: None)
    r = api("PUT", "/v1/tenant/announcements/{kind}", a.token, path=path, json={"text": "Hi"})
    assert_problem(r, 400, "invalid-input")
    assert "espeak-ng is not installed" in r.json()["detail"]
    assert api("GET", "/v1/tenant/announcements", a.token).json() == {
        "join": "default",
        "on": "own",
        "off": "default",
    }


def test_the_meeting_says_whether_its_room_can_carry_notices(api: Api, a: T) -> None:
    def state(meeting_id: str) -> tuple[str, str]:
        got = api("GET", "/v1/meetings/{meeting_id}", a.token, path={"meeting_id": meeting_id})
        return got.json()["notices"], got.json()["notices_why"]

    m = meeting(api, a, transcription=True)
    assert state(m) == ("none", "no room is connected")
    whip_session(api, a, m)
    assert state(m) == ("none", "WHIP ingest has no way to carry a notice to the participants")
    chat = meeting(api, a)
    path = {"meeting_id": chat}
    r = api(
        "POST",
        "/v1/meetings/{meeting_id}/bot",
        a.token,
        path=path,
        json={"url": "janus://127.0.0.1:8088/1234?textroom=1234"},
    )
    assert r.status_code == 202, r.text
    assert state(chat) == ("chat", "the bot posts notices to the room's text chat")
    plain = meeting(api, a)
    r = api(
        "POST",
        "/v1/meetings/{meeting_id}/bot",
        a.token,
        path={"meeting_id": plain},
        json={"url": "janus://127.0.0.1:8088/1234"},
    )
    assert state(plain)[0] == "none" and "no text chat" in state(plain)[1]


@covers("GET /healthz")
def test_healthz(api: Api) -> None:
    r = api("GET", "/healthz")
    assert r.status_code == 200
    assert r.json() == {
        "ok": True,
        "redis": "ok",
        "workers": r.json()["workers"],
        "key_providers": "ok",
    }


@covers("GET /metrics")
def test_metrics_name_no_one(api: Api, app_rt: Runtime, a: T) -> None:
    m = meeting(api, a, transcription=True)
    api(
        "PUT",
        "/v1/meetings/{meeting_id}/participants/{participant}/consent",
        a.token,
        path={"meeting_id": m, "participant": "Zed Speaker"},
        json={"transcribe": False},
    )
    session = whip_session(api, a, m, participant="Quinn Publisher")
    store_transcript(app_rt, m, ["metrics never say this"])
    r = api("GET", "/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    assert re.search(r'^sealscribe_queue_depth\{kind="segments"\} \d', r.text, re.M)
    assert re.search(r'^sealscribe_queue_depth\{kind="messages"\} \d', r.text, re.M)
    for name in (
        m,
        a.id,
        "Zed Speaker",
        "Quinn Publisher",
        "Quinn",
        session,
        "metrics never say this",
    ):
        assert name not in r.text, name
    api("DELETE", WHIP_SESSION, a.token, path=path_for(m, session))


# -- tokens ---------------------------------------------------------------------------------


@covers(f"POST {TOKENS}", f"GET {TOKENS}", f"DELETE {TOKEN}", f"POST {TOKEN}/rotate")
def test_named_tokens_with_scopes(api: Api, app_rt: Runtime, a: T) -> None:
    first = api("GET", TOKENS, a.token).json()
    assert [(t["name"], t["scopes"], t["expires"]) for t in first] == [("initial", ["admin"], None)]
    r = api("POST", TOKENS, a.token, json={"name": "wall display", "scopes": ["read"]})
    assert r.status_code == 201
    reader = r.json()
    assert reader["token"].startswith("sst_") and reader["scopes"] == ["read"]
    assert reader["expires"] is None and reader["expired"] is False
    m = meeting(api, a)
    # read: meetings and transcripts; not keys, tokens or creating meetings
    r = api("GET", "/v1/meetings/{meeting_id}", reader["token"], path={"meeting_id": m})
    assert r.status_code == 200
    assert_problem(api("GET", "/v1/keys", reader["token"]), 403, "insufficient-scope")
    assert_problem(api("GET", TOKENS, reader["token"]), 403, "insufficient-scope")
    denied = api("POST", "/v1/meetings", reader["token"], json={})
    assert denied.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'
    assert "read" in assert_problem(denied, 403, "insufficient-scope")["detail"]
    assert reader["token"] not in denied.text

    expiring = api(
        "POST", TOKENS, a.token, json={"name": "ci", "scopes": ["meetings"], "expires_in": 3600}
    ).json()
    assert 3590 < expiring["expires"] - expiring["created"] <= 3600
    assert api("POST", "/v1/meetings", expiring["token"], json={}).status_code == 201

    rotated = api("POST", TOKEN + "/rotate", a.token, path={"token_id": reader["id"]}).json()
    assert rotated["id"] == reader["id"] and rotated["token"] != reader["token"]
    assert_problem(api("GET", "/v1/tenant", reader["token"]), 401)  # the old secret is dead
    assert api("GET", "/v1/tenant", rotated["token"]).json()["id"] == a.id

    r = api("DELETE", TOKEN, a.token, path={"token_id": rotated["id"]})
    assert r.status_code == 204
    assert_problem(api("GET", "/v1/tenant", rotated["token"]), 401)
    assert_problem(api("DELETE", TOKEN, a.token, path={"token_id": rotated["id"]}), 404)
    # the last admin token stays
    last = first[0]["id"]
    assert_problem(api("DELETE", TOKEN, a.token, path={"token_id": last}), 409, "conflict")
    listed = api("GET", TOKENS, a.token).json()
    assert [t["name"] for t in listed] == ["initial", "ci"]
    assert not any(a.token in str(t) or "token" in t for t in listed)  # never the secret
    bad: dict[str, Any]
    for bad in ({"scopes": []}, {"scopes": ["root"]}, {"scopes": ["read"], "expires_in": 5}):
        assert_problem(api("POST", TOKENS, a.token, json=bad), 422)
    audit = api("GET", "/v1/audit", a.token, params={"limit": 1000}).json()["entries"]
    assert [e["action"] for e in audit if e["action"].startswith("token-")] == [
        "token-create",
        "token-create",
        "token-rotate",
        "token-revoke",
    ]


# -- captions over WebSocket ----------------------------------------------------------------


@covers(f"WS {CAPTIONS}", f"POST {TICKET}")
def test_captions_resume_without_gaps_or_repeats(api: Api, app_rt: Runtime, a: T) -> None:
    m = meeting(api, a, transcription=True)
    store_transcript(app_rt, m, ["one", "two", "three"])
    with api.ws(m, a.token) as ws:
        first = [receive(ws) for _ in range(3)]
    assert [c["text"] for c in first] == ["one", "two", "three"]
    assert first[0] == {
        "kind": "final",
        "cursor": first[0]["cursor"],
        "utterance": "alice.0",
        "participant": "alice",
        "start_ms": 0,
        "end_ms": 1500,
        "text": "one",
        "language": "en",
    }
    cursors = [c["cursor"] for c in first]
    assert len(set(cursors)) == 3

    # resume from the middle, and from the end while more arrive offline and live
    with api.ws(m, a.token, cursor=cursors[0]) as ws:
        assert [receive(ws)["text"] for _ in range(2)] == ["two", "three"]
    store_transcript(app_rt, m, ["four", "five"], first_seq=3)
    with api.ws(m, a.token, cursor=cursors[-1]) as ws:
        resumed = [receive(ws) for _ in range(2)]
        store_transcript(app_rt, m, ["six"], first_seq=5)
        live = receive(ws)  # the next one is new: nothing was repeated before it
    assert [c["text"] for c in resumed] + [live["text"]] == ["four", "five", "six"]
    every = cursors + [c["cursor"] for c in resumed] + [live["cursor"]]
    assert len(set(every)) == 6

    # browsers cannot set headers on a WebSocket: they ask for a ticket, good for one socket
    ticket = api("POST", TICKET, a.token, path={"meeting_id": m}).json()
    assert ticket["ticket"].startswith("ssc_") and ticket["expires_in"] == 60
    assert ticket["url"] == f"/v1/meetings/{m}/captions?ticket={ticket['ticket']}"
    with api.ws(m, query={"ticket": ticket["ticket"]}, cursor=live["cursor"]) as ws:
        store_transcript(app_rt, m, ["seven"], first_seq=6)
        assert receive(ws)["text"] == "seven"

    audit = api("GET", "/v1/audit", a.token, params={"limit": 1000}).json()["entries"]
    delivered = [
        e
        for e in audit
        if e["action"] == "unwrap" and e["purpose"] == "deliver" and e["meeting"] == m
    ]
    assert delivered and all(e["outcome"] == "ok" for e in delivered)


def test_captions_refusals(api: Api, app_rt: Runtime, a: T, b: T) -> None:
    m = meeting(api, a, transcription=True)
    store_transcript(app_rt, m, ["not for you"])
    assert refused(api, m).code == 4401
    assert refused(api, m, headers={"Authorization": "Basic abc"}).code == 4401
    assert refused(api, m, "not-a-token").code == 4401
    assert refused(api, m, UNKNOWN_TOKEN).code == 4401
    assert refused(api, m, query={"access_token": UNKNOWN_TOKEN}).code == 4401
    # a long-lived token is never taken from the URL, even a valid one
    in_url = refused(api, m, query={"access_token": a.token})
    assert in_url.code == 4401 and "ticket" in (in_url.reason or "")
    # a ticket is good for one socket, on its own meeting only
    other = meeting(api, a)
    ticket = api("POST", TICKET, a.token, path={"meeting_id": other}).json()["ticket"]
    assert refused(api, m, query={"ticket": ticket}).code == 4401  # and now it is used up
    ticket = api("POST", TICKET, a.token, path={"meeting_id": m}).json()["ticket"]
    with api.ws(m, query={"ticket": ticket}) as ws:
        assert receive(ws)["text"] == "not for you"
    assert refused(api, m, query={"ticket": ticket}).code == 4401
    assert refused(api, m, query={"ticket": "ssc_" + CANARY}).code == 4401
    assert refused(api, UNKNOWN_MEETING, a.token).code == 4404
    assert refused(api, m, b.token).code == 4404  # another tenant's meeting does not exist
    for cursor in ("abc", "-1", "1-2-3", CANARY):
        assert refused(api, m, a.token, cursor=cursor).code == 4400


# -- tenant isolation -----------------------------------------------------------------------


@pytest.mark.parametrize("route", MEETING_SCOPED, ids=ids(MEETING_SCOPED))
def test_another_tenants_meeting_is_not_found(
    route: Route, api: Api, app_rt: Runtime, a: T, b: T
) -> None:
    m = meeting(api, a, transcription=True)
    store_transcript(app_rt, m, ["private"])
    api(
        "POST",
        "/v1/meetings/{meeting_id}/bot",
        a.token,
        path={"meeting_id": m},
        json={"url": "janus://127.0.0.1:8088/1234"},
    )
    session = whip_session(api, a, m) if "{session_id}" in route[1] else UNKNOWN_SESSION
    before = app_rt.store.meetings.get(m)

    method, template = route
    r = api(method, template, b.token, path=path_for(m, session), **valid_request(route, b.id))
    assert_problem(r, 404, "not-found")
    assert a.id not in r.text
    # and with A's own token an unknown meeting is just as unknown
    assert_problem(
        api(method, template, a.token, path=path_for(), **valid_request(route, a.id)),
        404,
        "not-found",
    )

    assert app_rt.store.meetings.get(m) == before  # nothing B sent changed A's meeting
    assert app_rt.store.segments.transcript_count(m) == 1
    bot = api("GET", "/v1/meetings/{meeting_id}/bot", a.token, path={"meeting_id": m}).json()
    assert bot["state"] == "requested" and bot["target"] == "janus://127.0.0.1:8088/1234"
    if session != UNKNOWN_SESSION:
        assert_problem(api("PATCH", WHIP_SESSION, a.token, path=path_for(m, session)), 405)
        api("DELETE", WHIP_SESSION, a.token, path=path_for(m, session))


VIEWS_CHECKED_FOR_ISOLATION: list[Route] = [
    ("GET", "/v1/tenant"),
    ("PUT", "/v1/tenant/retention"),
    ("GET", "/v1/tenant/export"),
    ("GET", "/v1/meetings"),
    ("POST", "/v1/meetings"),
    ("GET", "/v1/keys"),
    ("POST", "/v1/keys/rotate"),
    ("POST", "/v1/keys/retire"),
    ("POST", "/v1/keys/revoke"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit/verify"),
    ("GET", "/v1/audit/head"),
    ("GET", "/v1/tenant/announcements"),
    ("PUT", "/v1/tenant/announcements/{kind}"),
    ("POST", "/v1/audit/verify"),
    ("POST", "/v1/participants/erase"),
    ("POST", "/v1/audit/receipts/verify"),
    ("GET", TOKENS),
    ("POST", TOKENS),
    ("DELETE", TOKEN),
    ("POST", TOKEN + "/rotate"),
    ("GET", WEBHOOKS),
    ("POST", WEBHOOKS),
    ("GET", WEBHOOK),
    ("DELETE", WEBHOOK),
    ("POST", WEBHOOK + "/rotate-secret"),
    ("GET", WEBHOOK + "/log"),
    ("POST", WEBHOOK + "/replay"),
]


@covers(
    f"POST {WEBHOOKS}",
    f"GET {WEBHOOKS}",
    f"GET {WEBHOOK}",
    f"DELETE {WEBHOOK}",
    f"POST {WEBHOOK}/rotate-secret",
    f"GET {WEBHOOK}/log",
    f"POST {WEBHOOK}/replay",
)
def test_webhook_endpoints(api: Api, a: T, b: T) -> None:
    """Add (the secret shown once), list, read, rotate, log, replay, remove; a forbidden
    URL and unknown events are refused; another tenant finds none of it."""
    url = "http://127.0.0.1:9/hook"  # loopback is allowed here; nothing is delivered
    made = api("POST", WEBHOOKS, a.token, json={"url": url, "events": ["key.rotated"]})
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"].startswith("whsec_") and hook["enabled"] and hook["waiting"] == 0
    path = {"endpoint_id": hook["id"]}
    listed = api("GET", WEBHOOKS, a.token).json()
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert api("GET", WEBHOOK, a.token, path=path).json()["events"] == ["key.rotated"]
    rotated = api("POST", WEBHOOK + "/rotate-secret", a.token, path=path).json()
    assert rotated["secret"] != hook["secret"] and rotated["secret"].startswith("whsec_")
    api("POST", "/v1/keys/rotate", a.token)  # an event for it: waiting, then tried
    assert api("GET", WEBHOOK, a.token, path=path).json()["waiting"] == 1
    assert api("GET", WEBHOOK + "/log", a.token, path=path).json() == []
    replayed = api("POST", WEBHOOK + "/replay", a.token, path=path, json={})
    assert replayed.json() == {"streams": 1}
    r = api("POST", WEBHOOK + "/replay", a.token, path=path, json={"message_id": "msg_" + "0" * 24})
    assert_problem(r, 404, "not-found")

    for bad, why in (
        ({"url": "http://169.254.169.254/latest"}, "egress policy"),
        ({"url": "http://10.0.0.1/"}, "egress policy"),
        ({"url": "ftp://127.0.0.1/"}, "https://"),
        ({"url": "http://user:pw@127.0.0.1/"}, "user name"),
    ):
        body = assert_problem(api("POST", WEBHOOKS, a.token, json=bad), 400)
        assert why in body["detail"], body
    bad_event = {"url": url, "events": ["transcript.text"]}
    assert_problem(api("POST", WEBHOOKS, a.token, json=bad_event), 422, "validation")

    # B sees none of it and can change none of it
    assert api("GET", WEBHOOKS, b.token).json() == []
    for method, template in (
        ("GET", WEBHOOK),
        ("DELETE", WEBHOOK),
        ("POST", WEBHOOK + "/rotate-secret"),
        ("GET", WEBHOOK + "/log"),
    ):
        assert_problem(api(method, template, b.token, path=path), 404, "not-found")
    assert_problem(api("POST", WEBHOOK + "/replay", b.token, path=path, json={}), 404)

    r = api("DELETE", WEBHOOK, a.token, path=path)
    assert r.status_code == 204
    assert api("GET", WEBHOOKS, a.token).json() == []


def test_another_tenants_views_hold_nothing_of_ours(api: Api, app_rt: Runtime, a: T, b: T) -> None:
    ours = [meeting(api, a, transcription=True) for _ in range(2)]
    store_transcript(app_rt, ours[0], ["ours alone"])
    api("GET", "/v1/meetings/{meeting_id}/transcript", a.token, path={"meeting_id": ours[0]})
    theirs = meeting(api, b)
    secrets = [a.id, *ours, "ours alone"]

    def clean(r: Response) -> None:
        for s in secrets:
            assert s.encode() not in r.content, (s, r.text[:300])

    views = [
        api("GET", "/v1/tenant", b.token),
        api("GET", "/v1/meetings", b.token),
        api("GET", "/v1/keys", b.token),
        api("GET", "/v1/audit", b.token, params={"limit": 1000}),
        api("GET", "/v1/audit/verify", b.token),
        api("GET", "/v1/audit/head", b.token),
        api("POST", "/v1/audit/verify", b.token, json={}),
    ]
    for r in views:
        clean(r)
    assert [x["id"] for x in views[1].json()] == [theirs]
    assert views[2].json()["wrapped_by_version"] == {"1": 2}
    assert {e["meeting"] for e in views[3].json()["entries"]} <= {None, theirs}
    export = api("GET", "/v1/tenant/export", b.token)
    with zipfile.ZipFile(io.BytesIO(export.content)) as zf:
        for name in zf.namelist():
            assert not any(s in name for s in secrets)
            assert not any(s.encode() in zf.read(name) for s in secrets), name

    # B's erasure of "alice" finds nobody of A's; A's receipt is not B's to check
    erased = api(
        "POST", "/v1/participants/erase", b.token, json={"name": "alice", "confirm": "erase"}
    )
    clean(erased)
    assert_problem(erased, 404, "not-found")
    a_head = api("GET", "/v1/audit/head", a.token).json()
    r = api("POST", "/v1/audit/verify", b.token, json={"since": a_head})
    assert r.json()["ok"] is False and "belongs to tenant" in r.json()["problems"][0]
    foreign = valid_request(("POST", "/v1/audit/receipts/verify"), a.id)["json"]
    assert_problem(api("POST", "/v1/audit/receipts/verify", b.token, json=foreign), 400)

    # B cannot see, revoke or rotate A's tokens
    a_tokens = api("GET", TOKENS, a.token).json()
    clean(api("POST", TOKENS, b.token, json={"scopes": ["read"]}))
    b_tokens = api("GET", TOKENS, b.token)
    clean(b_tokens)
    assert not {t["id"] for t in a_tokens} & {t["id"] for t in b_tokens.json()}
    for method, template in (("DELETE", TOKEN), ("POST", TOKEN + "/rotate")):
        r = api(method, template, b.token, path={"token_id": a_tokens[0]["id"]})
        assert_problem(r, 404, "not-found")
    assert api("GET", TOKENS, a.token).json() == a_tokens

    # what B does to its own account leaves A's alone
    clean(api("PUT", "/v1/tenant/retention", b.token, json={"transcript_ttl": 60}))
    clean(api("POST", "/v1/meetings", b.token, json={}))
    clean(api("POST", "/v1/keys/rotate", b.token))
    clean(api("POST", "/v1/keys/retire", b.token, json={"below": 2}))
    clean(api("POST", "/v1/keys/revoke", b.token, json={"confirm": f"revoke {b.id}"}))
    assert_problem(api("POST", "/v1/keys/revoke", b.token, json={"confirm": f"revoke {a.id}"}), 400)
    me = api("GET", "/v1/tenant", a.token).json()
    assert me["revoked"] is False
    assert me["retention"]["transcript_ttl"] == app_rt.settings.transcript_ttl
    assert api("GET", "/v1/keys", a.token).json()["primary_version"] == 1
    assert sorted(x["id"] for x in api("GET", "/v1/meetings", a.token).json()) == sorted(ours)
    assert (
        "ours alone"
        in api(
            "GET", "/v1/meetings/{meeting_id}/transcript", a.token, path={"meeting_id": ours[0]}
        ).text
    )


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize("route", SECURED, ids=ids(SECURED))
def test_no_valid_token_no_access(route: Route, api: Api, a: T) -> None:
    m = meeting(api, a)
    method, template = route
    request = valid_request(route, a.id)
    wrong = [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        f"Bearer {CANARY}",
        f"Bearer {UNKNOWN_TOKEN}",
        f"Token {a.token}",
        f"Bearer {a.token}x",
    ]
    for header in wrong:
        headers = {**request.get("headers", {})}
        if header is not None:
            headers["Authorization"] = header
        sent = {k: v for k, v in request.items() if k != "headers"}
        r = api(method, template, path=path_for(m), headers=headers, **sent)
        detail = assert_problem(r, 401, "unauthenticated")["detail"]
        assert a.token not in detail
    assert (
        api("GET", "/v1/meetings/{meeting_id}", a.token, path={"meeting_id": m}).json()[
            "transcription"
        ]
        is False
    )  # nothing was done


# -- bodies that are wrong ------------------------------------------------------------------


#: fields where any text is well formed: an unknown name is not found, a new subject id is
#: taken (neither is echoed)
FREE_TEXT: dict[tuple[Route, str], set[int]] = {
    (("POST", "/v1/participants/erase"), "name"): {404},
    (("PUT", "/v1/meetings/{meeting_id}/participants/{participant}/subject"), "subject"): {200},
}


@pytest.mark.parametrize("route", JSON_BODY, ids=ids(JSON_BODY))
def test_bad_bodies_are_refused_without_echo(route: Route, api: Api, a: T) -> None:
    m = meeting(api, a)
    method, template = route
    valid = valid_request(route, a.id)["json"]
    hdr = {"Content-Type": "application/json"}
    cases: list[tuple[dict[str, Any], set[int]]] = [
        ({"json": {**valid, CANARY: CANARY}}, {422}),
        ({"json": {**valid, "note": CANARY}}, {422}),
        ({"json": [CANARY]}, {422}),
        ({"json": CANARY}, {422}),
        ({"content": '{"' + CANARY + '": ', "headers": hdr}, {422}),
        ({"content": b"\xff\xfe" + CANARY.encode(), "headers": hdr}, {400, 422}),
        ({"content": json.dumps(valid), "headers": {"Content-Type": "text/plain"}}, {422}),
    ]
    cases += [
        (
            {"json": {**valid, field: CANARY}},
            FREE_TEXT.get((route, field), {400, 422}),
        )
        for field in valid
    ]
    cases += [({"json": {**valid, field: [CANARY]}}, {422}) for field in valid]
    for kwargs, statuses in cases:
        r = api(method, template, a.token, path=path_for(m), **kwargs)
        assert r.status_code in statuses, (kwargs, r.text)
        assert CANARY not in r.text
        if r.status_code < 300:
            continue
        problem = assert_problem(r, r.status_code)
        if r.status_code == 422:
            assert problem["errors"] and all({"loc", "msg"} == set(e) for e in problem["errors"])
    unknown = api(method, template, a.token, path=path_for(m), json={**valid, "extra": 1})
    assert "a field this operation does not take" in assert_problem(unknown, 422)["detail"]


@pytest.mark.parametrize("route", JSON_BODY, ids=ids(JSON_BODY))
def test_json_bodies_over_64_kib_are_refused(route: Route, api: Api, a: T) -> None:
    assert MAX_JSON_BYTES == MAX_BODY_BYTES == 64 * 1024
    m = meeting(api, a)
    method, template = route
    big = json.dumps({"pad": CANARY + "x" * MAX_JSON_BYTES}).encode()
    hdr = {"Content-Type": "application/json"}
    declared = api(method, template, a.token, path=path_for(m), content=big, headers=hdr)
    assert_problem(declared, 413, "body-too-large")
    chunks = iter([big[:1024], big[1024:]])  # chunked: no Content-Length to go by
    streamed = api(method, template, a.token, path=path_for(m), content=chunks, headers=hdr)
    assert_problem(streamed, 413, "body-too-large")
    assert api("GET", "/v1/meetings", a.token).json()[0]["id"] == m  # nothing was created


# -- Redis down -----------------------------------------------------------------------------


@pytest.fixture
def down_api(tmp_path: Path) -> Iterator[Api]:
    """The API over a Redis that is not there (a closed port on loopback)."""
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0", home=tmp_path / "down", ice_hosts="127.0.0.1"
    )
    with TestClient(create_app(Runtime.from_settings(settings, actor="test"))) as client:
        yield Api(client)
    configure_ice("")


@pytest.mark.parametrize("route", ROUTES, ids=ids(ROUTES))
def test_redis_down_is_503_not_500(route: Route, down_api: Api) -> None:
    method, template = route
    r = down_api(
        method,
        template,
        UNKNOWN_TOKEN,
        path=path_for(),
        **valid_request(route, "t_0000000000000000"),
    )
    if route == ("GET", "/healthz"):
        assert r.status_code == 503
        health = r.json()
        assert health["ok"] is False and health["redis"].startswith("unreachable")
        return
    assert_problem(r, 503, "store-unavailable")


def test_captions_with_redis_down_close_1011(down_api: Api) -> None:
    assert refused(down_api, UNKNOWN_MEETING, UNKNOWN_TOKEN).code == 1011
