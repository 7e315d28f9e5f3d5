"""Helpers for the tests of tokens and caption sockets: opening caption sockets against a real
``sealscribe serve``, storing captions as a worker does, and reading all of Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any

import aiohttp
import redis

from keys.types import KeyUse, Purpose
from pipeline import services
from pipeline.models import TranscriptSegment
from pipeline.runtime import Runtime
from pipeline.sealing import seal_transcript

__all__ = ["captions_url", "close_code", "everything", "store_transcript"]


def captions_url(api_url: str, meeting_id: str, **query: str) -> str:
    url = api_url.replace("http", "ws", 1) + f"/v1/meetings/{meeting_id}/captions"
    if query:
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items())
    return url


async def _close_code(url: str, headers: Mapping[str, str] | None, timeout: float) -> int | None:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers=dict(headers or {})) as ws,
    ):
        try:
            msg = await ws.receive(timeout=timeout)
        except TimeoutError:
            return None
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code
        return None  # a caption: the socket was opened


def close_code(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 10
) -> int | None:
    """The code the socket at ``url`` is closed with at once; None if it was opened instead
    (a caption came, or nothing within ``timeout`` seconds)."""
    return asyncio.run(_close_code(url, headers, timeout))


def store_transcript(rt: Runtime, meeting_id: str, texts: list[str], first_seq: int = 0) -> None:
    """Transcript segments as a worker stores them (sealed, with a caption entry each)."""
    m = rt.store.meetings.get(meeting_id)
    key = services.data_key(rt, m, KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE)
    for seq, text in enumerate(texts, first_seq):
        segment = TranscriptSegment("alice", seq, seq * 2000, seq * 2000 + 1500, text)
        rt.store.segments.complete(seal_transcript(key, m.tenant_id, m.id, segment), seq * 2000)


def everything(r: redis.Redis) -> Iterator[tuple[bytes, bytes]]:
    """Every key of the database with its value (each member and field joined), as bytes
    (``r`` returns bytes: redis-py's types cannot say so)."""
    c: Any = r
    for key in c.scan_iter("*"):
        kind = c.type(key)
        value: Any
        if kind == b"string":
            value = c.get(key) or b""
        elif kind == b"hash":
            value = b"\n".join(k + b"=" + v for k, v in c.hgetall(key).items())
        elif kind == b"set":
            value = b"\n".join(c.smembers(key))
        elif kind == b"zset":
            value = b"\n".join(c.zrange(key, 0, -1))
        elif kind == b"list":
            value = b"\n".join(c.lrange(key, 0, -1))
        elif kind == b"stream":
            value = b"\n".join(
                b"".join(k + v for k, v in fields.items()) for _, fields in c.xrange(key)
            )
        else:
            value = b""
        yield key, value
