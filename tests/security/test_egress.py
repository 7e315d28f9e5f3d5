"""The egress policy against real processes: ``sealscribe bots`` and ``sealscribe serve``
inside a network namespace this test creates, with ``SEALSCRIBE_BOT_ALLOW`` set to exactly
the namespace's "meeting server" address (its host veth end). The namespace's other
address (the peer veth end) and its own 127.0.0.1 are forbidden.

Every forbidden address is one this test owns, inside the namespace, with a listener on it:
a refusal is proven by that listener seeing nothing (no TCP connection, no UDP packet), so
nothing is ever sent anywhere outside the namespace, and nothing forbidden is reached inside
it. Each test fails with its defence switched off (``tests/security/test_mutations.py``):

- ``egress-unchecked``: the bot connects to a forbidden address (by address, by a name that
  resolves to one, by its IPv4-mapped form);
- ``egress-follows-redirects``: the bot follows a 307 from the meeting server, replaying the
  POST with the API secret to another listener;
- ``egress-reasons-differ``: a closed port, a server that is not Janus, a forbidden address
  with a listener and one without tell the tenant apart (a port scanner);
- ``ice-candidates-unchecked``: a WHIP offer's candidate for a forbidden address gets STUN.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from pipeline import faults, services
from pipeline.config import Settings
from pipeline.egress import UNREACHABLE
from pipeline.models import BotState
from pipeline.runtime import Runtime
from pipeline.services.bots import bot_status, join_meeting
from tests.harness.netns import NetNs, network_namespace, require_netns
from tests.harness.processes import ApiProcess, BotsProcess, sealscribe
from tests.harness.redis import RedisServer, require_redis_server

pytestmark = pytest.mark.timeout(300)

R = TypeVar("R")

NS_REDIS_PORT = 6390
API_PORT = 8080
#: how long a bot needs to give up: 5 attempts, 0.5 + 1 + 2 + 4 s of backoff between them
GIVE_UP = 40.0
FINAL = f"{UNREACHABLE} (gave up after 5 attempts)"
SECRET = "egress-api-secret-4711"


# -- the namespace: a private Redis, the bot service, the API --------------------------------


@dataclass
class Edge:
    ns: NetNs
    env: dict[str, str]
    rt: Runtime
    bots: BotsProcess
    api: ApiProcess
    workdir: Path

    @property
    def allowed(self) -> str:
        """The one address SEALSCRIBE_BOT_ALLOW lists (the "meeting server network")."""
        return self.ns.host_addr

    @property
    def forbidden(self) -> tuple[str, str]:
        """Addresses in the namespace the policy refuses: the other veth end, loopback."""
        return self.ns.peer_addr, "127.0.0.1"

    def inside(self, fn: Callable[[], R]) -> R:
        """``fn()`` in the namespace (Redis, listeners and processes live there)."""
        with self.ns.entered():
            return fn()

    def tenant(self, name: str) -> tuple[str, str]:
        tenant, token = self.inside(lambda: services.create_tenant(self.rt, name))
        return tenant.id, token

    def meeting(self, tenant_id: str) -> str:
        return self.inside(lambda: services.create_meeting(self.rt, tenant_id).id)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    require_netns()
    require_redis_server()
    workdir = tmp_path_factory.mktemp("egress")
    home, tmp = workdir / "home", workdir / "tmp"
    for folder in (home, tmp):
        folder.mkdir(mode=0o700)
    with network_namespace() as ns, contextlib.ExitStack() as cleanup:
        redis_server = RedisServer(workdir / "redis", NS_REDIS_PORT)
        cleanup.callback(redis_server.stop)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SEALSCRIBE_")},
            **{k: os.environ[k] for k in (faults.FAULTS_VAR, faults.ALLOW_VAR) if k in os.environ},
            "SEALSCRIBE_REDIS_URL": redis_server.url,
            "SEALSCRIBE_HOME": str(home),
            "SEALSCRIBE_KEY_PROVIDER": "local",
            "SEALSCRIBE_ICE_HOSTS": ns.host_addr,
            "SEALSCRIBE_BOT_ALLOW": ns.host_addr,  # exactly the meeting server's address
            "TMPDIR": str(tmp),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
        }
        with ns.entered():
            redis_server.start(10)
            bots = BotsProcess(env, workdir / "bots.log")
            cleanup.callback(bots.stop)
            bots.start()
            api = ApiProcess(API_PORT, env, workdir / "api.log")
            cleanup.callback(api.stop)
            api.start()
        rt = Runtime.from_settings(Settings.from_env(env), actor="test")
        cleanup.callback(rt.store.redis.close)
        yield Edge(ns, env, rt, bots, api, workdir)


# -- listeners this test owns ------------------------------------------------------------------


@dataclass
class Listener:
    """A TCP listener on ``host:port`` (created inside the namespace) that records every
    connection and what it received, and answers each with ``reply`` (or nothing)."""

    host: str
    port: int
    reply: bytes = b""
    connections: int = 0
    received: bytes = b""
    _sock: socket.socket = field(init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((self.host, self.port))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(1.0)
                with contextlib.suppress(OSError):
                    self.received += conn.recv(65536)
                    if self.reply:
                        conn.sendall(self.reply)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._sock.close()


@contextlib.contextmanager
def listening(edge: Edge, *specs: tuple[str, int, bytes]) -> Iterator[list[Listener]]:
    """Listeners for ``(host, port, reply)``, bound inside the namespace; closed after."""
    listeners = edge.inside(lambda: [Listener(h, p, r) for h, p, r in specs])
    try:
        yield listeners
    finally:
        for listener in listeners:
            listener.close()


def http_reply(status: str, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, "Content-Length: 0", "Connection: close", "", ""]
    return "\r\n".join(lines).encode()


# -- the bot, sent by the CLI and followed in Redis ------------------------------------------


def cli_join(edge: Edge, meeting_id: str, url: str) -> subprocess.Popen[str]:
    """``sealscribe meeting join MEETING URL --wait`` as an operator runs it, started inside
    the namespace (where its Redis is)."""
    argv = sealscribe("meeting", "join", meeting_id, url, "--wait", str(GIVE_UP), "--json")
    return edge.inside(
        lambda: subprocess.Popen(
            argv, env=edge.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    )


def cli_result(proc: subprocess.Popen[str]) -> tuple[int, dict[str, object]]:
    out, err = proc.communicate(timeout=GIVE_UP + 30)
    assert out.strip(), err
    doc: dict[str, object] = json.loads(out)
    return proc.returncode, doc


def trails(edge: Edge, meetings: list[str], timeout: float = GIVE_UP) -> dict[str, list[str]]:
    """Every reason each meeting's bot showed until all of them are final (polled every
    50 ms: each backoff step lasts 0.5 s or more)."""
    seen: dict[str, list[str]] = {m: [] for m in meetings}

    def follow() -> None:
        deadline = time.monotonic() + timeout
        while True:
            done = True
            for m in meetings:
                status = bot_status(edge.rt, m)
                if not seen[m] or seen[m][-1] != status.reason:
                    seen[m].append(status.reason)
                done = done and status.state.final
            if done:
                return
            assert time.monotonic() < deadline, f"the bots did not give up: {seen}"
            time.sleep(0.05)

    edge.inside(follow)
    return seen


# -- 1. a forbidden address is never connected to ---------------------------------------------


def test_forbidden_addresses_are_refused_before_anything_is_sent(edge: Edge) -> None:
    """The namespace's other address, its 127.0.0.1, the name ``localhost`` (resolved to a
    forbidden address, refused after resolution) and the IPv4-mapped form of 127.0.0.1: each
    has a listener this test owns, and none sees a connection; the operator's CLI reports
    the one generic reason."""
    peer, loopback = edge.forbidden
    port = 18088
    urls = {
        "peer": f"janus://{peer}:{port}/1234",
        "loopback": f"janus://{loopback}:{port}/1234",
        "name": f"janus://localhost:{port}/1234",
        "mapped": f"janus://[::ffff:{loopback}]:{port}/1234",
    }
    tenant_id, _ = edge.tenant("forbidden")
    with listening(edge, (peer, port, b""), (loopback, port, b"")) as listeners:
        started = {name: cli_join(edge, edge.meeting(tenant_id), url) for name, url in urls.items()}
        results = {name: cli_result(proc) for name, proc in started.items()}
        connections = {f"{lst.host}:{lst.port}": lst.connections for lst in listeners}
    print("CLI results:", results, "connections seen:", connections)
    assert connections == {f"{peer}:{port}": 0, f"{loopback}:{port}": 0}
    for name, (code, doc) in results.items():
        assert (code, doc["state"], doc["reason"]) == (1, BotState.FAILED.value, FINAL), name
    log = (edge.workdir / "bots.log").read_text()
    assert "SEALSCRIBE_BOT_ALLOW does not allow it" in log  # the detail: the operator's only


# -- 2. no redirect is followed -----------------------------------------------------------------


def test_a_redirect_from_the_meeting_server_is_not_followed(edge: Edge) -> None:
    """A fake Janus on the allowed address answers every request with a 307 to another
    listener on an allowed address: the bot does not follow, so the second listener never
    sees the POST (nor the API secret in it), and the tenant sees the generic reason."""
    host = edge.allowed
    redirect = http_reply("307 Temporary Redirect", f"Location: http://{host}:18090/janus")
    tenant_id, _ = edge.tenant("redirect")
    meeting = edge.meeting(tenant_id)
    with listening(edge, (host, 18089, redirect), (host, 18090, b"")) as (fake, target):
        edge.inside(
            lambda: join_meeting(edge.rt, meeting, f"janus://{host}:18089/1234?secret={SECRET}")
        )
        seen = trails(edge, [meeting])[meeting]
        print("reasons:", seen, "fake Janus:", fake.connections, "target:", target.connections)
        assert fake.connections > 0 and SECRET.encode() in fake.received  # it was asked
        assert target.connections == 0 and SECRET.encode() not in target.received
    assert seen[-1] == FINAL


# -- 3. one reason, whatever answered -------------------------------------------------------------


def test_every_failure_reads_the_same_to_the_tenant(edge: Edge) -> None:
    """A closed port, an HTTP server that is not Janus, a TCP service that is not HTTP (as
    Redis would answer), a forbidden address with a listener and one without: the bot's
    state shows the tenant exactly the same reasons, step by step, for each."""
    host = edge.allowed
    peer, loopback = edge.forbidden
    cases = {
        "closed port": f"janus://{host}:9/1234",
        "not Janus": f"janus://{host}:18091/1234",
        "not HTTP": f"janus://{host}:18092/1234",
        "forbidden, listening": f"janus://{peer}:18093/1234",
        "forbidden, silent": f"janus://{loopback}:9/1234",
    }
    tenant_id, _ = edge.tenant("scanner")
    meetings = {name: edge.meeting(tenant_id) for name in cases}
    specs = [
        (host, 18091, http_reply("404 Not Found", "Content-Type: text/html")),
        (host, 18092, b"-ERR unknown command 'POST'\r\n"),
        (peer, 18093, b"+OK\r\n"),
    ]
    with listening(edge, *specs) as listeners:
        for name, url in cases.items():
            with edge.ns.entered():
                join_meeting(edge.rt, meetings[name], url)
        seen = trails(edge, list(meetings.values()))
        answered = {f"{lst.host}:{lst.port}": lst.connections for lst in listeners}
    by_case = {name: seen[m] for name, m in meetings.items()}
    for name, reasons in by_case.items():
        print(f"{name}: {reasons}")
    print("connections:", answered)
    assert answered[f"{host}:18091"] > 0 and answered[f"{host}:18092"] > 0  # they did answer
    assert answered[f"{peer}:18093"] == 0
    for name, reasons in by_case.items():
        assert reasons[-1] == FINAL, name
        assert all(r == "" or r.startswith(UNREACHABLE) for r in reasons), (name, reasons)
    backoff = {
        name: [r for r in reasons if "retrying in" in r] for name, reasons in by_case.items()
    }
    assert len(set(map(tuple, backoff.values()))) == 1, backoff


# -- 4. ICE: a WHIP offer's forbidden candidates get no STUN --------------------------------------


def udp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def stun_requests(sock: socket.socket) -> int:
    """STUN binding requests waiting on ``sock`` (type 0x0001, magic cookie)."""
    count = 0
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            return count
        if len(data) >= 20 and data[:2] == b"\x00\x01" and data[4:8] == b"\x21\x12\xa4\x42":
            count += 1


async def offer_sdp(candidates: list[tuple[str, int]]) -> str:
    """A real aiortc audio offer, its own candidates replaced by ``candidates``."""
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
    finally:
        await pc.close()
    lines = [line for line in sdp.split("\r\n") if not line.startswith("a=candidate:")]
    crafted = [
        f"a=candidate:{i} 1 udp {2130706431 - i} {host} {port} typ host"
        for i, (host, port) in enumerate(candidates, start=1)
    ]
    at = next(i for i, line in enumerate(lines) if line.startswith("a=mid:")) + 1
    return "\r\n".join(lines[:at] + crafted + lines[at:])


def test_forbidden_ice_candidates_in_a_whip_offer_get_no_stun(edge: Edge) -> None:
    """A WHIP offer carries three candidates, each a UDP socket this test owns: one on the
    allowed address (it gets STUN checks from the API: the control) and two on forbidden
    ones, the namespace's other address and its 127.0.0.1 (they get nothing)."""
    tenant_id, token = edge.tenant("ice")
    meeting = edge.meeting(tenant_id)
    peer, loopback = edge.forbidden
    allowed_sock, *forbidden_socks = edge.inside(
        lambda: [udp_socket(h) for h in (edge.allowed, peer, loopback)]
    )
    socks = [allowed_sock, *forbidden_socks]
    try:
        candidates = [s.getsockname()[:2] for s in socks]

        async def publish() -> tuple[int, str]:
            sdp = await offer_sdp(candidates)
            async with httpx.AsyncClient(base_url=edge.api.url, timeout=20) as http:
                r = await http.post(
                    f"/v1/meetings/{meeting}/whip",
                    content=sdp,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
                )
                assert r.status_code == 201, r.text
                deadline = time.monotonic() + 10
                got = [0, 0, 0]
                while time.monotonic() < deadline and not got[0]:
                    got = [g + stun_requests(s) for g, s in zip(got, socks, strict=True)]
                    await asyncio.sleep(0.1)
                await asyncio.sleep(3)  # a few seconds more for the forbidden ones
                got = [g + stun_requests(s) for g, s in zip(got, socks, strict=True)]
                await http.delete(
                    r.headers["location"], headers={"Authorization": f"Bearer {token}"}
                )
            return got[0], json.dumps(dict(zip(("peer", "loopback"), got[1:], strict=True)))

        allowed, forbidden = edge.inside(lambda: asyncio.run(publish()))
    finally:
        for s in socks:
            s.close()
    print(f"STUN requests: allowed {allowed}, forbidden {forbidden}")
    assert allowed > 0, "the API sent no STUN to the allowed candidate: the control failed"
    assert json.loads(forbidden) == {"peer": 0, "loopback": 0}
