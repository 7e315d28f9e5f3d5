"""Guarantee 2: off means off. While transcription is off for a meeting, or a participant
opted out, their audio is not stored, not queued and not transcribed; switching off takes
effect within one second, also after the switch was flapped on and off; what was already
queued when it went off is purged untranscribed."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import aiohttp

from pipeline import services
from pipeline.capture.policy import MeetingPolicy
from pipeline.models import Meeting
from pipeline.store import schema
from pipeline.store.connection import as_str
from tests.harness.processes import wait_until
from tests.privacy.deployment import Deployment
from tests.privacy.live import asettled, counts, participant, settled, words
from tests.privacy.sampler import Sampler
from tests.privacy.speech import PHRASES, require_espeak, speak


def test_nothing_is_kept_from_off_periods_or_opted_out_participants(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    api = deployment.api(deployment.tenant("a"))
    r = deployment.redis()
    m = api.meeting(transcription=True)
    api.consent(m, "Olive", transcribe=False)  # Olive opted out before she joins

    earlier: set[str] = set()  # the segments transcribed before the switch went off

    async def meeting() -> tuple[float, float, float]:
        async with participant(api, m, "Alice") as alice, participant(api, m, "Olive") as olive:
            await asyncio.gather(
                alice.says(PHRASES["Flintwick"]), olive.says(PHRASES["Kensington"])
            )
            await asettled(r, m, transcripts=1)
            earlier.update(as_str(s) for s in r.zrange(schema.meeting_transcript(m), 0, -1))
            # Flap the switch: off, on, off, on, off in quick succession, ending off.
            flap = time.time()
            for state in (False, True, False, True, False):
                await asyncio.to_thread(api.switch, m, state)
            off = time.time()
            await asyncio.sleep(1.0)  # the promise: off takes effect within a second
            async with participant(api, m, "Oscar") as oscar:  # joins while it is off
                await asyncio.gather(
                    oscar.says(PHRASES["Pemberton"]),
                    alice.says(PHRASES["Copperfield"]),
                    olive.says(PHRASES["Kensington"]),
                )
            await asyncio.sleep(1.0)  # what capture had sealed would be stored by now
            on = time.time()
            await asyncio.to_thread(api.switch, m, True)
            await asyncio.sleep(1.0)
            await alice.says(PHRASES["Wimbledon"])
        await asettled(r, m, transcripts=2)
        return flap, off, on

    flap, off, on = asyncio.run(meeting())
    # a flap, not five separate changes (they take a few hundred ms on an idle machine)
    assert off - flap < 5.0, f"the five switches took {off - flap:.2f} s"
    said = words(api.transcript(m))
    assert {"flintwick", "wimbledon"} <= said, f"on before and after: {said}"
    assert not said & {"copperfield", "kensington", "pemberton"}, said

    seen = sampler.segments(m)
    assert {s.participant for s in seen} == {"Alice"}, (
        f"stored or queued for someone who opted out or spoke while off: {seen}"
    )
    # (the sampler may first see a transcript stored before the flap only after it, when a
    # full scan of its held it up: that one was not kept while off)
    while_off = [s for s in seen if off < s.at < on and s.segment_id not in earlier]
    assert not while_off, f"stored or queued while transcription was off: {while_off}"
    # Nothing from an off period even reached a worker: it never had to purge anything.
    entries = [e for e in api.audit() if e["meeting"] == m]
    assert not [e for e in entries if e["action"] == "purge"], entries
    assert [e["outcome"] for e in entries if e["action"] == "transcription"] == [
        "off",
        "on",
        "off",
        "on",
        "off",
        "on",
    ]
    report = api.ok("GET", f"/v1/meetings/{m}/privacy")
    assert report["purged"] == {} and report["audio_pending"] == 0, report
    assert report["consent_changes"][0][1] == "Olive:opted-out", report


def test_switching_off_purges_what_is_already_queued(
    deployment: Deployment, sampler: Sampler
) -> None:
    require_espeak()
    local = deployment.need_local("pausing the workers")
    api = deployment.api(deployment.tenant("a"))
    r = deployment.redis()
    m = api.meeting(transcription=True)

    async def speak() -> None:
        async with participant(api, m, "Alice") as alice:
            await alice.says(PHRASES["Copperfield"])

    with local.workers_paused():
        asyncio.run(speak())
        wait_until(lambda: counts(r, m)[0] >= 1, 15, "sealed audio stored")
        queued = settled(r, m, transcripts=0, pending=counts(r, m)[0])[0]
        api.switch(m, False)
    assert settled(r, m, transcripts=0) == (0, 0)
    entries = [e for e in api.audit() if e["meeting"] == m]
    assert [e["outcome"] for e in entries if e["action"] == "purge"] == [
        "transcription-off"
    ] * queued, entries
    assert not [
        e for e in entries if e["action"] == "unwrap" and e["actor"].startswith("worker")
    ], "the worker opened what it had to purge"
    assert [s.participant for s in sampler.segments(m, "queued")], "the task was queued"


def test_a_slow_policy_read_cannot_undo_a_later_switch(deployment: Deployment) -> None:
    """The capture edge re-reads the policy on every switch event and also every two
    seconds. A periodic read that began before a switch to off and returns after the
    event's read must not win: capture would store audio while it is off."""
    local = deployment.need_local("a policy watcher in this process")
    t = deployment.tenant("a")
    meeting = services.create_meeting(local.rt, t.id, transcription=True)
    policy = MeetingPolicy(local.rt, meeting)
    real = policy._read
    started = threading.Event()

    def slow_first_read() -> tuple[Meeting, bool]:
        got = real()  # read while it is still on ...
        if not started.is_set():
            started.set()
            time.sleep(0.3)  # ... and come back late (a busy thread pool)
        return got

    policy._read = slow_first_read  # type: ignore[method-assign]

    async def race() -> None:
        periodic = asyncio.create_task(policy.refresh())
        await asyncio.to_thread(started.wait, 5)
        services.set_transcription(local.rt, meeting.id, False)
        await policy.refresh()  # the switch event's read
        await periodic

    asyncio.run(race())
    assert not policy.transcribes("Alice"), "a stale read turned capture back on"


