"""Interim captions end to end over WHIP with a real worker: text appears while a person is
still speaking, each interim is replaced by newer ones and then by the final, none of it is
left in Redis once the final is stored, and interims stop within a second of a switch-off."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import numpy as np
import pytest

from bench.wer import normalise
from pipeline import services
from pipeline.audio.decode import decode_file
from pipeline.config import Settings
from pipeline.models import Meeting
from pipeline.publish import PcmTrack, WhipPublisher
from pipeline.runtime import Runtime
from pipeline.services.captions import follow_captions
from pipeline.services.transcripts import read_transcript
from pipeline.store import schema
from tests.conftest import shared_data
from tests.harness.api import serve_api
from tests.harness.processes import WorkerProcess, wait_until

pytestmark = [pytest.mark.usefixtures("loopback_ice"), pytest.mark.timeout(300)]

#: fleurs-en-005: about 11.4 s of speech without a pause long enough to end an utterance
LONG_CLIP = "fleurs-en-005.ogg"


@pytest.fixture
def rt(env: dict[str, str]) -> Runtime:
    return Runtime.from_settings(Settings.from_env(env), actor="test")


async def _follow(rt: Runtime, meeting: Meeting, got: list[tuple[float, dict[str, Any]]]) -> None:
    async for caption in follow_captions(rt, meeting, "0"):
        got.append((time.monotonic(), caption.to_dict()))


def _speech_end(pcm: bytes) -> float:
    """Seconds into ``pcm`` of its last loud 10 ms frame."""
    x = np.frombuffer(pcm, "<i2").astype(np.float32)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-3)
    return float((np.nonzero(level > level.max() - 35)[0][-1] + 1) * 0.01)


def test_interims_show_while_speaking_and_give_way_to_the_final(
    rt: Runtime, worker: WorkerProcess
) -> None:
    speech = decode_file(shared_data("fleurs-en") / LONG_CLIP, 60)
    ends_at = _speech_end(speech)
    assert ends_at > 9.5
    tenant, token = services.create_tenant(rt, "acme")
    meeting = services.create_meeting(rt, tenant.id, transcription=True)
    got: list[tuple[float, dict[str, Any]]] = []

    async def main() -> float:
        follower = asyncio.create_task(_follow(rt, meeting, got))
        async with serve_api(rt) as base:
            track = PcmTrack(speech + bytes(2 * 32000))
            pub = WhipPublisher(f"{base}/v1/meetings/{meeting.id}/whip", token, track, "Ana")
            await pub.start()
            while track._start is None:
                await asyncio.sleep(0.01)
            speech_end = track._start + ends_at
            await asyncio.wait_for(track.finished.wait(), 60)
            await asyncio.to_thread(
                wait_until,
                lambda: any(c.get("kind") == "final" for _, c in got),
                60,
                "the final caption",
            )
            await pub.stop()
        await asyncio.sleep(1.0)  # an interim still in a worker would arrive by now
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        return speech_end

    speech_end = asyncio.run(main())
    interims = [(at, c) for at, c in got if c["kind"] == "interim"]
    finals = [(at, c) for at, c in got if c["kind"] == "final"]
    early = [at for at, _ in interims if at < speech_end]
    assert len(early) >= 2, (
        f"{len(early)} interim captions before the speech ended "
        f"({len(interims)} in all, {len(finals)} finals)"
    )
    # each utterance's interims are numbered in order and come before its final
    for at, final in finals:
        mine = [(t, c) for t, c in interims if c["utterance"] == final["utterance"]]
        assert all(t <= at for t, _ in mine), "an interim arrived after its final"
        parts = [c["part"] for _, c in mine]
        assert parts == sorted(parts), parts
    utterances = {c["utterance"] for _, c in interims}
    assert utterances <= {c["utterance"] for _, c in finals}, "an interim was never replaced"
    # the interims were the words being said: the last one shares most words with the final
    last = interims[-1][1]
    final_words = set(
        normalise(" ".join(c["text"] for _, c in finals if c["utterance"] == last["utterance"]))
    )
    interim_words = normalise(last["text"])
    assert interim_words and sum(w in final_words for w in interim_words) >= 0.6 * len(
        interim_words
    ), "the last interim is not what the final says"
    # none of it survives the final
    r = rt.store.redis
    wait_until(lambda: r.llen(schema.CELERY_INTERIM_QUEUE) == 0, 30, "the interim queue drained")
    assert not r.hgetall(schema.meeting_interim_text(meeting.id))
    assert not r.hgetall(schema.meeting_interim(meeting.id))
    entries: Any = r.xrange(schema.meeting_captions(meeting.id))
    assert not [e for e in entries if e[1].get(b"kind") == b"interim"]
    # and the transcript holds finals only
    transcript = read_transcript(rt, meeting.id)
    assert len(transcript) == len(finals)
    counts = rt.store.interims.counts(meeting.id)
    assert counts.get("transcribed", 0) >= len(early), counts


def test_interims_stop_within_a_second_of_a_switch_off(rt: Runtime, worker: WorkerProcess) -> None:
    speech = decode_file(shared_data("fleurs-en") / LONG_CLIP, 60)
    tenant, token = services.create_tenant(rt, "acme")
    meeting = services.create_meeting(rt, tenant.id, transcription=True)
    got: list[tuple[float, dict[str, Any]]] = []

    async def main() -> float:
        follower = asyncio.create_task(_follow(rt, meeting, got))
        async with serve_api(rt) as base:
            track = PcmTrack(speech + bytes(32000))
            pub = WhipPublisher(f"{base}/v1/meetings/{meeting.id}/whip", token, track, "Ben")
            await pub.start()
            await asyncio.to_thread(
                wait_until,
                lambda: any(c["kind"] == "interim" for _, c in got),
                30,
                "a first interim caption",
            )
            await asyncio.to_thread(services.set_transcription, rt, meeting.id, False)
            off = time.monotonic()
            await asyncio.wait_for(track.finished.wait(), 60)
            await asyncio.sleep(2.0)
            await pub.stop()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        return off

    off = asyncio.run(main())
    late = [round(at - off, 2) for at, c in got if c["kind"] == "interim" and at > off + 1.0]
    assert not late, f"interim captions this long after the switch: {late}"
    assert not [c for _, c in got if c["kind"] == "final"], "a final of an utterance cut off"
    counts = rt.store.interims.counts(meeting.id)
    assert counts.get("transcribed", 0) >= 1, counts
    assert not rt.store.redis.hgetall(schema.meeting_interim(meeting.id))
