"""The scope rule in one place: every /v1 route declares the scopes it needs through
``pipeline.api.auth.require``; ``admin`` holds all; and the small parsers around tokens
(durations, scopes, client addresses) say precisely what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.requests import Request

from pipeline.api.app import create_app
from pipeline.api.auth import client_address
from pipeline.config import Settings
from pipeline.errors import InsufficientScope, InvalidInput
from pipeline.models import ApiToken, Scope, Tenant
from pipeline.services.tokens import Caller, parse_duration, parse_scopes, require_scope
from pipeline.store.attempts import address_key


def _calls(dependant: Any) -> Iterator[Any]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _calls(dep)


def declared(route: APIRoute) -> list[tuple[Scope, ...]]:
    return [call.scopes for call in _calls(route.dependant) if hasattr(call, "scopes")]


def api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """(full path, route) of every HTTP route, also inside included routers."""
    for r in routes:
        if isinstance(r, APIRoute):
            yield prefix + r.path, r
        inner = getattr(r, "original_router", None)  # an included router (FastAPI >= 0.160)
        if inner is not None:
            yield from api_routes(inner.routes, prefix + r.include_context.prefix)


def test_every_v1_route_declares_exactly_one_scope_rule() -> None:
    routes = list(api_routes(create_app().routes))
    v1 = [(p, r) for p, r in routes if p.startswith("/v1/")]
    assert len(v1) > 20
    for path, route in v1:
        rules = declared(route)
        assert len(rules) == 1, f"{route.methods} {path} declares {rules}"
        assert rules[0] and all(isinstance(s, Scope) for s in rules[0])
    # and the rest need no token at all (the console, health, metrics, the document)
    assert not [p for p, r in routes if not p.startswith("/v1/") and declared(r)]


def token(*scopes: Scope) -> ApiToken:
    return ApiToken("tk_0", "t_0", "x", frozenset(scopes), 0.0)


def test_admin_holds_every_scope_and_the_others_only_their_own() -> None:
    assert token(Scope.ADMIN).allows(Scope.READ) and token(Scope.ADMIN).allows(Scope.MEETINGS)
    assert token(Scope.READ).allows(Scope.READ, Scope.MEETINGS)
    assert not token(Scope.READ).allows(Scope.MEETINGS)
    assert not token(Scope.MEETINGS).allows(Scope.ADMIN)
    caller = Caller(Tenant("t_0", "x", 0.0), token(Scope.READ))
    with pytest.raises(InsufficientScope, match=r"\(read\) do not include admin"):
        require_scope(caller, Scope.ADMIN)
    require_scope(caller, Scope.MEETINGS, Scope.READ)
    assert token(Scope.READ).expired(1.0) is False
    assert ApiToken("tk_0", "t_0", "x", frozenset(), 0.0, expires=10.0).expired(10.0)


def test_durations_and_scopes_are_parsed_precisely() -> None:
    assert [parse_duration(d) for d in ("3600", "90m", "12h", "30d", " 5S ")] == [
        3600,
        5400,
        43200,
        2592000,
        5,
    ]
    for bad in ("", "1w", "-5", "1.5h", "h"):
        with pytest.raises(InvalidInput, match="whole number with an optional unit"):
            parse_duration(bad)
    assert parse_scopes(["read", "admin", "read"]) == {Scope.READ, Scope.ADMIN}
    with pytest.raises(InvalidInput, match="unknown scope: the scopes are admin, meetings, read"):
        parse_scopes(["root"])
    with pytest.raises(InvalidInput, match="at least one scope"):
        parse_scopes([])


def _request(peer: str, headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "client": (peer, 1234), "headers": raw})


def test_the_client_address_is_the_peer_unless_the_operator_names_a_header() -> None:
    forged = {"X-Forwarded-For": "192.0.2.1, 198.51.100.7"}
    assert client_address(_request("127.0.0.1", forged), Settings()) == "127.0.0.1"
    behind = Settings(client_address_header="x-forwarded-for")
    # the right-most entry: the one the operator's proxy wrote
    assert client_address(_request("10.0.0.2", forged), behind) == "198.51.100.7"
    assert client_address(_request("10.0.0.2", {}), behind) == "10.0.0.2"
    garbage = {"X-Forwarded-For": "192.0.2.1, ss:tenant:x"}
    assert client_address(_request("10.0.0.2", garbage), behind) == "10.0.0.2"


def test_failures_count_by_address_and_by_ipv6_prefix() -> None:
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert (
        address_key("2001:db8:1:2:3:4:5:6")
        == address_key("2001:db8:1:2::ffff")
        == ("2001:db8:1:2::/64")
    )
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("testclient") == "testclient"
