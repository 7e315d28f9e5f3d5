"""The egress policy: where a tenant can make the service send packets.

A tenant chooses addresses that the service then contacts: the Janus server of a join URL
(the bot speaks HTTP to it) and the remote ICE candidates of a WebRTC offer (the bot and WHIP
ingest send STUN to them). Unchecked, that makes the service a tool for reaching what only it
can reach (Redis on loopback, the KMS, a cloud's metadata service, the cluster's network) and
a port scanner. So every such address passes this one policy.

``SEALSCRIBE_BOT_ALLOW`` lists what the operator permits, comma separated:

- ``public``: every public address (the default when the variable is unset or empty);
- an IP address (``203.0.113.7``, ``::1``) or a CIDR block (``10.20.0.0/16``);
- a host name (``janus.media.svc.cluster.local``): a join URL naming exactly that host may
  connect wherever the name resolves (list only names your own DNS controls);
- ``mdns``: ICE candidates named ``*.local`` (resolved by multicast DNS on the local link).

The list replaces the default: ``public,10.20.0.0/16`` adds a private network to the public
addresses, ``10.20.0.0/16`` alone permits only that network.

Not public (refused unless listed): unspecified, loopback, private (RFC 1918, IPv6 ULA),
CGNAT (100.64.0.0/10), link-local (cloud metadata services live there), multicast,
benchmarking, documentation, IETF-reserved and future-use ranges, IPv6 outside 2000::/3, and
every IPv6 form that carries one of those IPv4 addresses (IPv4-mapped ``::ffff:a.b.c.d``,
NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``).

How it is enforced:

- HTTP to Janus goes through :func:`connector`: the check runs on each address aiohttp is
  about to connect to, after DNS resolution, in the socket factory that creates the very
  socket connected to it, so a name cannot resolve to one address for the check and another
  for the connection (no DNS rebinding). Redirects are never followed (the callers pass
  ``allow_redirects=False``), no proxy from the environment is used, timeouts are short, and
  every refusal or failure reaches the tenant as one reason, :data:`UNREACHABLE`; the
  detail goes only to the operator's log.
- Remote ICE candidates are filtered out of an offer by :func:`filter_candidates` before
  aiortc reads it; aiortc takes remote candidates from the SDP only (sealscribe supports no
  trickle ICE), so a dropped candidate is never contacted.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline import faults
from pipeline.errors import InvalidInput

if TYPE_CHECKING:  # aiohttp only for the annotation: importing the settings stays cheap
    import aiohttp

__all__ = [
    "ALLOW_VAR",
    "UNREACHABLE",
    "EgressPolicy",
    "EgressRefused",
    "configure",
    "connector",
    "current",
    "filter_candidates",
    "is_public",
]

log = logging.getLogger(__name__)

ALLOW_VAR = "SEALSCRIBE_BOT_ALLOW"
#: the one reason a tenant sees for a meeting server refused, unreachable or not answering
UNREACHABLE = "the meeting server could not be reached"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_V4_NOT_PUBLIC = tuple(
    ipaddress.IPv4Network(n)
    for n in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254)
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
    )
)
#: all global unicast IPv6 lies here; everything outside (::1, ULA, link-local, multicast,
#: IPv4-compatible, discard, SRv6) is not public
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_NOT_PUBLIC = tuple(
    ipaddress.IPv6Network(n)
    for n in (
        "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID)
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_MDNS = re.compile(r"^[a-zA-Z0-9-]{1,63}\.local$")  # what aioice resolves by multicast DNS


def _address(address: str | IPAddress) -> IPAddress | None:
    """``address`` as an IP address, an IPv4-mapped IPv6 one as the IPv4 it carries; None
    when it is not an IP address."""
    if isinstance(address, str):
        try:
            address = ipaddress.ip_address(address)
        except ValueError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: str | IPAddress) -> bool:
    """Whether ``address`` is a public unicast address (module docstring: what is not)."""
    ip = _address(address)
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return not any(ip in net for net in _V4_NOT_PUBLIC)
    if ip in _NAT64:  # reaches the IPv4 address it carries, through a NAT64 gateway
        return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:  # 6to4: likewise, through a relay
        return is_public(ip.sixtofour)
    return ip in _V6_GLOBAL_UNICAST and not any(ip in net for net in _V6_NOT_PUBLIC)


@dataclass(frozen=True)
class EgressPolicy:
    """What the operator permits the service to contact on a tenant's behalf.

    Build it with :meth:`parse` (from ``SEALSCRIBE_BOT_ALLOW``); :meth:`allows` decides for
    one connection, :meth:`allows_address` for one address.
    """

    public: bool = True
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    mdns: bool = False

    @classmethod
    def parse(cls, raw: str | None) -> EgressPolicy:
        """The policy ``raw`` lists (module docstring); unset or empty: public addresses.

        Raises:
            InvalidInput: naming the entry that is none of the forms above.
        """
        entries = [e.strip() for e in (raw or "").split(",") if e.strip()]
        if not entries:
            return cls()
        public, mdns = False, False
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        for entry in entries:
            word = entry.lower()
            if word == "public":
                public = True
            elif word == "mdns":
                mdns = True
            elif (network := _network(entry)) is not None:
                networks.append(network)
            elif _HOSTNAME.match(word.rstrip(".")) and not word.replace(".", "").isdigit():
                hosts.add(word.rstrip("."))
            else:
                raise InvalidInput(
                    f"{ALLOW_VAR}: {entry!r} is not 'public', 'mdns', an IP address, a CIDR "
                    "block or a host name"
                )
        return cls(public, tuple(networks), frozenset(hosts), mdns)

    def allowing(self, entries: Iterable[str]) -> EgressPolicy:
        """This policy with ``entries`` (addresses, CIDR blocks, host names) permitted too."""
        more = EgressPolicy.parse(",".join(entries))
        return EgressPolicy(
            self.public,
            self.networks + tuple(n for n in more.networks if n not in self.networks),
            self.hosts | more.hosts,
            self.mdns or more.mdns,
        )

    def allows_address(self, address: str | IPAddress) -> bool:
        """Whether the service may send to ``address`` (an IP address; anything else: no)."""
        ip = _address(address)
        if ip is None:
            return False
        if any(ip.version == net.version and ip in net for net in self.networks):
            return True
        return self.public and is_public(ip)

    def allows(self, host: str, address: str | IPAddress) -> bool:
        """Whether a connection to ``host`` (as the tenant named it) may go to ``address``
        (what it resolved to): a listed host name permits any address."""
        return host.lower().rstrip(".") in self.hosts or self.allows_address(address)

    def allows_candidate(self, host: str) -> bool:
        """Whether a remote ICE candidate at ``host`` (an address or an mDNS name) may be
        contacted."""
        if _MDNS.match(host):
            return self.mdns
        return self.allows_address(host)

    def describe(self) -> str:
        """The policy as ``SEALSCRIBE_BOT_ALLOW`` would list it."""
        words = ["public"] if self.public else []
        words += [str(n) for n in self.networks] + sorted(self.hosts)
        return ",".join(words + (["mdns"] if self.mdns else [])) or "(nothing)"


def _network(entry: str) -> IPNetwork | None:
    """``entry`` as an address (a one-address network) or a CIDR block; None if neither.

    Raises:
        InvalidInput: a CIDR block with host bits set (a typo, not a wish to widen it).
    """
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None
    try:
        ipaddress.ip_network(entry)
    except ValueError:
        raise InvalidInput(
            f"{ALLOW_VAR}: {entry!r} has host bits set; did you mean {network.compressed}?"
        ) from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:a.b.c.d/N: compared as the IPv4 it carries
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


_configured: EgressPolicy | None = None


def configure(policy: EgressPolicy | None) -> None:
    """Use ``policy`` in this process instead of the settings' (None: the settings' again).

    For the demo, whose own publishers offer loopback candidates to its own API."""
    global _configured
    _configured = policy


def configured() -> EgressPolicy | None:
    """The policy :func:`configure` set in this process (None: the settings' is used)."""
    return _configured


def current() -> EgressPolicy:
    """This process's policy: the configured one, else ``SEALSCRIBE_BOT_ALLOW``'s."""
    if _configured is not None:
        return _configured
    from pipeline.config import get_settings  # configure late: the settings import this module

    return get_settings().egress


# -- HTTP ----------------------------------------------------------------------------------


class EgressRefused(ConnectionRefusedError):
    """The policy refuses the address about to be connected to: nothing was sent."""


def connector(host: str, policy: EgressPolicy | None = None) -> aiohttp.TCPConnector:
    """An aiohttp connector for connections to ``host`` that opens a socket only to an
    address ``policy`` allows (default: :func:`current`).

    The check runs in the socket factory, on the address the socket is then connected to:
    after resolution, for every address aiohttp tries, with nothing sent to a refused one.
    A refusal fails that address like a refused connection (:class:`EgressRefused`, inside
    aiohttp's ``ClientConnectorError``); it is logged here for the operator.
    """
    import aiohttp

    rules = current() if policy is None else policy

    def socket_factory(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        if not faults.on("egress-unchecked") and not rules.allows(host, sockaddr[0]):
            log.warning(
                "refused to connect to %s port %s for %s: %s does not allow it",
                sockaddr[0],
                sockaddr[1],
                host,
                ALLOW_VAR,
            )
            raise EgressRefused("the egress policy refuses this address")
        return socket.socket(family, type_, proto)

    return aiohttp.TCPConnector(socket_factory=socket_factory)


# -- ICE -----------------------------------------------------------------------------------


def filter_candidates(sdp: str, policy: EgressPolicy | None = None) -> str:
    """``sdp`` without the remote ICE candidates ``policy`` (default: :func:`current`)
    refuses: every ``a=candidate`` line whose address is not allowed, that names an mDNS
    host while ``mdns`` is not listed, or that aiortc could not read, is removed before
    aiortc sees the offer. Lines are split and matched exactly as aiortc's SDP parser does
    (``str.splitlines``, ``a=`` then the attribute name up to ``:``), so no candidate can
    reach aiortc by a spelling this filter reads differently.
    """
    if faults.on("ice-candidates-unchecked"):
        return sdp
    rules = current() if policy is None else policy
    kept: list[str] = []
    dropped = 0
    for line in sdp.splitlines(keepends=True):
        text = line.splitlines()[0]
        if text.startswith("a=") and text[2:].split(":", 1)[0] == "candidate":
            bits = text[2:].partition(":")[2].split()
            if len(bits) < 8 or not rules.allows_candidate(bits[4]):
                dropped += 1
                continue
        kept.append(line)
    if dropped:
        log.info("dropped %d remote ICE candidate(s) that %s does not allow", dropped, ALLOW_VAR)
    return "".join(kept)
