"""``sealscribe demo``: the whole product on this machine, end to end.

A tenant with its own key; a meeting (transcription off by default, then switched on); a
Celery worker with tiny.en (started here unless one runs); the HTTP API on loopback; and a
bundled four-person meeting (an AMI excerpt, see ``demo_data/NOTICE.md``) published as four
participants over real WebRTC (WHIP, Opus) into it. Each utterance is sealed at capture,
transcribed by the worker and printed as a live caption with its speaker's name. Then: the
transcript opened with the customer's key, a purge report (no audio left; a word of the
transcript searched for as a canary in Redis, logs, data and temp directories), the audit
chain verified, and a crypto-shredding delete. With ``serve`` the API and console stay up.

If Redis is not reachable at ``SEALSCRIBE_REDIS_URL``, the CLI starts a private one
(:func:`pipeline.processes.private_redis`; ``redis-server`` must be installed).

The demo publishes to itself on loopback (or ``SEALSCRIBE_ICE_HOSTS``), whose ICE candidates
the egress policy refuses by default (:mod:`pipeline.egress`): so that it works out of the
box, its own process lets exactly those addresses through as well, for as long as it runs;
``SEALSCRIBE_BOT_ALLOW`` is otherwise unchanged and nothing else is widened.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import egress, services
from pipeline.aio import run
from pipeline.audio.decode import decode_file
from pipeline.errors import Conflict
from pipeline.formats import render
from pipeline.net import free_port
from pipeline.processes import worker_process
from pipeline.runtime import Runtime
from pipeline.scan import scan
from pipeline.services.captions import follow_captions
from pipeline.services.meetings import finish_shreds
from pipeline.services.transcripts import read_transcript
from pipeline.store import schema

__all__ = ["DEMO_MEETING", "DemoResult", "run_demo"]

DATA = Path(__file__).with_name("demo_data")
#: the bundled meeting: participant name -> their headset track
DEMO_MEETING = {f"Speaker {x}": DATA / f"ami-es2004-{x}.ogg" for x in "ABCD"}


@dataclass
class DemoResult:
    tenant_id: str
    meeting_id: str
    participants: list[str]
    seconds: float
    captions: int
    segments: int
    transcript: str
    audio_left: int
    canary: str
    plaintext_found: int
    audit_entries: int
    audit_intact: bool
    primary_version: int
    readable_after_delete: bool | None
    url: str | None = None
    token: str | None = field(default=None, repr=False)


def _canary(text: str) -> str:
    """A word that was spoken and transcribed: it must now exist nowhere in the clear."""
    words = sorted(set(re.findall(r"[A-Za-z]{6,}", text)), key=lambda w: (-len(w), w))
    return words[0] if words else "sealscribe-canary"


def run_demo(
    rt: Runtime,
    say: Callable[[str], None] = print,
    seconds: float | None = None,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8080,
) -> DemoResult:
    """Run the demo; this process and the worker it starts use a private temporary
    directory, which the plaintext scan searches and which is removed afterwards."""
    temp = Path(tempfile.mkdtemp(prefix="sealscribe-demo-"))
    previous = tempfile.tempdir
    tempfile.tempdir = str(temp)
    # The demo's publishers offer its own API candidates on this machine's loopback (or on
    # SEALSCRIBE_ICE_HOSTS), which the egress policy refuses by default: this process lets
    # exactly those addresses through as well, and nothing else changes.
    egress.configure(rt.settings.egress.allowing(_demo_ice_hosts(rt).split(",")))
    try:
        return run(_run(rt, say, seconds, serve, host, port, temp))
    finally:
        egress.configure(None)
        tempfile.tempdir = previous
        shutil.rmtree(temp, ignore_errors=True)


def _demo_ice_hosts(rt: Runtime) -> str:
    """The addresses the demo's WebRTC peers meet on: loopback unless configured."""
    return rt.settings.ice_hosts or "127.0.0.1"


