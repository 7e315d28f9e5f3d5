"""The Janus connector against a real Janus in a private network namespace, with real aiortc
publishers: tracks per participant, joins and leaves, the bot's visible name, refusals, and
outages."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from pipeline.bot.connectors import JoinRejected, connector_for
from pipeline.bot.connectors.janus import JanusConnector, JanusUnavailable
from pipeline.bot.connectors.janus.session import JanusSession
from pipeline.bot.connectors.janus.textroom import ChatMessage, TextRoom
from pipeline.egress import UNREACHABLE
from tests.conftest import shared_data
from tests.harness.janus import (
    OPEN_ROOM,
    PIN_ROOM,
    ROOM_PIN,
    ROOM_SECRET,
    JanusServer,
    janus_server,
    require_janus,
)
from tests.harness.netns import NetNs, network_namespace, require_netns
from tests.integration.publishers import Publisher, create_room, destroy_room, list_participants

TIMEOUT = 30.0
SESSION_TIMEOUT = 4  # seconds: short, so that a test can outlive it cheaply


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NetNs, JanusServer]]:
    require_netns()
    require_janus()
    with (
        network_namespace() as ns,
        janus_server(
            ns, tmp_path_factory.mktemp("janus"), session_timeout=SESSION_TIMEOUT
        ) as server,
        ns.reached(),  # exactly the namespace's Janus
    ):
        yield ns, server


def in_netns(ns: NetNs, scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``scenario`` on a fresh event loop inside the namespace, bounded in time."""

    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT):
            await scenario()

    with ns.entered():
        asyncio.run(bounded())


def sources() -> list[Path]:
    return [shared_data("ami-es2004", "sources", f"source{i}.wav") for i in range(4)]


