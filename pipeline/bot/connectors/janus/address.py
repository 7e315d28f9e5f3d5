"""The Janus join URLs: ``janus://HOST[:PORT]/ROOM[?pin=PIN&secret=API_SECRET&textroom=ID]``
for a VideoRoom (one track per participant) and ``janus-audiobridge://HOST[:PORT]/ROOM[?...]``
for an AudioBridge room (one mixed track, speakers from its talking events; it also takes
``audio_active_packets=N``, the room's setting of that name, 100 by default, which says how
late its talking events come).

This module owns parsing and validating a join URL into a :class:`JanusAddress`, and nothing
else. It is pure (no network, no aiohttp, no aiortc), so the layers that only need to check a
URL can import it cheaply. ``PORT`` is the Janus HTTP port (8088 by default), ``ROOM`` the
numeric room id, ``pin`` the room's pin and ``secret`` the Janus API secret
(``api_secret`` in ``janus.jcfg``) and ``textroom`` the numeric id of the TextRoom that
carries the room's chat (the bot posts its notices there and hears ``/optout``; the text
room takes the same pin). Every error names what is malformed and never repeats the
URL, so neither the pin nor the secret can leak through a message; both are also kept out of
``repr`` and :meth:`JanusAddress.describe`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from pipeline.errors import InvalidInput

__all__ = ["AUDIOBRIDGE", "DEFAULT_PORT", "VIDEOROOM", "JanusAddress", "parse_janus_url"]

DEFAULT_PORT = 8088
#: the URL schemes: a VideoRoom, an AudioBridge room
VIDEOROOM = "janus"
AUDIOBRIDGE = "janus-audiobridge"
#: AudioBridge's own default for ``audio_active_packets`` (20 ms packets: 2 s)
DEFAULT_ACTIVE_PACKETS = 100
_MAX_ACTIVE_PACKETS = 1000

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$"
)
_ROOM = re.compile(r"^[1-9][0-9]{0,18}$")
_MAX_ROOM = 2**63 - 1
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class JanusAddress:
    """A parsed join URL. ``pin`` and ``secret`` are kept out of ``repr``."""

    host: str
    port: int
    room: int
    pin: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    #: the TextRoom that carries the room's chat, if any
    textroom: int | None = None
    #: ``janus`` (VideoRoom) or ``janus-audiobridge``
    scheme: str = VIDEOROOM
    #: an AudioBridge room's ``audio_active_packets``: its talking events' window
    active_packets: int = DEFAULT_ACTIVE_PACKETS

    @property
    def netloc(self) -> str:
        """``host:port``, with an IPv6 literal in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.netloc}/janus"

    def describe(self) -> str:
        chat = "" if self.textroom is None else f"?textroom={self.textroom}"
        return f"{self.scheme}://{self.netloc}/{self.room}{chat}"


def _bad(what: str) -> InvalidInput:
    return InvalidInput(f"invalid Janus URL: {what}")


def parse_janus_url(url: str) -> JanusAddress:
    """Parse ``janus://HOST[:PORT]/ROOM[?pin=...&secret=...]`` (or ``janus-audiobridge://``).

    Raises:
        InvalidInput: naming what is malformed; the message never repeats the URL, so a pin
            or secret in it cannot leak through an error.
    """
    if not isinstance(url, str):
        raise TypeError("a Janus URL must be a str")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise _bad("it contains whitespace or control characters")
    scheme = url.partition("://")[0].lower()
    if "://" not in url or scheme not in (VIDEOROOM, AUDIOBRIDGE):
        raise _bad("it must start with janus:// or janus-audiobridge://")
    try:
        parts = urlsplit(url)
    except ValueError:  # urlsplit checks bracketed hosts itself
        raise _bad("the host in brackets is not an IPv6 address") from None
    if "@" in parts.netloc:
        raise _bad("it must not contain user information (user@host); pass a pin as ?pin=")
    if parts.fragment or "#" in url:
        raise _bad("it must not contain a fragment (#...)")
    host, port = _parse_netloc(parts.netloc)
    room = _parse_room(parts.path)
    values = _parse_query(parts.query, url.endswith("?"), scheme)
    textroom, packets = values.get("textroom"), values.get("audio_active_packets")
    return JanusAddress(
        host=host,
        port=port,
        room=room,
        pin=values.get("pin"),
        secret=values.get("secret"),
        textroom=None if textroom is None else int(textroom),
        scheme=scheme,
        active_packets=DEFAULT_ACTIVE_PACKETS if packets is None else int(packets),
    )


