"""Failed authentications per client address, so that tokens cannot be guessed.

Each failure counts against the client's address for the current minute (a counter that
expires 60 s after the first failure); at the limit every attempt from that address is
refused, with how long until the window ends, before any token is looked at. IPv6 addresses
count by their /64 (one host usually holds a whole /64).
"""

from __future__ import annotations

import ipaddress

from pipeline.store import schema
from pipeline.store.connection import Redis, redis_errors

__all__ = ["WINDOW", "AuthAttempts", "address_key"]

#: seconds a failure counts for
WINDOW = 60


def address_key(address: str) -> str:
    """How an address is counted: itself (IPv4), its /64 (IPv6), or as given when it is not
    an IP address (a test client's name)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False).network_address) + "/64"
    return str(ip)


class AuthAttempts:
    def __init__(self, r: Redis) -> None:
        self.r = r

    @redis_errors
    def blocked(self, address: str, limit: int) -> int:
        """0 while ``address`` may try; else the seconds until it may try again."""
        key = schema.auth_failures(address_key(address))
        pipe = self.r.pipeline(transaction=False)
        pipe.get(key)
        pipe.ttl(key)
        count, ttl = pipe.execute()
        if count is None or int(count) < limit:
            return 0
        return max(1, int(ttl))

    @redis_errors
    def failed(self, address: str) -> None:
        key = schema.auth_failures(address_key(address))
        pipe = self.r.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, WINDOW, nx=True)
        pipe.execute()