async def _run(
    rt: Runtime,
    say: Callable[[str], None],
    seconds: float | None,
    serve: bool,
    host: str,
    port: int,
    temp: Path,
) -> DemoResult:
    import uvicorn

    from pipeline.api.app import create_app
    from pipeline.capture.ice import configure_ice
    from pipeline.publish import PcmTrack, WhipPublisher

    configure_ice(_demo_ice_hosts(rt))
    tenant, token = services.create_tenant(rt, "Demo tenant")
    say(f"1. tenant {tenant.id} created with its own key (provider: {tenant.key_provider})")
    meeting = services.create_meeting(rt, tenant.id)
    say(
        f"2. meeting {meeting.id}: transcription is "
        f"{'on' if meeting.transcription else 'OFF'} by default; the customer switches it on"
    )
    services.set_transcription(rt, meeting.id, True)

    audio = {name: decode_file(path, 600) for name, path in DEMO_MEETING.items()}
    if seconds is not None:
        audio = {name: pcm[: int(seconds * 16000) * 2] for name, pcm in audio.items()}
    length = max(len(pcm) for pcm in audio.values()) / 32000

    with worker_process(
        rt.settings, rt.settings.log_dir / "demo-worker.log", extra_env={"TMPDIR": str(temp)}
    ) as started:
        say(
            "3. "
            + (
                "started a Celery worker (tiny.en)"
                if started
                else "using the Celery worker already running"
            )
        )
        api_port = port if serve else free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(rt), host=host, port=api_port, log_config=None, access_log=False
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            if serving.done():
                serving.result()
                raise Conflict(f"the API could not listen on {host}:{api_port}")
            await asyncio.sleep(0.05)
        base = f"http://{host}:{api_port}"
        captions = 0

        async def follow() -> None:
            nonlocal captions
            async for caption in follow_captions(rt, meeting, "0"):
                s = caption.segment
                captions += 1
                if s.text.strip():  # a segment with no words (a cough, a click) shows nothing
                    say(f"   [{s.start_ms / 1000:6.1f} s] {s.participant_id}: {s.text.strip()}")

        follower = asyncio.create_task(follow())
        publishers: list[WhipPublisher] = []
        try:
            say(
                f"4. publishing a {length:.0f} s meeting as {len(audio)} participants over "
                "WebRTC (WHIP, Opus); live captions as the worker stores them:"
            )
            for name, pcm in audio.items():
                pub = WhipPublisher(
                    f"{base}/v1/meetings/{meeting.id}/whip", token, PcmTrack(pcm), name
                )
                await pub.start()
                publishers.append(pub)
            for pub in publishers:
                assert isinstance(pub.track, PcmTrack)
                await pub.track.finished.wait()
            for pub in publishers:
                await pub.stop()
            publishers.clear()
            deadline = time.monotonic() + 600
            while rt.store.segments.pending_count(
                meeting.id
            ) or captions < rt.store.segments.transcript_count(meeting.id):
                if time.monotonic() > deadline:
                    raise Conflict(
                        "the worker did not finish in 10 minutes; see "
                        f"{rt.settings.log_dir / 'demo-worker.log'}"
                    )
                await asyncio.sleep(0.2)
        finally:
            for pub in publishers:
                await pub.stop()
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
            if not serve:
                server.should_exit = True
                await serving

        segments = read_transcript(rt, meeting.id)
        text = render(segments, "txt")
        say(f"5. transcript ({len(segments)} segments), opened with the customer's key:")
        say("   " + text.strip().replace("\n", "\n   "))
        report = services.rotate_keys(rt, tenant.id)
        services.retire_keys(rt, tenant.id, report.primary_version)
        if read_transcript(rt, meeting.id) != segments:
            raise Conflict("the transcript did not survive key rotation")
        say(
            f"6. key rotated to version {report.primary_version} ({report.rewrapped} data "
            "keys rewrapped, no content re-encrypted): the transcript still opens"
        )
        audio_left = sum(1 for _ in rt.store.redis.scan_iter(schema.audio(meeting.id, "*")))
        canary = _canary(text)
        found = scan(rt.store.redis, canary, rt.settings.home, temp_dir=temp)
        say(
            f"7. purge report: audio segments left: {audio_left}; canary {canary!r} (a "
            "transcribed word) in Redis, Celery messages, logs, data and temp directories: "
            + ("found nowhere" if not found else f"FOUND in {len(found)} places")
        )
        verdict = services.audit_verify(rt, tenant.id)
        say(
            f"8. audit log: {verdict.entries} hash-chained entries, "
            f"{'intact' if verdict.ok else 'TAMPERED'}"
        )
        result = DemoResult(
            tenant.id,
            meeting.id,
            sorted(audio),
            round(length, 1),
            captions,
            len(segments),
            text,
            audio_left,
            canary,
            len(found),
            verdict.entries,
            verdict.ok,
            report.primary_version,
            None,
        )
        if serve:
            result.url, result.token = base, token
            say(f"9. serving the API and console at {base}/ (token: {token}); Ctrl-C stops")
            await _until_interrupted()
            server.should_exit = True
            await serving
            return result
    services.delete_meeting(rt, meeting.id)
    # What a worker does next (the demo's own worker has stopped): rotate, then retire the
    # versions that wrapped the deleted meeting's keys.
    finish_shreds(rt, tenant.id)
    result.readable_after_delete = bool(rt.store.segments.transcript(meeting.id))
    result.primary_version = services.key_status(rt, tenant.id).status.primary_version
    say("9. meeting deleted: data keys shredded, records gone, old key versions retired")
    return result


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
