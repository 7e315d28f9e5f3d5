"""The API killed and restarted while a caption socket is open: the client reconnects with
the last cursor it saw and gets every caption stored meanwhile, none twice.

Transcripts keep coming while the API is down (the worker stores them, each id appended to
the meeting's caption stream). Fails with the ``captions-ignore-cursor`` fault.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import redis

from pipeline import services
from pipeline.models import Meeting
from pipeline.store import schema
from tests.faults.harness import PHRASES, running, submit_spoken
from tests.harness.stack import LocalStack
from tests.privacy.live import settled

TEXTS = list(PHRASES.values())


async def follow(url: str, token: str, cursor: str, until: int, got: list[str]) -> None:
    """Append each caption's cursor to ``got`` until there are ``until`` or the socket
    closes (the API went away)."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(
            url, params={"cursor": cursor}, headers={"Authorization": f"Bearer {token}"}
        ) as ws,
    ):
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            got.append(json.loads(msg.data)["cursor"])
            if len(got) >= until:
                return


def stream(r: redis.Redis, meeting: Meeting) -> list[str]:
    entries: Any = r.xrange(schema.meeting_captions(meeting.id))
    return [entry_id.decode() for entry_id, _ in entries]


def test_captions_resume_across_an_api_restart(tmp_path: Path) -> None:
    with running(tmp_path) as stack:
        tenant = stack.tenant("faults")
        meeting = services.create_meeting(stack.rt, tenant.id, transcription=True)
        url = stack.api_url.replace("http", "ws", 1) + f"/v1/meetings/{meeting.id}/captions"
        r = redis.Redis.from_url(stack.redis_url)
        got: list[str] = []

        async def scenario(stack: LocalStack) -> None:
            reader = asyncio.create_task(follow(url, tenant.token, "0", len(TEXTS), got))
            await asyncio.to_thread(submit_spoken, stack, meeting, TEXTS[:2])
            await asyncio.to_thread(settled, r, meeting.id, 2)
            while len(got) < 2:  # both delivered before the API goes
                await asyncio.sleep(0.05)
            stack.api.kill()
            await asyncio.wait_for(reader, 10)  # the socket closed under the client
            await asyncio.to_thread(submit_spoken, stack, meeting, TEXTS[2:], first=2)
            await asyncio.to_thread(settled, r, meeting.id, len(TEXTS))
            await asyncio.to_thread(stack.api.start)
            await asyncio.wait_for(follow(url, tenant.token, got[-1], len(TEXTS), got), 30)

        asyncio.run(scenario(stack))
        assert got == stream(r, meeting)  # in order, none missing, none twice
        assert len(got) == len(TEXTS)
        r.close()