def _parse_netloc(netloc: str) -> tuple[str, int]:
    """``HOST[:PORT]`` -> host and port; ``rest`` is what follows the host (``:PORT`` or '')."""
    if netloc.startswith("["):
        host, rest = _parse_ipv6_host(netloc)
    else:
        host, rest = _parse_plain_host(netloc)
    return host, _parse_port(rest)


def _parse_ipv6_host(netloc: str) -> tuple[str, str]:
    close = netloc.find("]")
    raw_host, rest = netloc[1:close], netloc[close + 1 :]
    try:
        host = str(ipaddress.IPv6Address(raw_host))
    except ValueError:
        raise _bad("the host in brackets is not an IPv6 address") from None
    if rest and not rest.startswith(":"):
        raise _bad("only ':PORT' may follow the bracketed IPv6 host")
    return host, rest


def _parse_plain_host(netloc: str) -> tuple[str, str]:
    raw_host, _, port_part = netloc.partition(":")
    if ":" in port_part:
        raise _bad("an IPv6 host must be written in brackets, e.g. janus://[::1]:8088/1234")
    rest = netloc[len(raw_host) :]
    host = raw_host.lower()
    if not host:
        raise _bad("the host is missing (janus://HOST:PORT/ROOM)")
    if not _HOSTNAME.match(host):
        raise _bad("the host is not a valid host name or IPv4 address")
    return host.rstrip("."), rest


def _parse_port(rest: str) -> int:
    """``:PORT`` after the host, or '' for the default port."""
    if not rest:
        return DEFAULT_PORT
    port = rest[1:]
    if not port:
        raise _bad("the port after ':' is empty")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad("the port must be a number from 1 to 65535")
    return int(port)


def _parse_room(path: str) -> int:
    if path in ("", "/"):
        raise _bad("the room is missing (janus://HOST:PORT/ROOM)")
    room = path[1:]
    if "/" in room:
        raise _bad("the path must be exactly one room number, e.g. /1234")
    if not _ROOM.match(room) or int(room) > _MAX_ROOM:
        raise _bad("the room must be a positive integer (a Janus room's numeric id)")
    return int(room)


def _parse_query(query: str, dangling: bool, scheme: str) -> dict[str, str]:
    """The query's parameters, each checked; those of an AudioBridge room only with its
    scheme."""
    if not query:
        if dangling:
            raise _bad("the query after '?' is empty")
        return {}
    allowed = ["pin", "secret", "textroom"]
    if scheme == AUDIOBRIDGE:
        allowed.append("audio_active_packets")
    values: dict[str, str] = {}
    for item in query.split("&"):
        if "=" not in item:
            raise _bad("every query parameter must be name=value")
        if _BAD_ESCAPE.search(item):
            raise _bad("a query parameter is not validly percent-encoded")
        try:
            ((name, value),) = parse_qsl(
                item, keep_blank_values=True, strict_parsing=True, errors="strict"
            )
        except (ValueError, UnicodeDecodeError):
            raise _bad("a query parameter is not validly percent-encoded") from None
        if name not in allowed:
            known = ", ".join(allowed)
            raise _bad(f"unknown query parameter (the known ones are: {known})")
        if name in values:
            raise _bad(f"the query parameter {name!r} is given twice")
        if not value:
            raise _bad(f"the query parameter {name!r} is empty")
        values[name] = value
    textroom = values.get("textroom")
    if textroom is not None and (not _ROOM.match(textroom) or int(textroom) > _MAX_ROOM):
        raise _bad("the textroom must be a positive integer (a Janus TextRoom numeric id)")
    packets = values.get("audio_active_packets")
    if packets is not None and (
        not _ROOM.match(packets) or not 1 <= int(packets) <= _MAX_ACTIVE_PACKETS
    ):
        raise _bad(f"audio_active_packets must be a number from 1 to {_MAX_ACTIVE_PACKETS}")
    return values
