"""Caption sockets against a real ``sealscribe serve`` on loopback (private redis-server):
tickets instead of tokens in URLs, caps per meeting and per tenant, one shared Redis pool,
and a socket that ends within 5 s of its token's revocation or its tenant's erasure.

Faults (``tests/security/test_mutations.py``): ``long-token-in-url``,
``caption-ticket-reusable``, ``caption-sockets-unbounded``, ``caption-socket-outlives-token``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from pipeline.processes import wait_until
from pipeline.store import schema
from tests.harness.stack import T
from tests.security.captions import captions_url, close_code, everything, store_transcript
from tests.security.tenant_stack import TenantStack, tenant_stack

pytestmark = pytest.mark.timeout(300)

PER_MEETING = 3
PER_TENANT = 5


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[TenantStack]:
    with tenant_stack(
        tmp_path,
        SEALSCRIBE_QUOTA_RPS="0",
        SEALSCRIBE_CAPTION_SOCKETS_PER_MEETING=str(PER_MEETING),
        SEALSCRIBE_CAPTION_SOCKETS_PER_TENANT=str(PER_TENANT),
    ) as s:
        yield s


def meeting(stack: TenantStack, t: T) -> str:
    with stack.http(t) as http:
        r = http.post("/v1/meetings", json={"transcription": True})
    assert r.status_code == 201, r.text
    meeting_id: str = r.json()["id"]
    return meeting_id


def ticket(stack: TenantStack, t: T, meeting_id: str) -> str:
    with stack.http(t) as http:
        r = http.post(f"/v1/meetings/{meeting_id}/captions/ticket")
    assert r.status_code == 200, r.text
    value: str = r.json()["ticket"]
    return value


def bearer(t: T) -> dict[str, str]:
    return {"Authorization": f"Bearer {t.token}"}


@contextlib.asynccontextmanager
async def sockets(
    urls: list[tuple[str, dict[str, str]]],
) -> AsyncIterator[list[aiohttp.ClientWebSocketResponse]]:
    """Open each socket; yields them all (refused ones too, already closing)."""
    async with aiohttp.ClientSession() as http, contextlib.AsyncExitStack() as opened:
        yield [await opened.enter_async_context(http.ws_connect(u, headers=h)) for u, h in urls]


async def refused(ws: aiohttp.ClientWebSocketResponse, within: float = 3.0) -> int | None:
    """The close code, if the socket closes within ``within`` seconds; None if it stays.
    (The server accepts, then authenticates and counts: on a loaded machine that can take
    most of a second.)"""
    try:
        msg = await ws.receive(timeout=within)
    except TimeoutError:
        return None
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
    return ws.close_code


def test_a_long_lived_token_in_the_url_is_refused(stack: TenantStack) -> None:
    t = stack.tenant("acme")
    m = meeting(stack, t)
    store_transcript(stack.rt, m, ["hello there"])

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(captions_url(stack.api.url, m, access_token=t.token)) as ws:
                msg = await ws.receive(timeout=10)
                assert msg.type is aiohttp.WSMsgType.CLOSE, msg  # no caption came first
                assert ws.close_code == 4401
                assert "ticket" in str(msg.extra)
            # the header works, for clients that can set one
            async with http.ws_connect(captions_url(stack.api.url, m), headers=bearer(t)) as ws:
                assert json.loads((await ws.receive(timeout=10)).data)["text"] == "hello there"

    asyncio.run(scenario())


def test_a_ticket_opens_one_socket_on_its_meeting_and_is_stored_hashed(
    stack: TenantStack,
) -> None:
    t = stack.tenant("acme")
    m, other = meeting(stack, t), meeting(stack, t)
    store_transcript(stack.rt, m, ["hello there"])
    first = ticket(stack, t, m)
    r = stack.rt.store.redis
    assert 55 <= r.ttl(schema.ticket(first)) <= 60  # short-lived
    assert not any(first.encode() in k + v for k, v in everything(r))  # only its hash

    async def scenario() -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(captions_url(stack.api.url, m, ticket=first)) as ws,
        ):
            assert json.loads((await ws.receive(timeout=10)).data)["text"] == "hello there"

    asyncio.run(scenario())
    assert close_code(captions_url(stack.api.url, m, ticket=first)) == 4401  # used up
    wrong = ticket(stack, t, other)
    assert close_code(captions_url(stack.api.url, m, ticket=wrong)) == 4401  # other meeting
    assert close_code(captions_url(stack.api.url, other, ticket=wrong)) == 4401  # and used up
    b = stack.tenant("globex")
    with stack.http(b) as http:  # a ticket for another tenant's meeting is not issued
        assert http.post(f"/v1/meetings/{m}/captions/ticket").status_code == 404


def test_caption_sockets_are_capped_per_meeting_and_per_tenant(stack: TenantStack) -> None:
    """3 per meeting, 5 per tenant: the 4th on one meeting and the 6th of the tenant close
    with 4429; another tenant's socket still opens; closing one frees a place."""
    a, b = stack.tenant("a"), stack.tenant("b")
    m1, m2, mb = meeting(stack, a), meeting(stack, a), meeting(stack, b)
    url = stack.api.url

    async def scenario() -> None:
        # opened at once: which of them the server counts first is its business
        async with sockets([(captions_url(url, m1), bearer(a))] * (PER_MEETING + 1)) as on_m1:
            codes = list(await asyncio.gather(*map(refused, on_m1)))
            assert sorted(codes, key=str) == [4429] + [None] * PER_MEETING, codes
            async with sockets([(captions_url(url, m2), bearer(a))] * 3) as on_m2:
                codes = list(await asyncio.gather(*map(refused, on_m2)))
                assert sorted(codes, key=str) == [4429, None, None], codes  # 5 for the tenant
                async with sockets([(captions_url(url, mb), bearer(b))]) as theirs:
                    assert await refused(theirs[0]) is None  # another tenant is unaffected
                await on_m2[codes.index(None)].close()
                async with sockets([(captions_url(url, m1), bearer(a))]) as again:
                    assert await refused(again[0]) == 4429  # m1 is still full
                async with sockets([(captions_url(url, m2), bearer(a))]) as again:
                    assert await refused(again[0]) is None  # a place was freed

    asyncio.run(scenario())
    released = stack.rt.store.sockets
    wait_until(lambda: released.count(a.id, m1) == (0, 0), 10, "every socket released")


