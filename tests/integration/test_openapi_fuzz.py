"""Schemathesis against the API's own ``/openapi.json``, in process over ASGI, real Redis.

Every operation in the document is fuzzed, with data that fits the schema (positive) and with
data that does not (negative), authenticated as a real tenant that owns a real meeting (with a
stored transcript, a requested bot and a live WHIP session), so generated requests reach real
objects as well as random ones. Each response must not be a 5xx and must match the document:
a documented status code, content type, headers and body schema; negative data must be refused.

Hypothesis runs derandomized with no example database, so every run draws the same requests.

Not generated: parameters the document does not name (``allow-extra-parameters``). The API
ignores unknown query parameters, as FastAPI does, and schemathesis would count a request with
one as "schema-violating data accepted"; unknown body fields (refused with 422) are covered in
test_api.py instead. The captions WebSocket is not in the document, so it is not fuzzed here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline import egress, services
from pipeline.api.app import create_app
from pipeline.capture.ice import configure_ice
from pipeline.egress import EgressPolicy
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.services.bots import join_meeting
from tests.conftest import TEST_REDIS_URL
from tests.integration.test_api import sdp_offer, store_transcript

#: examples per operation and mode: the whole module stays well under a minute on 2 cores
EXAMPLES = 25

# WHIP offers are text: schemathesis sends generated strings as the body, as for text/plain
schemathesis.serializer.alias("application/sdp", "text/plain")

Route = tuple[str, str]
_DOC: dict[str, Any] = create_app().openapi()
ROUTES: list[Route] = sorted(
    (m.upper(), p)
    for p, item in _DOC["paths"].items()
    for m in item
    if m in {"get", "put", "post", "delete", "patch"}
)
WHIP = ("POST", "/v1/meetings/{meeting_id}/whip")
REVOKE = ("POST", "/v1/keys/revoke")
JOIN = ("POST", "/v1/meetings/{meeting_id}/bot")
#: a generated URL would name a random host, and adding it resolves that name: fuzz only
#: the endpoint's events, on a loopback URL this process's egress policy allows
WEBHOOK_ADD = ("POST", "/v1/webhooks")


def _negatable(route: Route) -> bool:
    """Negative data needs something to get wrong: a parameter, a body or the credentials."""
    op = _DOC["paths"][route[1]][route[0].lower()]
    return bool(op.get("parameters") or op.get("requestBody") or op.get("security"))


CASES = [
    (route, mode)
    for route in ROUTES
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _negatable(route)
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass(frozen=True)
class World:
    schema: Any  # schemathesis' OpenApiSchema, loaded from the running app
    tenant_id: str
    token: str
    meeting_id: str
    session_id: str
    offer: str


@pytest.fixture
def world(rt: Runtime) -> Iterator[World]:
    rt.settings = dataclasses.replace(rt.settings, ice_hosts="127.0.0.1")
    egress.configure(EgressPolicy.parse("127.0.0.1"))  # offers carry loopback candidates
    use_broker(TEST_REDIS_URL)  # /healthz pings workers through the test database
    tenant, token = services.create_tenant(rt, "fuzz")
    meeting = services.create_meeting(rt, tenant.id, transcription=True)
    store_transcript(rt, meeting.id, ["fuzzed but sealed"])
    join_meeting(rt, meeting.id, "janus://127.0.0.1:8088/1234", tenant.id)
    app = create_app(rt)
    try:
        config = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
        offer = sdp_offer()
        publish = schema[WHIP[1]][WHIP[0]].Case(
            path_parameters={"meeting_id": meeting.id}, body=offer, media_type="application/sdp"
        )
        answer = publish.call(headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 201, answer.text
        session_id = answer.headers["location"][0].rsplit("/", 1)[1]
        yield World(schema, tenant.id, token, meeting.id, session_id, offer)
    finally:
        asgi.shutdown_lifespans()  # closes the WHIP sessions the fuzzing opened
        egress.configure(None)
        configure_ice("")


def _strategy(route: Route, mode: GenerationMode, w: World) -> st.SearchStrategy[Any]:
    op = w.schema[route[1]][route[0]]
    real = {
        name: value
        for name, value in (("meeting_id", w.meeting_id), ("session_id", w.session_id))
        if "{" + name + "}" in route[1]
    }
    if mode is GenerationMode.POSITIVE and route == WEBHOOK_ADD:
        events = st.lists(st.sampled_from(["*", "key.rotated", "audit.head"]), max_size=3)
        return events.flatmap(
            lambda chosen: op.as_strategy(
                mode, body={"url": "http://127.0.0.1:9/hook", "events": chosen}
            )
        )
    branches = [op.as_strategy(mode)]
    if real:  # the same operation on the objects that exist
        branches.append(op.as_strategy(mode, path_parameters=real))
    if mode is GenerationMode.POSITIVE and route == WHIP:  # a real offer too, not only noise
        branches.append(
            op.as_strategy(mode, path_parameters=real, body=w.offer, media_type="application/sdp")
        )
    if mode is GenerationMode.POSITIVE and route == REVOKE:  # the one confirmation that works
        branches.append(op.as_strategy(mode, body={"confirm": f"revoke {w.tenant_id}"}))
    if mode is GenerationMode.POSITIVE and route == JOIN:  # a join URL that parses
        branches.append(
            op.as_strategy(mode, path_parameters=real, body={"url": "janus://127.0.0.1:8088/4321"})
        )
    return st.one_of(branches)


@pytest.mark.parametrize(
    ("route", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for (m, p), mode in CASES]
)
def test_operation_conforms(route: Route, mode: GenerationMode, world: World) -> None:
    credentials = {"Authorization": f"Bearer {world.token}"}
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
    statuses: set[int] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        case=_strategy(route, mode, world), authenticated=st.sampled_from([True, True, True, False])
    )
    def fuzz(case: Any, authenticated: bool) -> None:
        # mostly as the tenant; otherwise with whatever credentials were generated (if any),
        # and always so when the headers are the negative part: the token would mend them
        negated = case.meta.components.get(ParameterLocation.HEADER) if case.meta else None
        mended = negated is not None and negated.mode is GenerationMode.NEGATIVE
        headers = credentials if authenticated and not mended else None
        response = case.call(headers=headers)
        statuses.add(response.status_code)
        case.validate_response(response, checks=checks, headers=headers)

    fuzz()
    assert statuses and max(statuses) < 500, statuses
