"""Live-caption latency through the whole path: publisher -> WebRTC (WHIP, Opus) -> capture
(segment, seal) -> Redis -> Celery worker (tiny.en) -> caption WebSocket.

Latency of an utterance = the moment its final caption arrives on the WebSocket minus the
moment the publisher sent the last sample of its speech. Interim captions (text of the
utterance in progress) give two more figures: the interim lead, when any text of an utterance
first appeared relative to the end of its speech (negative: while the person still speaks),
and the refresh interval, the time between successive interims of one utterance. Each
participant publishes the ten fleurs-en clips with 1.5 s of silence between them (one
utterance each), so every utterance end is known exactly; captions are matched to
utterances by their time in the meeting.

    .venv/bin/python -m bench.latency [--participants 1,4,16] [--clips 10] [--whisperlive]

Runs its own API (``sealscribe serve``) and worker subprocesses against a Redis database it
flushes (``--redis-url``, default db 12).

``--whisperlive`` then sends the same participants' audio, with the same staggering, through
WhisperLive (its faster-whisper backend on the same tiny.en directory; ``bench/whisperlive.py``,
installed apart by ``bench/setup-whisperlive``), one WebSocket per participant, in real time,
and measures it with the same definition: its caption of an utterance is final when the last
segment matched to it arrives marked ``completed`` (ours are always final); its partial
latency is when text overlapping the utterance first appears, completed or not (negative when
it shows before the utterance ends). ``--end-silence-ms``, ``--max-segment-ms`` and
``--beam-size`` set our segmenting and decoding knobs for the API and worker subprocesses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import redis

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GAP_S = 1.5
TAIL_S = 1.5  # PcmTrack's silence after the program, before it reports finished
WAIT_S = 120  # how long captions may take once the publishers are done


@dataclass
class Utterance:
    participant: str
    start_s: float  # speech start within the participant's stream
    end_s: float  # speech end within the stream
    sent_end: float = 0.0  # wall clock: last speech sample sent
    caption_at: float | None = None  # its (last) final caption
    first_text_at: float | None = None  # its first caption, interim or final
    interims: list[float] = field(default_factory=list)  # when each interim arrived


def speech_bounds(pcm: bytes, rate: int = 16000) -> tuple[float, float]:
    """First and last 10 ms frame within 35 dB of the clip's loudest (its speech)."""
    x = np.frombuffer(pcm, "<i2").astype(np.float32)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-3)
    loud = np.nonzero(level > level.max() - 35)[0]
    return loud[0] * 0.01, (loud[-1] + 1) * 0.01


def clip_files(clips: int) -> list[Path]:
    return sorted((DATA / "fleurs-en").glob("*.ogg"))[:clips]


def program(clips: int) -> tuple[bytes, list[tuple[float, float]]]:
    from pipeline.audio.decode import decode_file

    pcm, bounds, t = b"", [], 0.0
    for clip in clip_files(clips):
        audio = decode_file(clip, 60)
        s, e = speech_bounds(audio)
        bounds.append((t + s, t + e))
        pcm += audio + bytes(int(GAP_S * 16000) * 2)
        t = len(pcm) / 32000
    return pcm, bounds


def lead(i: int) -> bytes:
    """Participant i's silence before the program: a fraction of a clip, so that the
    participants' utterances interleave."""
    return bytes(int((i * 0.37) % 3 * 16000) * 2)


def wer(captions: dict[str, list[tuple[float, str]]], clips: int) -> float | None:
    """Word error rate of every participant's captions (in stream order) against the clips'
    references, normalised as bench.transcribe does."""
    from bench.wer import normalise, word_errors

    if not captions:
        return None
    reference = [
        w for clip in clip_files(clips) for w in normalise(clip.with_suffix(".txt").read_text())
    ]
    errors = sum(
        word_errors(reference, normalise(" ".join(t for _, t in sorted(caps))))
        for caps in captions.values()
    )
    return errors / (len(reference) * len(captions))


