"""One session with Janus over its HTTP API: the transport the VideoRoom connector talks through.

This module owns everything about talking to a Janus server, and nothing about rooms: creating
and destroying a session, attaching and detaching plugin handles, sending plugin requests and
matching their asynchronous answers by transaction, the long poll that delivers events, the
keepalive that stops Janus from expiring the session, and turning every transport or protocol
failure into one of two errors: :class:`JanusUnavailable` (unreachable, lost the session, too
slow: retry with backoff) or :class:`JanusError` (Janus answered with an error code). The API
secret travels in every request but never appears in a message or a log line.

Every connection passes the egress policy (:mod:`pipeline.egress`): it is opened only to an
address ``SEALSCRIBE_BOT_ALLOW`` allows, checked on the address actually connected to; no
redirect is followed (a 307 would replay the POST, API secret included, elsewhere); and
whatever goes wrong on the way (an address refused, a closed port, no answer, an HTTP server
that is not Janus) reads the same to the tenant, :data:`~pipeline.egress.UNREACHABLE`, so that
the bot cannot be used to map what answers where. The detail goes to the operator's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from pipeline import egress, faults
from pipeline.bot.connectors.janus.address import JanusAddress
from pipeline.egress import UNREACHABLE, EgressPolicy, EgressRefused
from pipeline.errors import SealscribeError

__all__ = [
    "CLOSE_TIMEOUT",
    "VIDEOROOM",
    "JanusError",
    "JanusSession",
    "JanusUnavailable",
]

log = logging.getLogger(__name__)

VIDEOROOM = "janus.plugin.videoroom"

REQUEST_TIMEOUT = 10.0  # one Janus API request, or the plugin's asynchronous answer
CONNECT_TIMEOUT = 3.0  # opening a connection to Janus
LONG_POLL_TIMEOUT = 45.0  # Janus answers a long poll within 30 s (a keepalive if idle)
KEEPALIVE_INTERVAL = 25.0  # at most; sessions expire after 60 s without a request by default
CLOSE_TIMEOUT = 3.0


class JanusUnavailable(SealscribeError, ConnectionError):
    """Janus cannot be reached or lost our session (restart, network): retry with backoff.

    When the server could not be reached at all the message is
    :data:`~pipeline.egress.UNREACHABLE`, whatever the cause; else it may name ``host:port``,
    never the pin or the API secret."""


class JanusError(SealscribeError):
    """Janus answered a request with an error; ``code`` is Janus's numeric error code."""

    def __init__(self, code: int, request: str, reason: str = "") -> None:
        super().__init__(f"Janus answered {request!r} with error {code}")
        self.code = code
        self.reason = reason  # Janus's own text; kept out of the message


