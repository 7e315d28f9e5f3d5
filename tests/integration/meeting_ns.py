"""A whole sealscribe deployment inside a test network namespace, for end-to-end Janus tests.

:func:`meeting_stack` creates a namespace (:mod:`tests.integration.netns`) and starts in it a
real Janus (:mod:`tests.integration.janus`), a private ``redis-server`` on the namespace's own
127.0.0.1, a real ``sealscribe worker`` and a real ``sealscribe bots``, all sharing a private
``SEALSCRIBE_HOME`` and temp directory. Nothing listens outside the namespace, and nothing
the test machine's shared Redis holds is touched. Everything is stopped and the namespace
deleted afterwards, whatever happened.

The test process talks to the same Redis through :attr:`MeetingStack.rt`; it must do so from
inside the namespace (:meth:`NetNs.entered`), since 127.0.0.1 there is not the host's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from keys.types import KeyUse, Purpose
from pipeline import faults, services
from pipeline.audio.decode import decode_file
from pipeline.bot.ice import configure_ice
from pipeline.bot.publish import PcmTrack
from pipeline.config import Settings
from pipeline.models import AudioSegment, BotState, BotStatus, Meeting, TranscriptSegment
from pipeline.runtime import Runtime
from pipeline.sealing import open_audio
from pipeline.services.bots import bot_status, join_meeting, leave_meeting
from tests.integration.janus import DEFAULT_ROOMS, JanusServer, Room, janus_server, require_janus
from tests.integration.netns import NetNs, network_namespace, require_netns
from tests.integration.publishers import Publisher
from tests.integration.workers import WorkerProcess, use_broker

__all__ = [
    "SECOND",
    "BotsProcess",
    "MeetingStack",
    "RedisServer",
    "SealedAudio",
    "StateTrail",
    "at_ms",
    "drained",
    "hears",
    "leave_all",
    "meeting_stack",
    "paused",
    "recall_bot",
    "require_redis_server",
    "run",
    "send_bot",
    "speaking",
    "talk",
    "until",
]

T = TypeVar("T")

REDIS_PORT = 6390  # inside the namespace: any port is free there


def require_redis_server() -> None:
    """Skip (with the reason) where the redis-server binary is absent."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is missing (Debian package redis-server)")


class RedisServer:
    """A throw-away ``redis-server`` without persistence; start it inside the namespace."""

    def __init__(self, workdir: Path, port: int = REDIS_PORT) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self.proc.returncode}; see {self.log}"
                    )
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer within {timeout} s")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


class BotsProcess:
    """A real ``sealscribe bots`` subprocess (start it inside the namespace)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "bots"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self) -> None:
        """SIGTERM (the service hands its bots off and leaves the rooms), then SIGKILL."""
        _stop(self.proc, timeout=20)


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    """Stop a process started in its own session, with everything in its group."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextlib.contextmanager
def paused(worker: WorkerProcess) -> Iterator[None]:
    """Stop the worker (SIGSTOP to its whole group) for the body, so that every sealed audio
    segment the bot stores meanwhile stays in Redis to be inspected; it resumes afterwards
    and works through them."""
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(worker.proc.pid, signal.SIGCONT)


@dataclass
class MeetingStack:
    ns: NetNs
    janus: JanusServer
    redis: RedisServer
    #: the environment of the subprocesses (and of CLI calls a test makes)
    env: dict[str, str]
    rt: Runtime
    worker: WorkerProcess
    bots: BotsProcess
    workdir: Path

    def url(self, room: int, pin: str | None = None) -> str:
        return self.janus.join_url(room, pin)

    def alive(self) -> None:
        """Fail with the log's tail if a subprocess died."""
        for name, proc, log in (
            ("worker", self.worker.proc, self.worker.log),
            ("bots", self.bots.proc, self.bots.log),
        ):
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"sealscribe {name} exited with {proc.returncode}:\n{tail}")


