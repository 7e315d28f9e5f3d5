"""The bot's lifecycle against real Redis, with a scripted connector standing in for the
meeting server (the real Janus connector is proven in test_janus*.py): states and reasons,
reconnect with backoff, call-back, deletion, the consent display, and the bot service's
join queue and leases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import services
from pipeline.audio.decode import decode_file
from pipeline.bot.bot import Bot
from pipeline.bot.connectors import Connector, JoinRejected, ParticipantSink
from pipeline.bot.service import BotService
from pipeline.errors import InvalidInput
from pipeline.models import BotState
from pipeline.publish import PcmTrack
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.services.bots import bot_status, join_meeting, leave_meeting
from tests.conftest import TEST_REDIS_URL
from tests.harness.processes import broker_for

JFK = Path(__file__).resolve().parents[2] / "pipeline" / "demo_data" / "jfk.ogg"


@pytest.fixture(autouse=True)
def broker() -> Iterator[None]:
    use_broker(broker_for(TEST_REDIS_URL))
    yield


class Scripted(Connector):
    """Each connection attempt plays the next step of ``plan``."""

    scheme = "fake"

    def __init__(self, plan: list[str], announced: list[bool], audio: bytes = b"") -> None:
        self.plan, self.announced, self.audio = plan, announced, audio

    async def run(self, sink: ParticipantSink) -> None:
        step = self.plan.pop(0) if self.plan else "stay"
        if step == "reject":
            raise JoinRejected("Janus room 1234 does not exist")
        if step == "unreachable":
            raise ConnectionRefusedError("the meeting server at 10.0.0.1:8088 is unreachable")
        sink.joined()
        if self.audio:
            sink.track_added("Ann", PcmTrack(self.audio, speed=4))
        if step == "lose":
            await asyncio.sleep(0.3)
            raise ConnectionResetError("the meeting server at 10.0.0.1:8088 went away")
        if step == "end":
            await asyncio.sleep(0.3)
            return
        await asyncio.Event().wait()

    async def announce(self, transcribing: bool) -> None:
        self.announced.append(transcribing)

    async def close(self) -> None:
        pass

    def describe(self) -> str:
        return "fake://room"


def run_bot(
    rt: Runtime,
    meeting_id: str,
    plan: list[str],
    announced: list[bool],
    during: object = None,
    audio: bytes = b"",
    **kw: float,
) -> tuple[Bot, BotState]:
    bot = Bot(
        rt,
        meeting_id,
        "fake://room",
        max_backoff=0.2,
        connector_for=lambda url: Scripted(plan, announced, audio),
        **kw,  # type: ignore[arg-type]
    )

    async def main() -> BotState:
        task = asyncio.create_task(bot.run())
        if during is not None:
            await during(bot)  # type: ignore[operator]
        return await asyncio.wait_for(task, 30)

    return bot, asyncio.run(main())


@pytest.fixture
def meeting_id(rt: Runtime) -> str:
    tenant, _ = services.create_tenant(rt, "acme")
    return services.create_meeting(rt, tenant.id).id


def test_a_refusal_fails_at_once_with_its_reason(rt: Runtime, meeting_id: str) -> None:
    _, state = run_bot(rt, meeting_id, ["reject"], [])
    assert state is BotState.FAILED
    status = rt.store.bots.get(meeting_id)
    assert status is not None and status.reason == "Janus room 1234 does not exist"


def test_an_unreachable_server_is_retried_then_given_up(rt: Runtime, meeting_id: str) -> None:
    plan = ["unreachable"] * 10
    _, state = run_bot(rt, meeting_id, plan, [], join_attempts=3)
    assert state is BotState.FAILED
    status = rt.store.bots.get(meeting_id)
    assert status is not None
    assert "unreachable" in status.reason and "3 attempts" in status.reason
    assert len(plan) == 7


def test_a_lost_meeting_is_rejoined_and_the_gap_reported(rt: Runtime, meeting_id: str) -> None:
    async def then_leave(bot: Bot) -> None:
        while not bot.gaps:
            await asyncio.sleep(0.05)
        assert rt.store.bots.get(meeting_id).state is BotState.IN_MEETING  # type: ignore[union-attr]
        assert "gap" in rt.store.bots.get(meeting_id).reason  # type: ignore[union-attr]
        bot.leave()

    bot, state = run_bot(rt, meeting_id, ["lose", "unreachable", "stay"], [], then_leave)
    assert state is BotState.LEFT
    assert len(bot.gaps) == 1 and bot.gaps[0] > 0


def test_the_meeting_ending_or_being_deleted_ends_the_bot(rt: Runtime, meeting_id: str) -> None:
    _, state = run_bot(rt, meeting_id, ["end"], [])
    assert state is BotState.LEFT
    assert rt.store.bots.get(meeting_id).reason == "the meeting ended"  # type: ignore[union-attr]

    async def delete(bot: Bot) -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(services.delete_meeting, rt, meeting_id)

    _, state = run_bot(rt, meeting_id, ["stay"], [], delete)
    assert state is BotState.LEFT


def test_the_bot_shows_the_switch_within_a_second(rt: Runtime, meeting_id: str) -> None:
    announced: list[bool] = []

    async def flip(bot: Bot) -> None:
        for _ in range(200):  # the bot joined and announced the switch as it found it
            if announced:
                break
            await asyncio.sleep(0.05)
        assert announced == [False]
        await asyncio.to_thread(services.set_transcription, rt, meeting_id, True)
        for _ in range(20):
            if announced[-1]:
                break
            await asyncio.sleep(0.05)
        assert announced[-1] is True  # within a second
        bot.leave()

    run_bot(rt, meeting_id, ["stay"], announced, flip)


def test_captured_audio_is_flushed_when_the_bot_is_called_back(
    rt: Runtime, meeting_id: str
) -> None:
    services.set_transcription(rt, meeting_id, True)
    audio = decode_file(JFK, 60)

    async def leave_after_speech(bot: Bot) -> None:
        await asyncio.sleep(2.5)  # the clip at 4x speed: about 11 s of audio
        bot.leave()

    run_bot(rt, meeting_id, ["stay"], [], leave_after_speech, audio=audio)
    sids = rt.store.segments.pending_audio(meeting_id)
    assert sids and all(s.startswith("Ann.") for s in sids)


def test_join_requests_are_validated_and_run_by_the_bot_service(
    rt: Runtime, meeting_id: str
) -> None:
    with pytest.raises(InvalidInput):
        join_meeting(rt, meeting_id, "zoom://example")
    announced: list[bool] = []

    async def main() -> None:
        service = BotService(
            rt, lease=1.5, rescan=0.3, connector_for=lambda url: Scripted([], announced)
        )
        task = asyncio.create_task(service.run())
        try:
            await asyncio.to_thread(join_meeting, rt, meeting_id, "janus://127.0.0.1:1/1234")
            for _ in range(100):
                if bot_status(rt, meeting_id).state is BotState.IN_MEETING:
                    break
                await asyncio.sleep(0.05)
            assert bot_status(rt, meeting_id).state is BotState.IN_MEETING
            # a second service does not take a meeting whose lease is held
            other = BotService(
                rt, lease=1.5, rescan=0.3, connector_for=lambda url: Scripted([], announced)
            )
            other_task = asyncio.create_task(other.run())
            await asyncio.sleep(1.0)
            assert other.bots == {}
            # the first stops: its meeting stays wanted, and the second takes it over
            service.stop()
            await asyncio.wait_for(task, 10)
            for _ in range(100):
                if meeting_id in other.bots:
                    break
                await asyncio.sleep(0.05)
            assert meeting_id in other.bots
            await asyncio.to_thread(leave_meeting, rt, meeting_id)
            for _ in range(100):
                if bot_status(rt, meeting_id).state is BotState.LEFT:
                    break
                await asyncio.sleep(0.05)
            assert bot_status(rt, meeting_id).state is BotState.LEFT
            other.stop()
            await asyncio.wait_for(other_task, 10)
        finally:
            service.stop()

    asyncio.run(main())
    status = bot_status(rt, meeting_id)
    assert status.target == "janus://127.0.0.1:1/1234"
    assert rt.store.bots.target(meeting_id) is None  # the URL (and any pin) is not kept


def test_a_call_back_while_the_bot_starts_is_not_lost(
    rt: Runtime, meeting_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The call-back reaches a running bot as a message on the meeting's channel; one sent
    before the bot's room listens (it is still starting) is not heard, and the service's
    rescan stops the bot anyway, because its meeting is no longer wanted."""
    from pipeline.capture.room import MeetingRoom

    started = asyncio.Event()
    slow_start = MeetingRoom.start

    async def start_late(room: MeetingRoom) -> None:
        started.set()
        await asyncio.sleep(1.0)  # the call-back is sent in this second
        await slow_start(room)

    monkeypatch.setattr(MeetingRoom, "start", start_late)

    async def main() -> None:
        service = BotService(rt, lease=1.5, rescan=0.3, connector_for=lambda url: Scripted([], []))
        task = asyncio.create_task(service.run())
        try:
            await asyncio.to_thread(join_meeting, rt, meeting_id, "janus://127.0.0.1:1/1234")
            await asyncio.wait_for(started.wait(), 10)
            await asyncio.to_thread(leave_meeting, rt, meeting_id)
            for _ in range(100):
                if bot_status(rt, meeting_id).state is BotState.LEFT:
                    break
                await asyncio.sleep(0.05)
            assert bot_status(rt, meeting_id).state is BotState.LEFT
        finally:
            service.stop()
            await asyncio.wait_for(task, 10)

    asyncio.run(main())
