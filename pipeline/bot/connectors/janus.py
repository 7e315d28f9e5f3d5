"""Janus VideoRoom connector: joins a room over Janus's HTTP API and subscribes to its audio.

Trust model: the Janus server sees every participant's media in the clear (it is an SFU), so
this suits a platform that runs its own Janus. The bot joins as a publisher that publishes
nothing, so the room lists it under its display name ("sealscribe", or "sealscribe
(transcribing)" while transcription is on), and it subscribes to each publisher's audio with
one Janus handle and one aiortc peer connection per publisher: a failure stays with one
participant, and video is never requested.

Join URL: ``janus://HOST[:PORT]/ROOM[?pin=PIN&secret=API_SECRET]``. ``PORT`` is the Janus HTTP
port (8088 by default), ``ROOM`` the numeric VideoRoom id, ``pin`` the room's pin and
``secret`` the Janus API secret (``api_secret`` in ``janus.jcfg``). Neither the pin nor the
secret ever appears in a message, a log line or :meth:`JanusConnector.describe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from keys.errors import InvalidInput, SealscribeError
from pipeline.bot.connectors.base import Connector, JoinRejected, ParticipantSink
from pipeline.bot.ice import rtc_configuration

__all__ = [
    "JanusAddress",
    "JanusConnector",
    "JanusError",
    "JanusSession",
    "JanusUnavailable",
    "parse_janus_url",
]

log = logging.getLogger(__name__)

DEFAULT_PORT = 8088
VIDEOROOM = "janus.plugin.videoroom"
DISPLAY = "sealscribe"
DISPLAY_TRANSCRIBING = "sealscribe (transcribing)"

REQUEST_TIMEOUT = 10.0  # one Janus API request, or the plugin's asynchronous answer
LONG_POLL_TIMEOUT = 45.0  # Janus answers a long poll within 30 s (a keepalive if idle)
KEEPALIVE_INTERVAL = 25.0  # at most; sessions expire after 60 s without a request by default
CLOSE_TIMEOUT = 3.0
MAX_RESUBSCRIBES = 2

# Janus core and VideoRoom error codes (janus/apierror.h, plugins/janus_videoroom.c).
_UNAUTHORIZED = 403
_SESSION_NOT_FOUND = 458
_HANDLE_NOT_FOUND = 459
_NO_SUCH_ROOM = 426
_NO_SUCH_FEED = 428
_MISSING_ELEMENT = 429
_PUBLISHERS_FULL = 432
_ROOM_UNAUTHORIZED = 433

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$"
)
_ROOM = re.compile(r"^[1-9][0-9]{0,18}$")
_MAX_ROOM = 2**63 - 1
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class JanusUnavailable(SealscribeError, ConnectionError):
    """Janus cannot be reached or lost our session (restart, network): retry with backoff.

    The message names ``host:port`` only, never the pin or the API secret."""


class JanusError(SealscribeError):
    """Janus answered a request with an error; ``code`` is Janus's numeric error code."""

    def __init__(self, code: int, request: str, reason: str = "") -> None:
        super().__init__(f"Janus answered {request!r} with error {code}")
        self.code = code
        self.reason = reason  # Janus's own text; kept out of the message


# -- the join URL ------------------------------------------------------------------------