async def measure(
    base: str, token: str, meeting_id: str, participants: int, clips: int, created: float
) -> tuple[list[Utterance], dict[str, list[tuple[float, str]]]]:
    import aiohttp

    from pipeline.publish import PcmTrack, WhipPublisher

    pcm, bounds = program(clips)
    utts: list[Utterance] = []
    texts: dict[str, list[tuple[float, str]]] = {}
    pubs: list[tuple[str, WhipPublisher, PcmTrack]] = []
    ws_url = base.replace("http", "ws") + f"/v1/meetings/{meeting_id}/captions"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url, headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        for i in range(participants):
            name = f"p{i:02d}"
            silence = lead(i)
            track = PcmTrack(silence + pcm, tail_silence=TAIL_S)
            pub = WhipPublisher(f"{base}/v1/meetings/{meeting_id}/whip", token, track, name)
            await pub.start()
            pubs.append((name, pub, track))
            texts[name] = []
            utts += [
                Utterance(name, len(silence) / 32000 + s, len(silence) / 32000 + e)
                for s, e in bounds
            ]
        done = asyncio.Event()

        async def receive() -> None:
            async for msg in ws:
                cap = json.loads(msg.data)
                now = time.time()
                # the track's wall-clock origin: when its first frame was due
                origin = track_origin[cap["participant"]]
                c0, c1 = cap["start_ms"] / 1000, cap["end_ms"] / 1000
                # caption times are meeting-relative; convert to stream time
                stream0 = origin - created
                best = max(
                    (u for u in utts if u.participant == cap["participant"]),
                    key=lambda u: min(u.end_s, c1 - stream0) - max(u.start_s, c0 - stream0),
                )
                if best.first_text_at is None and (cap.get("text") or "").strip():
                    best.first_text_at = now
                if cap.get("kind") == "interim":
                    best.interims.append(now)
                    continue
                best.caption_at = now  # the last final caption of an utterance wins
                texts[cap["participant"]].append((c0 - stream0, cap.get("text") or ""))
                if all(u.caption_at for u in utts):
                    done.set()

        track_origin: dict[str, float] = {}
        for name, _, track in pubs:
            while track._start is None:
                await asyncio.sleep(0.01)
            track_origin[name] = time.time() - (time.monotonic() - track._start)
        for u in utts:
            u.sent_end = track_origin[u.participant] + u.end_s
        receiver = asyncio.create_task(receive())
        for _, _, track in pubs:
            await track.finished.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), WAIT_S)
        if receiver.done() and receiver.exception() is not None:
            raise receiver.exception()  # type: ignore[misc]
        receiver.cancel()
        for _, pub, _ in pubs:
            await pub.stop()
    return utts, texts


def stats(lat: list[float]) -> dict[str, float | None]:
    lat = sorted(lat)
    if not lat:
        return {"p50_s": None, "p95_s": None, "max_s": None}
    q = statistics.quantiles(lat, n=20, method="inclusive") if len(lat) >= 2 else [lat[0]] * 19
    return {
        "p50_s": round(statistics.median(lat), 2),
        "p95_s": round(q[18], 2),
        "max_s": round(lat[-1], 2),
    }


def knob_env(args: argparse.Namespace) -> dict[str, str]:
    """Our segmenting and decoding knobs, for the API (capture) and worker subprocesses."""
    env = {}
    for name, value in (
        ("SEALSCRIBE_END_SILENCE_MS", args.end_silence_ms),
        ("SEALSCRIBE_MAX_SEGMENT_MS", args.max_segment_ms),
        ("SEALSCRIBE_BEAM_SIZE", args.beam_size),
        ("SEALSCRIBE_INTERIM_MS", args.interim_ms),
    ):
        if value is not None:
            env[name] = str(value)
    return env