@contextlib.contextmanager
def meeting_stack(workdir: Path, rooms: Sequence[Room] = DEFAULT_ROOMS) -> Iterator[MeetingStack]:
    """Namespace, Janus (``rooms``), private Redis, worker and bot service, all started;
    stopped and deleted afterwards. Points this process's ICE at the namespace and its Celery
    client at the private Redis meanwhile."""
    require_netns()
    require_janus()
    require_redis_server()
    home, tmp = workdir / "home", workdir / "tmp"
    for folder in (home, tmp):
        folder.mkdir(parents=True)
    # Stopped in reverse: the bot service (it leaves its rooms), the worker, Redis, then
    # Janus, then the namespace (which kills anything still in it).
    with (
        network_namespace() as ns,
        janus_server(ns, _mkdir(workdir / "janus"), rooms=rooms) as janus,
        contextlib.ExitStack() as cleanup,
    ):
        redis_server = RedisServer(workdir)
        cleanup.callback(redis_server.stop)
        with ns.entered():
            redis_server.start()
        # Nothing of the caller's own sealscribe configuration (a Transit address, STUN
        # servers) leaks into the namespace's processes; injected faults do (tests/faults).
        inherited = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("SEALSCRIBE_") or k in (faults.FAULTS_VAR, faults.ALLOW_VAR)
        }
        env = {
            **inherited,
            "SEALSCRIBE_REDIS_URL": redis_server.url,
            "SEALSCRIBE_HOME": str(home),
            "SEALSCRIBE_KEY_PROVIDER": "local",
            "SEALSCRIBE_ICE_HOSTS": ns.peer_addr,
            "TMPDIR": str(tmp),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "200",
        }
        # WorkerProcess starts from os.environ: blank what is not ours (empty means unset).
        extra = {
            k: env.get(k, "")
            for k in {*env, *os.environ}
            if k.startswith("SEALSCRIBE_") or k == "TMPDIR"
        }
        with ns.entered():
            worker = WorkerProcess(home, workdir / "worker.log", (), **extra)
            cleanup.callback(worker.stop)
            bots = BotsProcess(env, workdir / "bots.log")
            cleanup.callback(bots.stop)
        rt = Runtime.from_settings(Settings.from_env(env), actor="test")
        cleanup.callback(rt.store.redis.close)
        configure_ice(ns.peer_addr)
        cleanup.callback(configure_ice)
        cleanup.callback(use_broker, use_broker(redis_server.url))
        yield MeetingStack(ns, janus, redis_server, env, rt, worker, bots, workdir)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- waiting on the bot --------------------------------------------------------------------