class RecordingSink:
    """Reads every track it gets, counting frames and whether any carried sound."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []
        self.frames: dict[str, int] = {}
        self.audible: set[str] = set()
        self.joined_count = 0
        self._readers: list[asyncio.Task[None]] = []

    def joined(self) -> None:
        self.joined_count += 1

    def track_added(self, participant: str, track: MediaStreamTrack) -> None:
        assert track.kind == "audio"
        self.added.append(participant)
        self.frames[participant] = 0
        self._readers.append(asyncio.create_task(self._read(participant, track)))

    def track_removed(self, participant: str) -> None:
        self.removed.append(participant)

    @property
    def live(self) -> set[str]:
        live = list(self.added)
        for name in self.removed:
            live.remove(name)
        return set(live)

    async def _read(self, participant: str, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames[participant] += 1
                if frame.to_ndarray().any():  # type: ignore[union-attr]
                    self.audible.add(participant)

    async def stop(self) -> None:
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def displays(url: str) -> set[str]:
    return {p.get("display", "") for p in await list_participants(url)}


async def publishing(url: str, display: str, audio: Path | None) -> Publisher:
    publisher = Publisher(url, display)
    await publisher.join()
    if audio is None:
        await publisher.publish_video_only()
    else:
        await publisher.publish_audio(audio)
    return publisher


def test_tracks_per_participant_leaves_joins_and_the_visible_name(
    janus: tuple[NetNs, JanusServer],
) -> None:
    ns, server = janus
    url = server.join_url(OPEN_ROOM)
    wavs = sources()

    async def scenario() -> None:
        alice = await publishing(url, "Alice", wavs[0])
        bob = await publishing(url, "Bob", wavs[1])
        camera = await publishing(url, "Camera only", None)
        late: list[Publisher] = []
        sink = RecordingSink()
        connector = connector_for(url)
        run = asyncio.create_task(connector.run(sink))
        try:
            await until(lambda: sink.live == {"Alice", "Bob"}, "Alice's and Bob's tracks")
            assert sink.joined_count == 1
            await until(
                lambda: sink.audible >= {"Alice", "Bob"} and min(sink.frames.values()) >= 25,
                "audio frames from both",
            )
            # The room sees the bot, and whether it transcribes.
            assert "sealscribe" in await displays(url)
            await connector.announce(True)
            names = await displays(url)
            assert "sealscribe (transcribing)" in names and "sealscribe" not in names
            await connector.announce(False)
            assert "sealscribe" in await displays(url)

            await bob.leave()
            await until(lambda: sink.removed == ["Bob"], "Bob's track_removed")
            before = sink.frames["Alice"]
            late.append(await publishing(url, "Carol", wavs[3]))
            late.append(await publishing(url, "Alice", wavs[2]))
            await until(
                lambda: sink.live == {"Alice", "Carol", "Alice (2)"},
                "the late joiners' tracks, a duplicate name told apart",
            )
            await until(lambda: {"Carol", "Alice (2)"} <= sink.audible, "late joiners' audio")
            assert sink.frames["Alice"] > before
            # The video-only participant never became a track, and nothing broke.
            assert "Camera only" not in sink.added
            assert not run.done()
        finally:
            await connector.close()
            await asyncio.wait_for(run, 5)
            assert run.result() is None
            await sink.stop()
            for publisher in (alice, bob, camera, *late):
                await publisher.leave()
        assert sink.live == set()
        assert "sealscribe" not in await displays(url)

    in_netns(ns, scenario)


def test_refusals_are_precise_and_keep_the_pin_secret(janus: tuple[NetNs, JanusServer]) -> None:
    ns, server = janus

    async def rejected(url: str) -> str:
        connector = connector_for(url)
        with pytest.raises(JoinRejected) as info:
            await connector.run(RecordingSink())
        await connector.close()
        return str(info.value)

    async def scenario() -> None:
        wrong = await rejected(server.join_url(PIN_ROOM, pin="wrong-pin-777"))
        assert wrong == f"Janus refused the pin for room {PIN_ROOM}"
        assert "wrong-pin-777" not in wrong
        assert (
            await rejected(server.join_url(PIN_ROOM))
            == f"Janus room {PIN_ROOM} needs a pin (add ?pin=...)"
        )
        assert await rejected(server.join_url(999)) == "Janus room 999 does not exist"
        # The right pin gets in, and the bot is listed in that room.
        right = server.join_url(PIN_ROOM, pin=ROOM_PIN)
        connector = connector_for(right)
        sink = RecordingSink()
        run = asyncio.create_task(connector.run(sink))
        await until(lambda: sink.joined_count == 1, "joining the pin room")
        assert "sealscribe" in await displays(right)
        await connector.close()
        await asyncio.wait_for(run, 5)

    in_netns(ns, scenario)


def test_api_secret_is_sent_and_refusals_name_no_secret(
    janus: tuple[NetNs, JanusServer], tmp_path: Path
) -> None:
    ns, _ = janus
    api_secret = "api-s3cret-31"

    async def scenario(server: JanusServer) -> None:
        base = f"janus://{server.host}:{server.port}/{OPEN_ROOM}"
        for url, message in (
            (base, f"Janus at {server.host}:{server.port} needs an API secret (add ?secret=...)"),
            (
                f"{base}?secret=wrong-77",
                f"Janus at {server.host}:{server.port} refused the API secret",
            ),
        ):
            connector = connector_for(url)
            with pytest.raises(JoinRejected) as info:
                await connector.run(RecordingSink())
            assert str(info.value) == message
            await connector.close()
        # With the secret, requests and the long poll (which carries it as a query
        # parameter) work.
        url = server.join_url(OPEN_ROOM)
        speaker = await publishing(url, "Fay", sources()[0])
        sink = RecordingSink()
        connector = connector_for(url)
        run = asyncio.create_task(connector.run(sink))
        try:
            await until(lambda: "Fay" in sink.audible, "Fay's audio through a secret Janus")
        finally:
            await connector.close()
            await sink.stop()
            await speaker.leave()
        await asyncio.wait_for(run, 5)

    with janus_server(ns, tmp_path, port=8089, api_secret=api_secret) as server:
        in_netns(ns, lambda: scenario(server))


def test_unreachable_janus_is_transient_and_quick(janus: tuple[NetNs, JanusServer]) -> None:
    ns, server = janus

    async def scenario() -> None:
        connector = JanusConnector.from_url(f"janus://{server.host}:9/{OPEN_ROOM}?pin=zz-9")
        started = time.monotonic()
        with pytest.raises(JanusUnavailable) as info:
            await connector.run(RecordingSink())
        assert time.monotonic() - started < 3
        assert isinstance(info.value, ConnectionError)
        assert str(info.value) == UNREACHABLE  # the one reason, which holds no pin either
        await connector.close()
        await connector.close()  # idempotent

    in_netns(ns, scenario)


def test_destroyed_room_ends_the_run(janus: tuple[NetNs, JanusServer]) -> None:
    ns, server = janus
    url = server.join_url(4242)

    async def scenario() -> None:
        await create_room(url, ROOM_SECRET)
        speaker = await publishing(url, "Dana", sources()[0])
        sink = RecordingSink()
        connector = connector_for(url)
        run = asyncio.create_task(connector.run(sink))
        try:
            await until(lambda: sink.live == {"Dana"}, "Dana's track")
            await destroy_room(url, ROOM_SECRET)
            await asyncio.wait_for(run, 5)
            assert run.result() is None
            assert sink.live == set()
        finally:
            await connector.close()
            await sink.stop()
            await speaker.leave()

    in_netns(ns, scenario)


def test_keepalives_hold_the_session_past_janus_session_timeout(
    janus: tuple[NetNs, JanusServer],
) -> None:
    ns, server = janus
    url = server.join_url(OPEN_ROOM)

    async def scenario() -> None:
        sink = RecordingSink()
        connector = connector_for(url)
        run = asyncio.create_task(connector.run(sink))
        try:
            await until(lambda: sink.joined_count == 1, "joining")
            await asyncio.sleep(SESSION_TIMEOUT * 2)
            assert not run.done()
            assert "sealscribe" in await displays(url)
        finally:
            await connector.close()
        await asyncio.wait_for(run, 5)

    in_netns(ns, scenario)


def test_janus_restart_loses_the_session_as_a_transient_error(
    janus: tuple[NetNs, JanusServer],
) -> None:
    ns, server = janus
    url = server.join_url(OPEN_ROOM)

    async def scenario() -> None:
        speaker = await publishing(url, "Erin", sources()[1])
        sink = RecordingSink()
        connector = connector_for(url)
        run = asyncio.create_task(connector.run(sink))
        second: asyncio.Task[None] | None = None
        try:
            await until(lambda: sink.live == {"Erin"}, "Erin's track")
            await asyncio.to_thread(server.restart)
            # the connection broke (the one generic reason), or the new Janus did not know
            # the session (it names the server)
            where = f"{server.host}:{server.port}"
            with pytest.raises(JanusUnavailable, match=f"^{UNREACHABLE}$|{where}"):
                await asyncio.wait_for(run, 5)
            assert sink.live == set()
            # After the restart the same connector joins again.
            second = asyncio.create_task(connector.run(sink))
            await until(lambda: sink.joined_count == 2, "rejoining after the restart")
            assert "sealscribe" in await displays(url)
        finally:
            await connector.close()
            await sink.stop()
            with contextlib.suppress(Exception):
                await speaker.leave()
        assert second is not None
        await asyncio.wait_for(second, 5)

    in_netns(ns, scenario)


def test_the_text_room_carries_notices_and_answers_commands_to_their_sender(
    janus: tuple[NetNs, JanusServer],
) -> None:
    """With ``?textroom=`` the connector joins the room's chat: a notice reaches a plain
    participant's data channel, a ``/command`` from that participant reaches the handler with
    their display name and the answer is whispered back to them alone; other chatter is left
    alone. A text room that does not exist, or a wrong pin, is a precise refusal."""
    ns, server = janus

    async def scenario() -> None:
        url = server.join_url(OPEN_ROOM, textroom=OPEN_ROOM)
        connector = JanusConnector.from_url(url)
        assert connector.has_chat and connector.describe().endswith(f"?textroom={OPEN_ROOM}")
        asked: list[tuple[str, str]] = []

        async def answer(display: str, text: str) -> str:
            asked.append((display, text))
            return f"done: {text}"

        connector.on_command = answer
        sink = RecordingSink()
        run = asyncio.create_task(connector.run(sink))
        await until(lambda: sink.joined_count == 1, "joining the room and its chat")
        heard: list[ChatMessage] = []
        session = JanusSession(connector.address)
        await session.create()
        alice = TextRoom(session, OPEN_ROOM, None, heard.append, display="Alice")
        await alice.open()
        try:
            assert await connector.notify("Transcription is now ON.")
            await until(lambda: any(m.text == "Transcription is now ON." for m in heard), "notice")
            assert heard[-1].display == "sealscribe" and not heard[-1].whisper
            await alice.say("hello everyone")
            await alice.say("/optout")
            await until(lambda: any(m.text == "done: /optout" for m in heard), "the answer")
            assert asked == [("Alice", "/optout")], "only the command reached the handler"
            assert [m.whisper for m in heard if m.text == "done: /optout"] == [True]
        finally:
            await alice.close()
            await session.destroy()
            await connector.close()
            await asyncio.wait_for(run, 5)

        for bad, why in (
            (server.join_url(OPEN_ROOM, textroom=999), "Janus text room 999 does not exist"),
            (
                server.join_url(PIN_ROOM, pin=ROOM_PIN, textroom=OPEN_ROOM + 7),
                f"Janus text room {OPEN_ROOM + 7} does not exist",
            ),
        ):
            refused = JanusConnector.from_url(bad)
            with pytest.raises(JoinRejected) as info:
                await refused.run(RecordingSink())
            await refused.close()
            assert str(info.value) == why
        # the pin room's chat takes the room's pin
        pinned = JanusConnector.from_url(server.join_url(PIN_ROOM, pin=ROOM_PIN, textroom=PIN_ROOM))
        sink = RecordingSink()
        run = asyncio.create_task(pinned.run(sink))
        await until(lambda: sink.joined_count == 1, "joining the pin room's chat")
        assert await pinned.notify("hello")
        await pinned.close()
        await asyncio.wait_for(run, 5)

    in_netns(ns, scenario)