@dataclass(frozen=True)
class JanusAddress:
    """A parsed join URL. ``pin`` and ``secret`` are kept out of ``repr``."""

    host: str
    port: int
    room: int
    pin: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)

    @property
    def netloc(self) -> str:
        """``host:port``, with an IPv6 literal in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.netloc}/janus"

    def describe(self) -> str:
        return f"janus://{self.netloc}/{self.room}"


def _bad(what: str) -> InvalidInput:
    return InvalidInput(f"invalid Janus URL: {what}")


def parse_janus_url(url: str) -> JanusAddress:
    """Parse ``janus://HOST[:PORT]/ROOM[?pin=...&secret=...]``.

    Raises:
        InvalidInput: naming what is malformed; the message never repeats the URL, so a pin
            or secret in it cannot leak through an error.
    """
    if not isinstance(url, str):
        raise TypeError("a Janus URL must be a str")
    if any(c.isspace() or not c.isprintable() for c in url):
        raise _bad("it contains whitespace or control characters")
    if not url.lower().startswith("janus://"):
        raise _bad("it must start with janus://")
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
    pin, secret = _parse_query(parts.query, url.endswith("?"))
    return JanusAddress(host=host, port=port, room=room, pin=pin, secret=secret)


def _parse_netloc(netloc: str) -> tuple[str, int]:
    if netloc.startswith("["):
        close = netloc.find("]")
        raw_host, rest = netloc[1:close], netloc[close + 1 :]
        try:
            host = str(ipaddress.IPv6Address(raw_host))
        except ValueError:
            raise _bad("the host in brackets is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise _bad("only ':PORT' may follow the bracketed IPv6 host")
    else:
        raw_host, _, port_part = netloc.partition(":")
        if ":" in port_part:
            raise _bad("an IPv6 host must be written in brackets, e.g. janus://[::1]:8088/1234")
        rest = netloc[len(raw_host) :]
        host = raw_host.lower()
        if not host:
            raise _bad("the host is missing (janus://HOST:PORT/ROOM)")
        if not _HOSTNAME.match(host):
            raise _bad("the host is not a valid host name or IPv4 address")
        host = host.rstrip(".")
    if not rest:
        return host, DEFAULT_PORT
    port = rest[1:]
    if not port:
        raise _bad("the port after ':' is empty")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad("the port must be a number from 1 to 65535")
    return host, int(port)


def _parse_room(path: str) -> int:
    if path in ("", "/"):
        raise _bad("the room is missing (janus://HOST:PORT/ROOM)")
    room = path[1:]
    if "/" in room:
        raise _bad("the path must be exactly one room number, e.g. /1234")
    if not _ROOM.match(room) or int(room) > _MAX_ROOM:
        raise _bad("the room must be a positive integer (a Janus VideoRoom numeric id)")
    return int(room)


def _parse_query(query: str, dangling: bool) -> tuple[str | None, str | None]:
    if not query:
        if dangling:
            raise _bad("the query after '?' is empty")
        return None, None
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
        if name not in ("pin", "secret"):
            known = "pin, secret"
            raise _bad(f"unknown query parameter (the known ones are: {known})")
        if name in values:
            raise _bad(f"the query parameter {name!r} is given twice")
        if not value:
            raise _bad(f"the query parameter {name!r} is empty")
        values[name] = value
    return values.get("pin"), values.get("secret")


# -- the Janus HTTP API ------------------------------------------------------------------


class JanusSession:
    """One Janus API session over HTTP: requests, plus a long poll that delivers events.

    Answers to asynchronous plugin requests are matched by transaction; every other event
    goes to ``on_event``. When the session is lost (Janus restarted, connection refused, the
    session timed out) ``on_lost`` is called once with a :class:`JanusUnavailable`, and every
    pending request fails with it.
    """

    def __init__(
        self,
        address: JanusAddress,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_lost: Callable[[JanusUnavailable], None] | None = None,
    ) -> None:
        self.address = address
        self.on_event = on_event
        self.on_lost = on_lost
        self.session_id: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lost: JanusUnavailable | None = None
        self._closed = False
        self._keepalive_every = KEEPALIVE_INTERVAL

    @property
    def where(self) -> str:
        return self.address.netloc

    async def create(self) -> None:
        """Create the session and start the long poll and the keepalive."""
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, sock_connect=5.0)
        )
        await self._learn_session_timeout()
        answer = await self._post(self.address.api_url, {"janus": "create"}, "create")
        self.session_id = int(answer["data"]["id"])
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._keepalive())]

    async def _learn_session_timeout(self) -> None:
        """Keep alive often enough for this server: a long poll does not count as activity
        for Janus 1.1, and ``session_timeout`` may be set below the 60 s default."""
        assert self._http is not None
        try:
            async with self._http.get(f"{self.address.api_url}/info") as resp:
                info = await resp.json(content_type=None) if resp.status == 200 else {}
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return  # create() reports an unreachable server with its own message
        timeout = info.get("session-timeout") if isinstance(info, dict) else None
        if isinstance(timeout, int) and timeout > 0:
            self._keepalive_every = min(KEEPALIVE_INTERVAL, max(0.5, timeout / 3))

    async def attach(self, plugin: str = VIDEOROOM) -> int:
        answer = await self._post(
            self._session_url(), {"janus": "attach", "plugin": plugin}, "attach"
        )
        return int(answer["data"]["id"])

    async def detach(self, handle: int) -> None:
        await self._post(f"{self._session_url()}/{handle}", {"janus": "detach"}, "detach")

    async def message(
        self,
        handle: int,
        body: dict[str, Any],
        jsep: dict[str, Any] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Send a plugin request; return the plugin's answer (``plugindata.data``) and its
        JSEP, whether Janus answered at once or later as an event.

        Raises:
            JanusError: Janus or the plugin answered with an error.
            JanusUnavailable: the session is lost or Janus did not answer in time.
        """
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        name = str(body.get("request", "message"))
        transaction = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future  # before posting: the event may beat the answer
        try:
            answer = await self._post(
                f"{self._session_url()}/{handle}", request, name, transaction=transaction
            )
            if answer.get("janus") == "ack":
                try:
                    answer = await asyncio.wait_for(asyncio.shield(future), timeout)
                except TimeoutError:
                    raise JanusUnavailable(
                        f"Janus at {self.where} did not answer {name!r} within {timeout:.0f} s"
                    ) from None
        finally:
            self._pending.pop(transaction, None)
            if not future.done():
                future.cancel()
        _raise_for_error(answer, name)
        data = answer.get("plugindata", {}).get("data", {})
        if not isinstance(data, dict):
            raise JanusUnavailable(f"Janus at {self.where} sent a malformed answer to {name!r}")
        if "error_code" in data:
            raise JanusError(int(data["error_code"]), name, str(data.get("error", "")))
        jsep_out = answer.get("jsep")
        return data, jsep_out if isinstance(jsep_out, dict) else None

    async def trickle_completed(self, handle: int) -> None:
        """Tell Janus there are no more candidates: aiortc puts all of them in the SDP."""
        await self._post(
            f"{self._session_url()}/{handle}",
            {"janus": "trickle", "candidate": {"completed": True}},
            "trickle",
        )

    async def destroy(self) -> None:
        """Destroy the session on Janus (best effort, bounded) and release everything."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.session_id is not None and self._lost is None and self._http is not None:
            with contextlib.suppress(JanusUnavailable, JanusError, TimeoutError):
                await asyncio.wait_for(
                    self._post(self._session_url(), {"janus": "destroy"}, "destroy"), CLOSE_TIMEOUT
                )
        self._fail_pending(JanusUnavailable(f"the session with Janus at {self.where} was closed"))
        if self._http is not None:
            await self._http.close()

    def _session_url(self) -> str:
        if self.session_id is None:
            raise RuntimeError("the Janus session is not created yet")
        return f"{self.address.api_url}/{self.session_id}"

    async def _post(
        self, url: str, request: dict[str, Any], name: str, transaction: str | None = None
    ) -> dict[str, Any]:
        if self._lost is not None:
            raise JanusUnavailable(str(self._lost))
        if self._http is None or self._closed:
            raise JanusUnavailable(f"the session with Janus at {self.where} is closed")
        body = dict(request, transaction=transaction or secrets.token_hex(8))
        if self.address.secret is not None:
            body["apisecret"] = self.address.secret
        try:
            async with self._http.post(url, json=body) as resp:
                if resp.status != 200:
                    raise JanusUnavailable(
                        f"Janus at {self.where} answered {name!r} with "
                        f"HTTP {resp.status}; is it a Janus HTTP API?"
                    )
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise JanusUnavailable(
                f"Janus at {self.where} is unreachable ({type(exc).__name__} on {name!r})"
            ) from None
        if not isinstance(answer, dict):
            raise JanusUnavailable(f"Janus at {self.where} sent a malformed answer to {name!r}")
        _raise_for_error(answer, name)
        return answer

    async def _poll(self) -> None:
        assert self._http is not None
        url = self._session_url()
        params = {"maxev": "10"}
        if self.address.secret is not None:
            params["apisecret"] = self.address.secret
        timeout = aiohttp.ClientTimeout(total=LONG_POLL_TIMEOUT, sock_connect=5.0)
        while True:
            params["rid"] = str(int(time.time() * 1000))
            try:
                async with self._http.get(url, params=params, timeout=timeout) as resp:
                    if resp.status != 200:
                        raise JanusUnavailable(
                            f"Janus at {self.where} answered the long poll with HTTP {resp.status}"
                        )
                    events = await resp.json(content_type=None)
                for event in events if isinstance(events, list) else [events]:
                    if isinstance(event, dict):
                        self._dispatch(event)
            except JanusUnavailable as exc:
                self._lose(exc)
                return
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                # The URL may carry the API secret: only the exception's type is kept.
                self._lose(
                    JanusUnavailable(
                        f"lost the connection to Janus at {self.where} ({type(exc).__name__})"
                    )
                )
                return

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self._keepalive_every)
            try:
                await self._post(self._session_url(), {"janus": "keepalive"}, "keepalive")
            except JanusUnavailable as exc:
                self._lose(exc)
                return
            except JanusError as exc:
                self._lose(
                    JanusUnavailable(
                        f"Janus at {self.where} dropped our session (error {exc.code})"
                    )
                )
                return

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("janus")
        if kind == "keepalive":
            return
        if kind == "error":
            code = event.get("error", {}).get("code")
            raise JanusUnavailable(f"Janus at {self.where} dropped our session (error {code})")
        if kind == "timeout":
            raise JanusUnavailable(f"Janus at {self.where} timed our session out")
        future = self._pending.get(str(event.get("transaction")))
        if future is not None and not future.done() and kind in ("event", "success", "error"):
            future.set_result(event)
            return
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("handling a Janus event of kind %s failed", kind)

    def _lose(self, exc: JanusUnavailable) -> None:
        if self._lost is not None or self._closed:
            return
        self._lost = exc
        self._fail_pending(exc)
        if self.on_lost is not None:
            self.on_lost(exc)

    def _fail_pending(self, exc: JanusUnavailable) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved here: a waiter may already be gone


def _raise_for_error(answer: dict[str, Any], name: str) -> None:
    if answer.get("janus") == "error":
        error = answer.get("error", {})
        if not isinstance(error, dict):
            raise JanusError(0, name)
        raise JanusError(int(error.get("code", 0)), name, str(error.get("reason", "")))


# -- the connector -----------------------------------------------------------------------


@dataclass
class _Subscription:
    """One publisher's audio: a Janus subscriber handle and an aiortc peer connection."""

    feed: int
    display: str | None
    mids: list[str] | None  # the publisher's audio mids; None: an old Janus without streams
    handle: int | None = None
    pc: RTCPeerConnection | None = None
    labels: list[str] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    connected: bool = False
    failures: int = 0


