"""The egress policy's decisions, without a network: which addresses are public, what
``SEALSCRIBE_BOT_ALLOW`` parses to (and the precise refusals of what it cannot), and which
``a=candidate`` lines of an offer survive. The policy against real processes, with listeners
that must see nothing, is ``tests/security/test_egress.py``."""

from __future__ import annotations

import socket

import pytest

from pipeline.config import Settings
from pipeline.egress import ALLOW_VAR, EgressPolicy, EgressRefused, connector, filter_candidates
from pipeline.egress import is_public as public
from pipeline.errors import InvalidInput

NOT_PUBLIC = [
    "0.0.0.0",
    "127.0.0.1",
    "127.255.0.9",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "169.254.169.254",  # cloud metadata
    "192.0.0.170",
    "192.0.2.1",
    "198.18.0.1",
    "198.51.100.1",
    "203.0.113.1",
    "224.0.0.251",  # mDNS multicast
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::7f00:1",
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2002:7f00:1::1",
    "fc00::1",
    "fd12:3456::1",  # ULA
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "100::1",  # discard-only
    "2001::1",  # Teredo
    "2001:db8::1",
    "3fff::1",
    "5f00::1",
    "not-an-address",
    "",
]
PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",
    "100.128.0.0",
    "172.32.0.1",
    "192.0.1.1",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2606:4700:4700::1111",
    "2a00:1450:4001::1",
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_what_is_not_public(address: str) -> None:
    assert not public(address)
    assert not EgressPolicy().allows_address(address)


@pytest.mark.parametrize("address", PUBLIC)
def test_what_is_public(address: str) -> None:
    assert public(address)
    assert EgressPolicy().allows_address(address)


def test_the_default_is_public_addresses_only() -> None:
    assert Settings.from_env({}).egress == EgressPolicy.parse("") == EgressPolicy.parse("public")
    assert EgressPolicy.parse(" , ").describe() == "public"


def test_the_list_replaces_the_default() -> None:
    policy = EgressPolicy.parse("127.0.0.1, 10.213.0.0/16")
    assert policy.allows_address("127.0.0.1")
    assert policy.allows_address("::ffff:127.0.0.1")  # the same address, IPv4-mapped
    assert policy.allows_address("10.213.7.1")
    assert not policy.allows_address("127.0.0.2")
    assert not policy.allows_address("10.214.0.1")
    assert not policy.allows_address("8.8.8.8")  # public is no longer listed
    both = EgressPolicy.parse("public,10.213.0.0/16")
    assert both.allows_address("8.8.8.8") and both.allows_address("10.213.0.1")
    assert not both.allows_address("169.254.169.254")


def test_ipv6_networks_and_mapped_blocks() -> None:
    policy = EgressPolicy.parse("fd00:1::/64,::ffff:10.9.0.0/112")
    assert policy.allows_address("fd00:1::5")
    assert not policy.allows_address("fd00:2::5")
    assert policy.allows_address("10.9.3.4") and policy.allows_address("::ffff:10.9.3.4")
    assert not policy.allows_address("10.10.0.1")


def test_a_host_name_permits_that_name_only() -> None:
    policy = EgressPolicy.parse("Janus.Media.svc.cluster.local.")
    assert policy.allows("janus.media.svc.cluster.local", "10.0.0.7")
    assert policy.allows("JANUS.media.svc.cluster.local.", "10.0.0.7")
    assert not policy.allows("other.media.svc.cluster.local", "10.0.0.7")
    assert not policy.allows("evil.example", "10.0.0.7")
    assert not policy.allows_address("10.0.0.7")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("10.0.0.1/8", "'10.0.0.1/8' has host bits set; did you mean 10.0.0.0/8?"),
        ("10.0.0.1:8088", "'10.0.0.1:8088' is not 'public', 'mdns', an IP address"),
        ("public,janus one", "'janus one' is not 'public'"),
        ("1.2.3", "'1.2.3' is not 'public'"),
        ("*.example.com", "'*.example.com' is not 'public'"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not"),
    ],
)
def test_bad_entries_are_refused_precisely(raw: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=rf"^{ALLOW_VAR}: ") as info:
        Settings.from_env({ALLOW_VAR: raw})
    assert message in str(info.value)