#: said around a canary so that they make one utterance with it (speak() leads each text
#: with 0.3 s of silence, shorter than the pause that ends an utterance)
FILLER = "We will now go through the numbers for this quarter together"


def test_an_utterance_switched_off_midway_shows_nothing_said_after_the_switch(
    deployment: Deployment, sampler: Sampler
) -> None:
    """Interim captions obey the switch as finals do: a canary said in an utterance that
    was switched off midway is in no interim caption, no final and no transcript, and no
    interim audio is sealed from a second after the switch on."""
    require_espeak()
    api = deployment.api(deployment.tenant("a"))
    m = api.meeting(transcription=True)
    assert api.token is not None
    captions: list[tuple[float, dict[str, Any]]] = []

    async def follow() -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                api.captions(m), headers={"Authorization": f"Bearer {api.token}"}
            ) as ws,
        ):
            async for message in ws:
                captions.append((time.time(), json.loads(message.data)))

    async def meeting() -> float:
        follower = asyncio.create_task(follow())
        async with participant(api, m, "Alice") as alice:
            filler = speak(FILLER)
            before = [alice.say(filler), alice.say(filler)]
            after = [alice.say(filler), alice.say(speak(PHRASES["Copperfield"]))]
            await before[-1].wait()
            off = time.time()
            await asyncio.to_thread(api.switch, m, False)
            await after[-1].wait()
        await asyncio.sleep(3.0)  # whatever a worker still held would be shown by now
        follower.cancel()
        return off

    off = asyncio.run(meeting())
    interims = [(at, c) for at, c in captions if c.get("kind") == "interim"]
    assert [at for at, _ in interims if at < off], (
        f"no interim caption while Alice spoke before the switch: {len(captions)} captions"
    )
    shown = set().union(*(words(c.get("text") or "") for _, c in captions))
    assert "copperfield" not in shown, "a word said after the switch was shown"
    assert "copperfield" not in words(api.transcript(m))
    late = [round(at - off, 2) for at, _ in interims if at > off + 1.0]
    assert not late, f"interim captions shown this long after the switch: {late}"
    sealed_late = [s for s in sampler.segments(m, "interim") if s.at > off + 1.0]
    assert not sealed_late, f"interim audio stored after the switch: {sealed_late}"
