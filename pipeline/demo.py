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

Interim captions: when stdout is a terminal, each speaker still speaking has a live line
(dimmed, under the printed captions) with the words so far of their utterance, updated as
the worker transcribes more and replaced by the utterance's final caption line. When stdout
is not a terminal (a pipe, a log, a test), only final captions are printed, one line each,
so the output is the same as without interims (``interims=`` overrides the choice).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rich.cells import cell_len

from pipeline import egress, services
from pipeline.aio import run
from pipeline.audio.decode import decode_file
from pipeline.errors import Conflict
from pipeline.formats import render
from pipeline.models import TranscriptSegment
from pipeline.net import free_port
from pipeline.processes import worker_process
from pipeline.runtime import Runtime
from pipeline.scan import scan
from pipeline.services.captions import Caption, follow_captions
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


def _caption_line(s: TranscriptSegment) -> str:
    return f"   [{s.start_ms / 1000:6.1f} s] {s.participant_id}: {s.text.strip()}"


def _fit(line: str, width: int) -> str:
    """``line`` in at most ``width`` terminal cells, its control characters dropped; a long
    one keeps its speaker and its newest words (what was said last)."""
    line = "".join(ch for ch in line if ch.isprintable())
    if cell_len(line) <= width:
        return line
    head = line[: line.find(": ") + 2][: max(0, width - 2)]
    tail = line[len(head) :]
    while tail and cell_len(head) + 1 + cell_len(tail) > width:
        tail = tail[1:]
    return head + "…" + tail


#: ANSI: the cursor up one line, and that line cleared; dim italic; back to normal
_UP_CLEAR, _DIM, _PLAIN = "\x1b[1A\x1b[2K", "\x1b[2;3m", "\x1b[0m"


class _CaptionView:
    """The demo's captions: each final through ``say``, one line each (as before interims
    existed); with ``interims`` (a terminal), also one live line per speaker still speaking,
    under the printed captions, showing the newest interim of their utterance until its final
    is printed in its stead. The live lines are erased before anything is printed through
    ``say`` and drawn again after it, so they always stay at the bottom."""

    def __init__(
        self, say: Callable[[str], None], interims: bool, out: TextIO | None = None
    ) -> None:
        self.say = say
        self.interims = interims
        self.out = out if out is not None else sys.stdout
        #: participant -> the newest interim of the utterance they are speaking
        self.speaking: dict[str, TranscriptSegment] = {}
        #: live lines on the screen now (the cursor is at the start of the line below them)
        self.drawn = 0

    def show(self, caption: Caption) -> None:
        s = caption.segment
        newest = self.speaking.get(s.participant_id)
        if caption.kind == "interim":
            if not self.interims or (newest and (newest.seq, newest.part) >= (s.seq, s.part)):
                return
            self.speaking[s.participant_id] = s
            self._draw()
            return
        if newest is not None and newest.seq <= s.seq:  # this utterance (or one never final)
            del self.speaking[s.participant_id]
        if s.text.strip():  # a segment with no words (a cough, a click) shows nothing
            self._erase()
            self.say(_caption_line(s))
        self._draw()

    def stop(self) -> None:
        """Erase the live lines (what is printed next goes where they were)."""
        self.speaking.clear()
        self._erase()

    def _erase(self) -> None:
        if self.drawn:
            self.out.write(_UP_CLEAR * self.drawn)
            self.out.flush()
            self.drawn = 0

    def _draw(self) -> None:
        if not self.interims:
            return
        self._erase()
        # one cell short of the width: a line that fills it would wrap on some terminals
        width = shutil.get_terminal_size().columns - 1
        for s in sorted(self.speaking.values(), key=lambda s: s.start_ms):
            self.out.write(_DIM + _fit(_caption_line(s) + " …", width) + _PLAIN + "\n")
        self.drawn = len(self.speaking)
        self.out.flush()


def run_demo(
    rt: Runtime,
    say: Callable[[str], None] = print,
    seconds: float | None = None,
    serve: bool = False,
    host: str = "127.0.0.1",
    port: int = 8080,
    interims: bool | None = None,
) -> DemoResult:
    """Run the demo; this process and the worker it starts use a private temporary
    directory, which the plaintext scan searches and which is removed afterwards.

    ``interims``: show interim captions on live lines (None: when stdout is a terminal)."""
    if interims is None:
        interims = sys.stdout.isatty()
    temp = Path(tempfile.mkdtemp(prefix="sealscribe-demo-"))
    previous = tempfile.tempdir
    tempfile.tempdir = str(temp)
    # The demo's publishers offer its own API candidates on this machine's loopback (or on
    # SEALSCRIBE_ICE_HOSTS), which the egress policy refuses by default: this process lets
    # exactly those addresses through as well, and nothing else changes.
    egress.configure(rt.settings.egress.allowing(_demo_ice_hosts(rt).split(",")))
    try:
        return run(_run(rt, say, seconds, serve, host, port, temp, interims))
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
    interims: bool = False,
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
        captions = 0  # finals (interims are a preview of them)
        view = _CaptionView(say, interims)

        async def follow() -> None:
            nonlocal captions
            async for caption in follow_captions(rt, meeting, "0"):
                captions += caption.kind == "final"
                view.show(caption)

        publishers: list[WhipPublisher] = []
        say(
            f"4. publishing a {length:.0f} s meeting as {len(audio)} participants over "
            "WebRTC (WHIP, Opus); live captions as the worker stores them"
            + (" (grey: still being spoken):" if interims else ":")
        )
        follower = asyncio.create_task(follow())
        # the headsets were recorded together: they start together, so that a voice one of
        # them picks up from the next person lines up with that person's own track
        together = asyncio.Event()
        try:
            for name, pcm in audio.items():
                pub = WhipPublisher(
                    f"{base}/v1/meetings/{meeting.id}/whip",
                    token,
                    PcmTrack(pcm, gate=together),
                    name,
                )
                await pub.start()
                publishers.append(pub)
            together.set()
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
            view.stop()
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
