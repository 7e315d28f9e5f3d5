"""Janus killed and restarted mid-meeting: the bot reconnects with backoff, says so in the
meeting's state, rejoins, reports the gap ("rejoined after a 0.8 s gap"), and stores the
participants' audio again. Runs in a network namespace with a real Janus, redis-server,
``sealscribe bots`` and worker (:func:`tests.harness.stack.meeting_stack`). Fails with the
``bot-gives-up`` fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from pipeline import services
from pipeline.egress import UNREACHABLE
from pipeline.models import BotState
from pipeline.services.bots import bot_status
from tests.harness.janus import Room
from tests.harness.stack import MeetingStack, meeting_stack, paused
from tests.integration.meeting_ns import (
    SealedAudio,
    StateTrail,
    at_ms,
    drained,
    hears,
    leave_all,
    recall_bot,
    run,
    send_bot,
    speaking,
    talk,
    until,
)

RESTART_ROOM = 2101


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeetingStack]:
    with meeting_stack(
        tmp_path_factory.mktemp("janus-restart"), (Room(RESTART_ROOM, "restart room"),)
    ) as s:
        yield s


@pytest.fixture
def tenant_id(stack: MeetingStack) -> Iterator[str]:
    """A tenant, with the test inside the namespace (its 127.0.0.1 is the stack's)."""
    with stack.ns.entered():
        tenant, _ = services.create_tenant(stack.rt, "acme")
        yield tenant.id


def test_a_janus_restart_is_a_reported_gap(stack: MeetingStack, tenant_id: str) -> None:
    rt = stack.rt
    meeting = services.create_meeting(rt, tenant_id, transcription=True)
    url = stack.url(RESTART_ROOM)
    speech = talk(30)
    marks: dict[str, int] = {}

    async def scenario() -> list[tuple[BotState, str]]:
        audio = SealedAudio(rt, meeting)
        await send_bot(rt, meeting.id, url)
        trail = StateTrail(rt, meeting.id).start()
        publishers = [(await speaking(url, "Erin", speech))[0]]
        try:
            await until(lambda: hears(rt, meeting.id, "Erin"), "the bot hearing Erin")
            await until(lambda: bool(audio.of("Erin")), "Erin's first utterance stored")
            await asyncio.to_thread(stack.janus.restart)
            await leave_all(publishers)  # her session died with Janus: she joins again
            await until(
                lambda: trail.states()[-2:] == [BotState.RECONNECTING, BotState.IN_MEETING],
                "the bot back in the meeting",
                timeout=30,
            )
            marks["rejoined"] = at_ms(meeting, bot_status(rt, meeting.id).since)
            publishers = [(await speaking(url, "Erin", speech))[0]]
            await until(lambda: hears(rt, meeting.id, "Erin"), "the bot hearing Erin again")
            await until(
                lambda: any(s.start_ms >= marks["rejoined"] for s in audio.of("Erin")),
                "Erin's audio after the rejoin stored",
            )
        finally:
            await leave_all(publishers)
            await trail.stop()
        await recall_bot(rt, meeting.id)
        return trail.seen

    with paused(stack.worker):
        seen = run(scenario())
    print("bot states:", seen)
    states = [state for state, _ in seen]
    first_gap = states.index(BotState.RECONNECTING)
    assert states[:first_gap] == [BotState.IN_MEETING]
    reconnecting = [reason for state, reason in seen if state is BotState.RECONNECTING]
    # the connection broke (the one generic reason), or the new Janus did not know the
    # session (a message that names the server)
    where = f"{stack.janus.host}:{stack.janus.port}"
    assert any(
        "retrying in" in reason and (reason.startswith(UNREACHABLE) or where in reason)
        for reason in reconnecting
    )
    rejoin_reason = next(
        reason for state, reason in seen[first_gap:] if state is BotState.IN_MEETING
    )
    assert rejoin_reason.startswith("rejoined after a ") and rejoin_reason.endswith(" s gap")
    drained(rt, meeting.id)