class JanusSession:
    """One Janus API session over HTTP: requests, plus a long poll that delivers events.

    Answers to asynchronous plugin requests are matched by transaction; every other event
    goes to ``on_event``. When the session is lost (Janus restarted, connection refused, the
    session timed out) ``on_lost`` is called once with a :class:`JanusUnavailable`, and every
    pending request fails with it. Connections go only where ``policy`` (default: the
    process's, :func:`pipeline.egress.current`) allows.
    """

    def __init__(
        self,
        address: JanusAddress,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_lost: Callable[[JanusUnavailable], None] | None = None,
        policy: EgressPolicy | None = None,
    ) -> None:
        self.address = address
        self.policy = policy
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

    # -- the session's life --------------------------------------------------------------

    async def create(self) -> None:
        """Create the session and start the long poll and the keepalive."""
        self._http = aiohttp.ClientSession(
            connector=egress.connector(self.address.host, self.policy),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT, sock_connect=CONNECT_TIMEOUT),
            trust_env=False,  # never through a proxy named in the environment
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
            async with self._http.get(
                f"{self.address.api_url}/info", allow_redirects=_follow_redirects()
            ) as resp:
                info = await resp.json(content_type=None) if resp.status == 200 else {}
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
            return  # create() reports an unreachable server with its own message
        timeout = info.get("session-timeout") if isinstance(info, dict) else None
        if isinstance(timeout, int) and timeout > 0:
            self._keepalive_every = min(KEEPALIVE_INTERVAL, max(0.5, timeout / 3))

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

    # -- requests ------------------------------------------------------------------------

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
        answer = await self._transact(f"{self._session_url()}/{handle}", request, name, timeout)
        return self._plugin_answer(answer, name)

    async def _transact(
        self, url: str, request: dict[str, Any], name: str, timeout: float
    ) -> dict[str, Any]:
        """Post ``request``; if Janus only acknowledges it, wait up to ``timeout`` for the
        event that answers it (matched by transaction)."""
        transaction = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future  # before posting: the event may beat the answer
        try:
            answer = await self._post(url, request, name, transaction=transaction)
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
        return answer

    def _plugin_answer(
        self, answer: dict[str, Any], name: str
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The plugin's ``data`` and JSEP from Janus's answer, or the error it carries."""
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
            async with self._http.post(url, json=body, allow_redirects=_follow_redirects()) as resp:
                if resp.status != 200:
                    raise self._unreachable(name, f"HTTP {resp.status}")
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise self._unreachable(name, _detail(exc)) from None
        if not isinstance(answer, dict):
            raise self._unreachable(name, "an answer that is not a JSON object")
        _raise_for_error(answer, name)
        return answer

    def _unreachable(self, name: str, detail: str) -> JanusUnavailable:
        """The one error a tenant sees for a server it could not use; ``detail`` (never a
        URL: the long poll's carries the API secret) only in the operator's log."""
        log.warning("Janus at %s could not be reached (%r): %s", self.where, name, detail)
        return JanusUnavailable(detail if faults.on("egress-reasons-differ") else UNREACHABLE)

    # -- the long poll and the keepalive -------------------------------------------------

    async def _poll(self) -> None:
        assert self._http is not None
        url = self._session_url()
        params = {"maxev": "10"}
        if self.address.secret is not None:
            params["apisecret"] = self.address.secret
        timeout = aiohttp.ClientTimeout(total=LONG_POLL_TIMEOUT, sock_connect=CONNECT_TIMEOUT)
        while True:
            params["rid"] = str(int(time.time() * 1000))
            try:
                await self._poll_once(url, params, timeout)
            except JanusUnavailable as exc:
                self._lose(exc)
                return
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                self._lose(self._unreachable("long poll", _detail(exc)))
                return

    async def _poll_once(
        self, url: str, params: dict[str, str], timeout: aiohttp.ClientTimeout
    ) -> None:
        """One long poll: wait for up to ten events and dispatch them."""
        assert self._http is not None
        async with self._http.get(
            url, params=params, timeout=timeout, allow_redirects=_follow_redirects()
        ) as resp:
            if resp.status != 200:
                raise self._unreachable("long poll", f"HTTP {resp.status}")
            events = await resp.json(content_type=None)
        for event in events if isinstance(events, list) else [events]:
            if isinstance(event, dict):
                self._dispatch(event)

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

    # -- losing the session --------------------------------------------------------------

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


def _follow_redirects() -> bool:
    """Never: a redirect could send the next request, API secret included, anywhere."""
    return faults.on("egress-follows-redirects")


def _detail(exc: BaseException) -> str:
    """Why a request failed, for the operator: the error's type and the system's reason,
    never its message (aiohttp's may quote a URL, and the long poll's carries the secret)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        exc = exc.os_error
    if isinstance(exc, EgressRefused):
        return "refused by the egress policy (SEALSCRIBE_BOT_ALLOW)"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__} ({exc.strerror})"
    return type(exc).__name__


def _raise_for_error(answer: dict[str, Any], name: str) -> None:
    if answer.get("janus") == "error":
        error = answer.get("error", {})
        if not isinstance(error, dict):
            raise JanusError(0, name)
        raise JanusError(int(error.get("code", 0)), name, str(error.get("reason", "")))