def run(
    participants: int, clips: int, redis_url: str, knobs: dict[str, str] | None = None
) -> dict[str, Any]:
    from pipeline import services
    from pipeline.capture.ice import configure_ice
    from pipeline.config import Settings
    from pipeline.net import free_port
    from pipeline.processes import worker_process
    from pipeline.queue import use_broker
    from pipeline.runtime import Runtime

    redis.Redis.from_url(redis_url).flushdb()
    home = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    env = {
        **os.environ,
        "SEALSCRIBE_REDIS_URL": redis_url,
        "SEALSCRIBE_HOME": str(home),
        "SEALSCRIBE_KEY_PROVIDER": "local",
        "SEALSCRIBE_ICE_HOSTS": "127.0.0.1",
        "SEALSCRIBE_BOT_ALLOW": "127.0.0.1",  # the publishers' loopback candidates
        **(knobs or {}),
    }
    settings = Settings.from_env(env)
    rt = Runtime.from_settings(settings, actor="bench")
    use_broker(redis_url)
    configure_ice("127.0.0.1")
    tenant, token = services.create_tenant(rt, "bench")
    meeting = services.create_meeting(rt, tenant.id, transcription=True)
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with worker_process(settings, home / "worker.log", reuse=False, extra_env=knobs):
            import urllib.request

            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            utts, texts = asyncio.run(
                measure(
                    f"http://127.0.0.1:{port}",
                    token,
                    meeting.id,
                    participants,
                    clips,
                    meeting.created,
                )
            )
    finally:
        api.terminate()
        api.wait(timeout=30)
    redis.Redis.from_url(redis_url).flushdb()
    interim_lead = stats([u.first_text_at - u.sent_end for u in utts if u.first_text_at])
    refresh = stats([b - a for u in utts for a, b in zip(u.interims, u.interims[1:], strict=False)])
    return {
        "participants": participants,
        "utterances": len(utts),
        "uncaptioned": sum(1 for u in utts if u.caption_at is None),
        **stats([u.caption_at - u.sent_end for u in utts if u.caption_at]),
        "interim_lead_p50_s": interim_lead["p50_s"],
        "interim_lead_p95_s": interim_lead["p95_s"],
        "interims": sum(len(u.interims) for u in utts),
        "refresh_p50_s": refresh["p50_s"],
        "refresh_p95_s": refresh["p95_s"],
        "wer": wer(texts, clips),
        # for --json: each utterance's speech length and final latency, to find a slow tail
        "per_utterance": [
            {
                "participant": u.participant,
                "speech_s": round(u.end_s - u.start_s, 2),
                "final_s": None if u.caption_at is None else round(u.caption_at - u.sent_end, 2),
            }
            for u in utts
        ],
    }


def run_whisperlive(participants: int, clips: int, chunk_ms: int, threads: int) -> dict[str, Any]:
    """The same participants through WhisperLive (bench/whisperlive.py)."""
    from bench import whisperlive
    from pipeline.config import Settings
    from workers.model import resolve_model_path

    settings = Settings.from_env()
    model_dir = resolve_model_path(settings.model, settings.home)  # what our worker loads
    pcm, bounds = program(clips)
    streams = [(f"p{i:02d}", lead(i) + pcm) for i in range(participants)]
    utts = [
        whisperlive.LiveUtterance(
            name, (len(s) - len(pcm)) / 32000 + b0, (len(s) - len(pcm)) / 32000 + b1
        )
        for name, s in streams
        for b0, b1 in bounds
    ]
    log = Path(tempfile.mkdtemp(prefix="bench-whisperlive-")) / "server.log"
    with whisperlive.server(model_dir, log, threads, max(32, 2 * participants)) as port:
        finals = asyncio.run(
            whisperlive.measure(port, model_dir, streams, utts, chunk_ms, TAIL_S, WAIT_S)
        )
    final = stats([u.final_at - u.sent_end for u in utts if u.final_at])
    partial = stats([u.partial_at - u.sent_end for u in utts if u.partial_at])
    return {
        "uncaptioned": sum(1 for u in utts if u.final_at is None),
        **final,
        "partial_p50_s": partial["p50_s"],
        "partial_p95_s": partial["p95_s"],
        "no_partial": sum(1 for u in utts if u.partial_at is None),
        "wer": wer(finals, clips),
    }