class JanusConnector(Connector):
    """Joins one Janus VideoRoom and hands each publisher's audio track to the sink.

    Args:
        address: the parsed join URL (see :meth:`from_url`).

    ``close()`` is final: it ends a ``run()`` in progress (which then returns normally), and
    a later ``run()`` returns at once, so a bot told to leave cannot rejoin by a retry.
    """

    scheme = "janus"

    def __init__(self, address: JanusAddress) -> None:
        self.address = address
        self._transcribing = False
        self._closed = False
        self._session: JanusSession | None = None
        self._handle: int | None = None
        self._joined = False
        self._private_id: int | None = None
        self._sink: ParticipantSink | None = None
        self._subs: dict[int, _Subscription] = {}
        self._labels: set[str] = set()
        self._ended: asyncio.Future[None] | None = None
        self._announce_lock = asyncio.Lock()
        self._teardown: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, url: str) -> JanusConnector:
        """A connector for ``janus://HOST[:PORT]/ROOM[?pin=...&secret=...]``.

        Raises:
            InvalidInput: the URL is malformed (the message never contains pin or secret).
        """
        return cls(parse_janus_url(url))

    def describe(self) -> str:
        return self.address.describe()

    @property
    def display_name(self) -> str:
        """What the room shows for the bot now."""
        return DISPLAY_TRANSCRIBING if self._transcribing else DISPLAY

    # -- Connector ------------------------------------------------------------------------

    async def run(self, sink: ParticipantSink) -> None:
        """Join the room and deliver tracks until the room is destroyed or :meth:`close`.

        Raises:
            JoinRejected: no such room, or Janus refused the pin or the API secret.
            JanusUnavailable: Janus is unreachable, lost the session, or ICE failed for
                every subscription; retry with backoff.
        """
        if self._closed:
            return
        if self._ended is not None and not self._ended.done():
            raise RuntimeError("JanusConnector.run is already running")
        self._sink = sink
        self._ended = asyncio.get_running_loop().create_future()
        self._teardown = None
        self._joined = False
        session = JanusSession(self.address, on_event=self._on_event, on_lost=self._on_lost)
        self._session = session
        try:
            await session.create()
            handle = await session.attach(VIDEOROOM)
            self._handle = handle
            body: dict[str, Any] = {
                "request": "join",
                "ptype": "publisher",
                "room": self.address.room,
                "display": self.display_name,
            }
            if self.address.pin is not None:
                body["pin"] = self.address.pin
            joined_as = self.display_name
            data, _ = await session.message(handle, body)
            if data.get("videoroom") != "joined":
                raise JanusUnavailable(
                    f"Janus at {self.address.netloc} did not confirm the "
                    f"join of room {self.address.room}"
                )
            private_id = data.get("private_id")
            self._private_id = private_id if isinstance(private_id, int) else None
            self._joined = True
            log.info("joined %s as %r", self.describe(), joined_as)
            if self.display_name != joined_as:  # announce() came while the join was on its way
                await self._show_display_name()
            joined = getattr(sink, "joined", None)
            if callable(joined):
                joined()
            self._publishers(data.get("publishers"))
            await self._ended
        except JanusError as exc:
            if self._closed:
                return
            raise self._translate(exc) from None
        except JanusUnavailable:
            if self._closed:
                return
            raise
        finally:
            await asyncio.shield(self._stop())

    async def announce(self, transcribing: bool) -> None:
        """Show "sealscribe (transcribing)" or "sealscribe" to the room, now if joined and
        at every later join. If Janus does not take the new name, the run ends with
        :class:`JanusUnavailable` so that the rejoin shows the right one."""
        self._transcribing = transcribing
        if self._joined:
            await self._show_display_name()

    async def _show_display_name(self) -> None:
        async with self._announce_lock:
            session, handle = self._session, self._handle
            if session is None or handle is None or self._ended is None or self._ended.done():
                return
            try:
                await session.message(
                    handle, {"request": "configure", "display": self.display_name}
                )
            except (JanusError, JanusUnavailable) as exc:
                log.warning(
                    "could not show the transcription state in %s: %s", self.describe(), exc
                )
                self._end(
                    JanusUnavailable(
                        f"Janus at {self.address.netloc} did not take the bot's new display name"
                    )
                )

    async def close(self) -> None:
        """Leave the room, close every peer connection, destroy the session. Final."""
        self._closed = True
        self._end(None)
        await asyncio.shield(self._stop())

    # -- joining and leaving -------------------------------------------------------------

    def _translate(self, exc: JanusError) -> SealscribeError:
        room, where = self.address.room, self.address.netloc
        if exc.code == _NO_SUCH_ROOM:
            return JoinRejected(f"Janus room {room} does not exist")
        if exc.code == _MISSING_ELEMENT and "pin" in exc.reason:
            return JoinRejected(f"Janus room {room} needs a pin (add ?pin=...)")
        if exc.code == _ROOM_UNAUTHORIZED:
            if self.address.pin is None:
                return JoinRejected(f"Janus room {room} needs a pin (add ?pin=...)")
            return JoinRejected(f"Janus refused the pin for room {room}")
        if exc.code == _UNAUTHORIZED:
            if self.address.secret is None:
                return JoinRejected(f"Janus at {where} needs an API secret (add ?secret=...)")
            return JoinRejected(f"Janus at {where} refused the API secret")
        if exc.code == _PUBLISHERS_FULL:
            return JanusUnavailable(f"Janus room {room} is full")
        if exc.code in (_SESSION_NOT_FOUND, _HANDLE_NOT_FOUND):
            return JanusUnavailable(f"Janus at {where} lost our session")
        return JanusUnavailable(f"Janus at {where}: {exc}")

    def _end(self, exc: BaseException | None) -> None:
        if self._ended is None or self._ended.done():
            return
        if exc is None:
            self._ended.set_result(None)
        else:
            self._ended.set_exception(exc)

    def _on_lost(self, exc: JanusUnavailable) -> None:
        log.warning("%s", exc)
        self._end(exc)

    def _stop(self) -> asyncio.Task[None]:
        if self._teardown is None:
            self._teardown = asyncio.ensure_future(self._release())
        return self._teardown

    async def _release(self) -> None:
        subs, self._subs = list(self._subs.values()), {}
        for sub in subs:
            if sub.task is not None:
                sub.task.cancel()
        for task in [s.task for s in subs if s.task is not None] + list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._background.clear()
        for sub in subs:
            await self._drop(sub, detach=False)
        session, handle = self._session, self._handle
        self._session = self._handle = None
        self._joined = False
        if session is not None and handle is not None:
            with contextlib.suppress(JanusError, JanusUnavailable, TimeoutError):
                await asyncio.wait_for(session.message(handle, {"request": "leave"}), CLOSE_TIMEOUT)
        if session is not None:
            await session.destroy()  # destroying the session detaches (and leaves) everything
        self._labels.clear()

    # -- events --------------------------------------------------------------------------

    def _on_event(self, event: dict[str, Any]) -> None:
        sender, kind = event.get("sender"), event.get("janus")
        if sender == self._handle:
            if kind == "event":
                self._room_event(event.get("plugindata", {}).get("data", {}))
            elif kind == "detached":
                self._end(
                    JanusUnavailable(
                        f"Janus at {self.address.netloc} detached the bot "
                        f"from room {self.address.room}"
                    )
                )
            return
        sub = next((s for s in self._subs.values() if s.handle == sender), None)
        if sub is None:
            return
        if kind == "hangup":  # Janus's side of ICE/DTLS gave up: try that feed again
            log.info("Janus hung up the subscription to feed %s in %s", sub.feed, self.describe())
            self._resubscribe(sub)

    def _room_event(self, data: dict[str, Any]) -> None:
        if data.get("videoroom") == "destroyed":
            log.info("%s was destroyed", self.describe())
            self._end(None)
            return
        if "publishers" in data:
            self._publishers(data["publishers"])
        for key in ("unpublished", "leaving", "kicked"):
            feed = data.get(key)
            if feed == "ok" and key != "unpublished":
                log.info(
                    "the bot was removed from %s (%s)", self.describe(), data.get("reason", key)
                )
                self._end(None)
            elif isinstance(feed, int):
                self._remove(feed)

    def _publishers(self, publishers: object) -> None:
        if not isinstance(publishers, list):
            return
        for pub in publishers:
            if not isinstance(pub, dict) or not isinstance(pub.get("id"), int):
                continue
            feed = pub["id"]
            if feed in self._subs:
                continue
            display = pub.get("display")
            display = display.strip() if isinstance(display, str) and display.strip() else None
            streams = pub.get("streams")
            mids: list[str] | None = None
            if isinstance(streams, list):
                mids = [
                    str(s["mid"])
                    for s in streams
                    if isinstance(s, dict)
                    and s.get("type") == "audio"
                    and "mid" in s
                    and not s.get("disabled")
                ]
                if not mids:
                    log.info(
                        "feed %s in %s publishes no audio; nothing to capture",
                        feed,
                        self.describe(),
                    )
                    continue
            sub = _Subscription(feed=feed, display=display, mids=mids)
            self._subs[feed] = sub
            self._start(sub)

    def _start(self, sub: _Subscription) -> None:
        if self._ended is None or self._ended.done():  # tearing down: start nothing new
            self._subs.pop(sub.feed, None)
            return
        sub.task = asyncio.create_task(self._subscribe(sub))

    def _remove(self, feed: int) -> None:
        sub = self._subs.pop(feed, None)
        if sub is None:
            return
        if sub.task is not None:
            sub.task.cancel()
        self._spawn(self._drop(sub))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- subscriptions -------------------------------------------------------------------

    async def _subscribe(self, sub: _Subscription) -> None:
        session = self._session
        if session is None:
            return
        try:
            sub.handle = await session.attach(VIDEOROOM)
            body: dict[str, Any] = {
                "request": "join",
                "ptype": "subscriber",
                "room": self.address.room,
            }
            if sub.mids is None:
                body["feed"] = sub.feed
            else:
                body["streams"] = [{"feed": sub.feed, "mid": mid} for mid in sub.mids]
            if self._private_id is not None:
                body["private_id"] = self._private_id
            if self.address.pin is not None:
                body["pin"] = self.address.pin
            _, offer = await session.message(sub.handle, body)
            if offer is None or offer.get("type") != "offer" or "sdp" not in offer:
                raise JanusUnavailable(
                    f"Janus at {self.address.netloc} sent no offer for feed {sub.feed}"
                )
            pc = RTCPeerConnection(rtc_configuration())
            sub.pc = pc
            tracks: list[MediaStreamTrack] = []
            pc.on("track", lambda track: tracks.append(track) if track.kind == "audio" else None)
            pc.on("connectionstatechange", lambda: self._pc_state(sub, pc))
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            for transceiver in pc.getTransceivers():
                if transceiver.kind != "audio":  # an old Janus may offer video: refuse it
                    transceiver.direction = "inactive"
            await pc.setLocalDescription(await pc.createAnswer())
            await session.message(
                sub.handle,
                {"request": "start", "room": self.address.room},
                jsep={"type": "answer", "sdp": pc.localDescription.sdp},
            )
            await session.trickle_completed(sub.handle)
        except JanusError as exc:
            if exc.code in (_NO_SUCH_FEED, _NO_SUCH_ROOM):  # it left while we subscribed
                log.info(
                    "feed %s left %s before the subscription completed", sub.feed, self.describe()
                )
            else:
                log.warning(
                    "subscribing to feed %s in %s failed: %s", sub.feed, self.describe(), exc
                )
            self._forget(sub)
            return
        except JanusUnavailable as exc:
            log.warning("subscribing to feed %s in %s failed: %s", sub.feed, self.describe(), exc)
            self._forget(sub)
            return
        except Exception as exc:  # aiortc refusing Janus's SDP: lose this feed, not the room
            log.warning(
                "subscribing to feed %s in %s failed: %s",
                sub.feed,
                self.describe(),
                type(exc).__name__,
            )
            self._forget(sub)
            return
        if not tracks:
            log.info(
                "feed %s in %s offered no audio; nothing to capture", sub.feed, self.describe()
            )
        for track in tracks:
            label = self._label(sub)
            sub.labels.append(label)
            if self._sink is not None:
                self._sink.track_added(label, track)

    def _forget(self, sub: _Subscription) -> None:
        if self._subs.get(sub.feed) is sub:
            del self._subs[sub.feed]
        self._spawn(self._drop(sub))

    def _label(self, sub: _Subscription) -> str:
        base = sub.display or f"feed-{sub.feed}"
        label, n = base, 2
        while label in self._labels:
            label, n = f"{base} ({n})", n + 1
        self._labels.add(label)
        return label

    async def _drop(self, sub: _Subscription, detach: bool = True) -> None:
        """Release one subscription: tell the sink, close the PC, detach the handle."""
        labels, sub.labels = sub.labels, []
        for label in labels:
            self._labels.discard(label)
            if self._sink is not None:
                self._sink.track_removed(label)
        pc, sub.pc = sub.pc, None
        if pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), CLOSE_TIMEOUT)
        handle, sub.handle = sub.handle, None
        session = self._session
        if detach and handle is not None and session is not None:
            with contextlib.suppress(JanusError, JanusUnavailable, TimeoutError):
                await asyncio.wait_for(session.detach(handle), CLOSE_TIMEOUT)

    def _pc_state(self, sub: _Subscription, pc: RTCPeerConnection) -> None:
        state = pc.connectionState
        if state == "connected":
            sub.connected = True
        elif state == "failed" and sub.pc is pc:
            self._subscription_failed(sub)

    def _subscription_failed(self, sub: _Subscription) -> None:
        log.warning("ICE failed for feed %s in %s", sub.feed, self.describe())
        if not any(s is not sub for s in self._subs.values()):
            self._forget(sub)
            self._end(
                JanusUnavailable(
                    f"ICE failed for every subscription to Janus at {self.address.netloc}"
                )
            )
        else:
            self._resubscribe(sub)

    def _resubscribe(self, sub: _Subscription) -> None:
        """Replace a broken subscription with a fresh one, a few times per feed at most."""
        self._forget(sub)
        if sub.failures >= MAX_RESUBSCRIBES:
            log.warning("giving up on feed %s in %s until the next join", sub.feed, self.describe())
            return
        retry = _Subscription(
            feed=sub.feed, display=sub.display, mids=sub.mids, failures=sub.failures + 1
        )
        self._subs[sub.feed] = retry
        self._start(retry)
