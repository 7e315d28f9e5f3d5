"""ICE settings for every peer connection the bot or the API opens.

Two rules. No public STUN server is ever contacted (aiortc defaults to Google's): the
configuration has no ICE servers unless ``SEALSCRIBE_STUN`` names some. And host candidates can
be restricted to the addresses in ``SEALSCRIBE_ICE_HOSTS`` (comma separated). aioice gathers
every interface address except loopback, so peers on one machine (tests, the demo) cannot
meet on 127.0.0.1 without this; with it they can, and nothing is offered on other interfaces.
"""

from __future__ import annotations

import os

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

__all__ = ["configure_ice", "ice_hosts", "rtc_configuration"]

_original_host_addresses = aioice.ice.get_host_addresses
_hosts: tuple[str, ...] = ()


def ice_hosts() -> tuple[str, ...]:
    return _hosts


def _restricted(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    return [h for h in _hosts if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]


def configure_ice(hosts: str | None = None) -> None:
    """Apply ``hosts`` (default: ``SEALSCRIBE_ICE_HOSTS``) to every later gathering.

    aioice looks its address list up through a module-level function at gathering time;
    that function is the one seam it offers, so it is replaced here (and restored when
    ``hosts`` is empty).
    """
    global _hosts
    raw = os.environ.get("SEALSCRIBE_ICE_HOSTS", "") if hosts is None else hosts
    _hosts = tuple(h.strip() for h in raw.split(",") if h.strip())
    aioice.ice.get_host_addresses = _restricted if _hosts else _original_host_addresses


def rtc_configuration() -> RTCConfiguration:
    stun = [u.strip() for u in os.environ.get("SEALSCRIBE_STUN", "").split(",") if u.strip()]
    return RTCConfiguration(iceServers=[RTCIceServer(urls=u) for u in stun])