def test_caption_sockets_share_a_few_redis_connections(tmp_path: Path) -> None:
    """Sockets do not each open a Redis connection: 40 sockets over 4 meetings, opened at
    once, cost the API fewer than 20; 40 more cost next to none (the pools are shared and
    bounded); each new caption still reaches all 80 at once (one reader wakes them)."""
    with tenant_stack(
        tmp_path, SEALSCRIBE_QUOTA_RPS="0", SEALSCRIBE_CAPTION_SOCKETS_PER_MEETING="100"
    ) as stack:
        t = stack.tenant("a")
        ms = [meeting(stack, t) for _ in range(4)]
        r = stack.rt.store.redis

        def clients() -> int:
            return int(r.info("clients")["connected_clients"])

        async def scenario() -> None:
            for m in ms:
                store_transcript(stack.rt, m, ["warm up"])
            urls = [(captions_url(stack.api.url, ms[i % 4]), bearer(t)) for i in range(40)]
            before = clients()
            async with (
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
                contextlib.AsyncExitStack() as opened,
            ):

                async def batch() -> list[aiohttp.ClientWebSocketResponse]:
                    made = await asyncio.gather(*(http.ws_connect(u, headers=h) for u, h in urls))
                    for ws in made:
                        opened.push_async_callback(ws.close)
                        text = json.loads((await ws.receive(timeout=20)).data)["text"]
                        assert text == "warm up"
                    return list(made)

                every = await batch()
                grown = clients() - before
                assert grown < 20, f"40 sockets opened {grown} Redis connections"
                every += await batch()
                more = clients() - before - grown
                assert more <= 4, f"40 more sockets opened {more} more Redis connections"
                for seq in (1, 2):
                    sent = time.monotonic()
                    for m in ms:
                        store_transcript(stack.rt, m, [f"live {seq}"], first_seq=seq)
                    for ws in every:
                        text = json.loads((await ws.receive(timeout=20)).data)["text"]
                        assert text == f"live {seq}"
                    took = time.monotonic() - sent
                    assert took < 1.5, f"caption {seq} took {took:.1f} s to reach 80 sockets"

        asyncio.run(scenario())


def test_a_socket_ends_within_5_s_of_its_token_being_revoked_or_the_tenant_erased(
    stack: TenantStack,
) -> None:
    """A socket opened with a ticket of a read token, one opened with a meetings token in the
    header, and one of an admin token: revoking the first token, rotating the second, and
    erasing the tenant close each within 5 s (4401; 4403 if the key's revocation, the first
    step of an erasure, is seen first)."""
    admin = stack.tenant("acme")
    m = meeting(stack, admin)
    with stack.http(admin) as http:
        made = {
            kind: http.post("/v1/tokens", json={"name": kind, "scopes": [kind]}).json()
            for kind in ("read", "meetings")
        }
    reader = T(admin.id, made["read"]["token"])
    runner = T(admin.id, made["meetings"]["token"])
    by_ticket = captions_url(stack.api.url, m, ticket=ticket(stack, reader, m))

    async def ended_within(
        ws: aiohttp.ClientWebSocketResponse, limit: float, codes: tuple[int, ...] = (4401,)
    ) -> float:
        start = time.monotonic()
        code = await refused(ws, within=limit + 1)
        took = time.monotonic() - start
        assert code in codes, f"still open {took:.1f} s after (code {code})"
        assert took <= limit, took
        return took

    async def scenario() -> None:
        plain = captions_url(stack.api.url, m)
        async with sockets([(by_ticket, {}), (plain, bearer(runner)), (plain, bearer(admin))]) as (
            read_ws,
            run_ws,
            admin_ws,
        ):
            for ws in (read_ws, run_ws, admin_ws):
                assert await refused(ws, within=1.0) is None  # all open
            with stack.http(admin) as http:
                assert http.delete(f"/v1/tokens/{made['read']['id']}").status_code == 204
            await ended_within(read_ws, 5.0)
            assert await refused(run_ws, within=0.1) is None  # the others stay
            with stack.http(admin) as http:
                r = http.post(f"/v1/tokens/{made['meetings']['id']}/rotate")
                assert r.status_code == 200
            await ended_within(run_ws, 5.0)
            assert await refused(admin_ws, within=0.1) is None
            code, out = await asyncio.to_thread(stack.cli, "tenant", "erase", admin.id, "--yes")
            assert code == 0, out
            await ended_within(admin_ws, 5.0, (4401, 4403))  # erasure revokes the key too

    asyncio.run(scenario())