def test_allowing_adds_to_a_policy() -> None:
    demo = EgressPolicy().allowing(["127.0.0.1"])
    assert demo.allows_address("127.0.0.1") and demo.allows_address("8.8.8.8")
    assert not demo.allows_address("10.0.0.1")
    assert demo.describe() == "public,127.0.0.1/32"


OFFER = (
    "v=0\r\n"
    "o=- 1 1 IN IP4 0.0.0.0\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=candidate:1 1 udp 2130706431 8.8.8.8 5000 typ host\r\n"
    "a=candidate:2 1 udp 2130706431 127.0.0.1 5001 typ host\r\n"
    "a=candidate:3 1 udp 2130706431 169.254.169.254 5002 typ host\r\n"
    "a=candidate:4 1 udp 1694498815 10.213.0.2 5003 typ srflx raddr 0.0.0.0 rport 0\r\n"
    "a=candidate:5 1 udp 2130706431 3f0c8a1e-7a8b-4a64-9e55-0a1b2c3d4e5f.local 5004 typ host\r\n"
    "a=candidate:6 1 udp 2130706431 ::ffff:127.0.0.1 5005 typ host\r\n"
    "a=candidate:7 1 udp 2130706431\r\n"  # aiortc could not read it: dropped too
    "a=candidatex:8 1 udp 2130706431 127.0.0.1 5006 typ host\r\n"  # not a candidate for aiortc
    "a=end-of-candidates\r\n"
)


def _hosts(sdp: str) -> list[str]:
    return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]


def test_refused_candidates_are_dropped_and_the_rest_kept_verbatim() -> None:
    kept = filter_candidates(OFFER, EgressPolicy())
    assert _hosts(kept) == ["8.8.8.8"]
    assert "a=candidatex:8" in kept and kept.endswith("a=end-of-candidates\r\n")
    assert kept == "".join(
        line
        for line in OFFER.splitlines(keepends=True)
        if not line.startswith("a=candidate:") or " 8.8.8.8 " in line
    )


def test_allowed_candidates_pass_mdns_only_when_listed() -> None:
    policy = EgressPolicy.parse("127.0.0.1,10.213.0.0/16")
    assert _hosts(filter_candidates(OFFER, policy)) == [
        "127.0.0.1",
        "10.213.0.2",
        "::ffff:127.0.0.1",
    ]
    with_mdns = EgressPolicy.parse("mdns")
    assert _hosts(filter_candidates(OFFER, with_mdns)) == [
        "3f0c8a1e-7a8b-4a64-9e55-0a1b2c3d4e5f.local"
    ]


@pytest.mark.parametrize("newline", ["\n", "\r", "\x0b", "\x1c", "\u2028"])
def test_every_line_break_aiortc_splits_on_is_honoured(newline: str) -> None:
    """aiortc splits with ``str.splitlines``: a candidate hidden behind any of its line
    breaks is a line of its own there, and here."""
    sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0" + newline
    sdp += "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n"
    assert "127.0.0.1" not in filter_candidates(sdp, EgressPolicy())


def test_the_connector_refuses_before_connecting() -> None:
    """The socket factory, given the address aiohttp is about to connect to, refuses it
    without creating a socket; an allowed one gets its socket."""
    import asyncio

    async def factory_of(policy: EgressPolicy, host: str) -> object:
        conn = connector(host, policy)
        try:
            return conn._socket_factory  # the factory aiohappyeyeballs calls per address
        finally:
            await conn.close()

    refuse = asyncio.run(factory_of(EgressPolicy(), "127.0.0.1"))
    info = (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 6379))
    with pytest.raises(EgressRefused):
        refuse(info)  # type: ignore[operator]
    allow = asyncio.run(factory_of(EgressPolicy.parse("127.0.0.1"), "127.0.0.1"))
    sock = allow(info)  # type: ignore[operator]
    assert isinstance(sock, socket.socket)
    sock.close()
    by_name = asyncio.run(factory_of(EgressPolicy.parse("janus.internal"), "janus.internal"))
    sock = by_name((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 8088)))  # type: ignore[operator]
    sock.close()