def _cell(value: Any, width: int) -> str:
    return f"{'-' if value is None else value:>{width}}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'':>17}|{'ours: final':^32}|{'ours: interim lead':^19}|{'refresh':^13}|")
    print(
        f"{'participants':>12} {'utts':>4}|{'p50 s':>6} {'p95 s':>6} {'max s':>6} "
        f"{'uncapt.':>11}|{'p50 s':>6} {'p95 s':>6} {'n':>5}|{'p50 s':>6} {'p95 s':>6}|"
        f"{'WER':>7}"
    )
    for r in results:
        print(
            f"{r['participants']:>12} {r['utterances']:>4}|{_cell(r['p50_s'], 6)} "
            f"{_cell(r['p95_s'], 6)} {_cell(r['max_s'], 6)} {r['uncaptioned']:>11}|"
            f"{_cell(r['interim_lead_p50_s'], 6)} {_cell(r['interim_lead_p95_s'], 6)} "
            f"{r['interims']:>5}|{_cell(r['refresh_p50_s'], 6)} {_cell(r['refresh_p95_s'], 6)}|"
            f"{_pct(r['wer']):>7}"
        )
    if not any("whisperlive" in r for r in results):
        return
    print()
    print(f"{'':>17}|{'ours (final)':^32}|{'WhisperLive final':^32}|{'WL partial':^13}|{'WER':^15}")
    print(
        f"{'participants':>12} {'utts':>4}|{'p50 s':>6} {'p95 s':>6} {'max s':>6} "
        f"{'uncapt.':>11}|{'p50 s':>6} {'p95 s':>6} {'max s':>6} {'uncapt.':>11}|"
        f"{'p50 s':>6} {'p95 s':>6}|{'ours':>7} {'WL':>7}"
    )
    for r in results:
        w = r["whisperlive"]
        print(
            f"{r['participants']:>12} {r['utterances']:>4}|{_cell(r['p50_s'], 6)} "
            f"{_cell(r['p95_s'], 6)} {_cell(r['max_s'], 6)} {r['uncaptioned']:>11}|"
            f"{_cell(w['p50_s'], 6)} {_cell(w['p95_s'], 6)} {_cell(w['max_s'], 6)} "
            f"{w['uncaptioned']:>11}|{_cell(w['partial_p50_s'], 6)} "
            f"{_cell(w['partial_p95_s'], 6)}|{_pct(r['wer']):>7} {_pct(w['wer']):>7}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", default="1,4,16")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--whisperlive",
        action="store_true",
        help="also measure WhisperLive (run bench/setup-whisperlive first)",
    )
    parser.add_argument(
        "--whisperlive-chunk-ms",
        type=int,
        default=100,
        help="audio per WebSocket message to WhisperLive (its own client: 256)",
    )
    parser.add_argument(
        "--whisperlive-threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CTranslate2 threads for WhisperLive (default: as our worker, "
        "one process using every core)",
    )
    parser.add_argument("--end-silence-ms", type=int, help="SEALSCRIBE_END_SILENCE_MS")
    parser.add_argument("--max-segment-ms", type=int, help="SEALSCRIBE_MAX_SEGMENT_MS")
    parser.add_argument("--beam-size", type=int, help="SEALSCRIBE_BEAM_SIZE (WhisperLive: 5)")
    parser.add_argument("--interim-ms", type=int, help="SEALSCRIBE_INTERIM_MS (0: no interims)")
    args = parser.parse_args()
    if args.whisperlive:
        from bench.whisperlive import venv_python

        venv_python()  # fail before anything starts when its venv is missing
    results = []
    for n in (int(n) for n in args.participants.split(",")):
        result = run(n, args.clips, args.redis_url, knob_env(args))
        if args.whisperlive:
            result["whisperlive"] = run_whisperlive(
                n, args.clips, args.whisperlive_chunk_ms, args.whisperlive_threads
            )
        results.append(result)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print_table(results)


if __name__ == "__main__":
    main()
