"""Live-caption latency through the whole path: publisher -> WebRTC (WHIP, Opus) -> capture
(segment, seal) -> Redis -> Celery worker (tiny.en) -> caption WebSocket.

Latency of an utterance = the moment its caption arrives on the WebSocket minus the moment
the publisher sent the last sample of its speech. Each participant publishes the ten
fleurs-en clips with 1.5 s of silence between them (one utterance each), so every utterance
end is known exactly; captions are matched to utterances by their time in the meeting.

    .venv/bin/python -m bench.latency [--participants 1,4,16] [--clips 10]

Runs its own API (``sealscribe serve``) and worker subprocesses against a Redis database it
flushes (``--redis-url``, default db 12).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import redis

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
GAP_S = 1.5


@dataclass
class Utterance:
    participant: str
    start_s: float  # speech start within the participant's stream
    end_s: float  # speech end within the stream
    sent_end: float = 0.0  # wall clock: last speech sample sent
    caption_at: float | None = None


def speech_bounds(pcm: bytes, rate: int = 16000) -> tuple[float, float]:
    """First and last 10 ms frame within 35 dB of the clip's loudest (its speech)."""
    x = np.frombuffer(pcm, "<i2").astype(np.float32)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    level = 20 * np.log10(np.sqrt((frames ** 2).mean(axis=1)) + 1e-3)
    loud = np.nonzero(level > level.max() - 35)[0]
    return loud[0] * 0.01, (loud[-1] + 1) * 0.01


def program(clips: int) -> tuple[bytes, list[tuple[float, float]]]:
    from pipeline.audio.decode import decode_file

    pcm, bounds, t = b"", [], 0.0
    for clip in sorted((DATA / "fleurs-en").glob("*.ogg"))[:clips]:
        audio = decode_file(clip, 60)
        s, e = speech_bounds(audio)
        bounds.append((t + s, t + e))
        pcm += audio + bytes(int(GAP_S * 16000) * 2)
        t = len(pcm) / 32000
    return pcm, bounds


async def measure(base: str, token: str, meeting_id: str, participants: int,
                  clips: int, created: float) -> list[Utterance]:
    import aiohttp

    from pipeline.bot.publish import PcmTrack, WhipPublisher

    pcm, bounds = program(clips)
    utts: list[Utterance] = []
    pubs: list[tuple[str, WhipPublisher, PcmTrack]] = []
    ws_url = base.replace("http", "ws") + f"/v1/meetings/{meeting_id}/captions"
    async with aiohttp.ClientSession() as http, http.ws_connect(
            ws_url, params={"access_token": token}) as ws:
        for i in range(participants):
            name = f"p{i:02d}"
            # stagger participants by a fraction of a clip so their utterances interleave
            lead = bytes(int((i * 0.37) % 3 * 16000) * 2)
            track = PcmTrack(lead + pcm)
            pub = WhipPublisher(f"{base}/v1/meetings/{meeting_id}/whip", token, track, name)
            await pub.start()
            pubs.append((name, pub, track))
            utts += [Utterance(name, len(lead) / 32000 + s, len(lead) / 32000 + e)
                     for s, e in bounds]
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
                best = max((u for u in utts if u.participant == cap["participant"]),
                           key=lambda u: min(u.end_s, c1 - stream0) - max(u.start_s,
                                                                            c0 - stream0))
                best.caption_at = now  # the last caption of an utterance wins
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
            await asyncio.wait_for(done.wait(), 120)
        if receiver.done() and receiver.exception() is not None:
            raise receiver.exception()  # type: ignore[misc]
        receiver.cancel()
        for _, pub, _ in pubs:
            await pub.stop()
    return utts


def run(participants: int, clips: int, redis_url: str) -> dict[str, Any]:
    from pipeline import services
    from pipeline.bot.ice import configure_ice
    from pipeline.config import Settings
    from pipeline.net import free_port
    from pipeline.runtime import Runtime
    from workers.client import use_broker
    from workers.process import worker_process

    redis.Redis.from_url(redis_url).flushdb()
    home = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    env = {**os.environ, "SEALSCRIBE_REDIS_URL": redis_url, "SEALSCRIBE_HOME": str(home),
           "SEALSCRIBE_KEY_PROVIDER": "local", "SEALSCRIBE_ICE_HOSTS": "127.0.0.1"}
    settings = Settings.from_env(env)
    rt = Runtime.from_settings(settings, actor="bench")
    use_broker(redis_url)
    configure_ice("127.0.0.1")
    tenant, token = services.create_tenant(rt, "bench")
    meeting = services.create_meeting(rt, tenant.id, transcription=True)
    port = free_port()
    api = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with worker_process(settings, home / "worker.log", reuse=False):
            import urllib.request

            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            utts = asyncio.run(measure(f"http://127.0.0.1:{port}", token, meeting.id,
                                       participants, clips, meeting.created))
    finally:
        api.terminate()
        api.wait(timeout=30)
    lat = sorted(u.caption_at - u.sent_end for u in utts if u.caption_at)
    lost = sum(1 for u in utts if u.caption_at is None)
    redis.Redis.from_url(redis_url).flushdb()
    q = (statistics.quantiles(lat, n=20, method="inclusive") if len(lat) >= 2
         else [float("nan")] * 19)
    return {"participants": participants, "utterances": len(utts), "uncaptioned": lost,
            "p50_s": round(statistics.median(lat), 2) if lat else None,
            "p95_s": round(q[18], 2), "max_s": round(max(lat), 2) if lat else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", default="1,4,16")
    parser.add_argument("--clips", type=int, default=10)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [run(int(n), args.clips, args.redis_url) for n in args.participants.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'participants':>12} {'utterances':>10} {'p50 s':>6} {'p95 s':>6} {'max s':>6} "
          f"{'uncaptioned':>11}")
    for r in results:
        print(f"{r['participants']:>12} {r['utterances']:>10} {r['p50_s']:>6} {r['p95_s']:>6} "
              f"{r['max_s']:>6} {r['uncaptioned']:>11}")


if __name__ == "__main__":
    main()