async def until(
    predicate: Callable[[], bool], what: str, timeout: float = 20.0, poll: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(poll)


async def send_bot(rt: Runtime, meeting_id: str, url: str, timeout: float = 20.0) -> BotStatus:
    """Ask for a bot (as the API and CLI do) and wait until it is in the meeting."""
    join_meeting(rt, meeting_id, url)
    status = bot_status(rt, meeting_id)
    deadline = time.monotonic() + timeout
    while status.state is not BotState.IN_MEETING:
        if status.state.final or time.monotonic() > deadline:
            raise AssertionError(f"the bot did not get into {url}: {status}")
        await asyncio.sleep(0.1)
        status = bot_status(rt, meeting_id)
    return status


async def recall_bot(rt: Runtime, meeting_id: str, timeout: float = 20.0) -> BotStatus:
    """Call the bot back and wait until it left (it stores what it sealed before that)."""
    leave_meeting(rt, meeting_id)
    status = bot_status(rt, meeting_id)
    deadline = time.monotonic() + timeout
    while not status.state.final:
        if time.monotonic() > deadline:
            raise AssertionError(f"the bot did not leave: {status}")
        await asyncio.sleep(0.1)
        status = bot_status(rt, meeting_id)
    assert status.state is BotState.LEFT, status
    return status


class StateTrail:
    """Records every (state, reason) a meeting's bot goes through, polling every 50 ms
    (each backoff step lasts at least 0.5 s, so none is missed)."""

    def __init__(self, rt: Runtime, meeting_id: str) -> None:
        self.rt, self.meeting_id = rt, meeting_id
        self.seen: list[tuple[BotState, str]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> StateTrail:
        self._task = asyncio.create_task(self._follow())
        return self

    async def _follow(self) -> None:
        while True:
            status = self.rt.store.bots.get(self.meeting_id)
            if status is not None and (
                not self.seen or self.seen[-1] != (status.state, status.reason)
            ):
                self.seen.append((status.state, status.reason))
            await asyncio.sleep(0.05)

    @property
    def last(self) -> tuple[BotState, str] | None:
        return self.seen[-1] if self.seen else None

    def states(self) -> list[BotState]:
        return [state for state, _ in self.seen]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


# -- participants, stored audio and transcripts --------------------------------------------

JFK = Path(__file__).resolve().parents[2] / "pipeline" / "demo_data" / "jfk.ogg"
SECOND = 32000  # bytes of 16 kHz s16 mono


def run(scenario: Coroutine[Any, Any, T], timeout: float = 150.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await scenario

    return asyncio.run(bounded())


def talk(seconds: float) -> bytes:
    """About ``seconds`` of talking: 2.5 s pieces of the jfk clip, each followed by a second
    of silence, so that an utterance ends (and is stored) every 3.5 s."""
    jfk = decode_file(JFK, 60)
    piece = int(2.5 * SECOND) // 2 * 2
    pieces = [jfk[i : i + piece] + bytes(SECOND) for i in range(0, len(jfk) - piece + 1, piece)]
    out = b""
    while len(out) < seconds * SECOND:
        out += b"".join(pieces)
    return out


def at_ms(meeting: Meeting, t: float) -> int:
    """A wall-clock time as milliseconds from the meeting's start (segments' time base)."""
    return int((t - meeting.created) * 1000)


class SealedAudio:
    """Opens the sealed audio segments a meeting has stored (the test holds the tenant's
    key, as the worker would)."""

    def __init__(self, rt: Runtime, meeting: Meeting) -> None:
        self.rt, self.meeting = rt, meeting
        self.key = services.data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)

    def segments(self) -> list[AudioSegment]:
        out = []
        for sid in self.rt.store.segments.pending_audio(self.meeting.id):
            sealed = self.rt.store.segments.get_audio(self.meeting.id, sid)
            if sealed is None:
                continue
            segment = open_audio(self.key, self.meeting.tenant_id, sealed)
            middle = len(segment.pcm) // 2 // 2 * 2
            assert segment.pcm[middle : middle + 64] not in sealed.sealed  # no samples in clear
            out.append(segment)
        return out

    def of(self, participant: str) -> list[AudioSegment]:
        return [s for s in self.segments() if s.participant_id == participant]


def drained(rt: Runtime, meeting_id: str, timeout: float = 120.0) -> list[TranscriptSegment]:
    """Wait until the worker has worked through the meeting's audio; its transcript."""
    deadline = time.monotonic() + timeout
    while rt.store.segments.pending_count(meeting_id):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{rt.store.segments.pending_count(meeting_id)} segments "
                f"still pending after {timeout:g} s"
            )
        time.sleep(0.2)
    return services.read_transcript(rt, meeting_id)


async def speaking(
    url: str, name: str, pcm: bytes, speed: float = 1.0
) -> tuple[Publisher, PcmTrack]:
    """A participant joined and talking (from memory); silent once ``pcm`` is said."""
    publisher = Publisher(url, name)
    try:
        return publisher, await publisher.publish_pcm(pcm, speed=speed)
    except BaseException:
        await leave_all([publisher])
        raise


async def leave_all(publishers: list[Publisher]) -> None:
    for publisher in publishers:
        with contextlib.suppress(Exception):
            await publisher.leave()


def hears(rt: Runtime, meeting_id: str, *names: str) -> bool:
    status = bot_status(rt, meeting_id)
    return status.state is BotState.IN_MEETING and status.participants == tuple(sorted(names))
