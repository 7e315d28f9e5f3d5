"""Capture capacity: N participant tracks published over real WebRTC (WHIP, Opus, loopback)
into one capture process, which resamples, segments, seals and stores every utterance.

Reports, per N: the capture process's CPU per track (percent of one core), frames received
against frames sent (a shortfall means it fell behind real time), segments sealed and
stored, and peak memory. The publishers run in this process and send speech encoded once
as Opus (so they only packetize and encrypt), the capture runs in a child: each has a core
of this 2-core machine.

    .venv/bin/python -m bench.capture [--tracks 10,25,50,75] [--seconds 30]

Uses a Redis database it flushes (--redis-url, default db 12).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

FRAMES_PER_S = 50  # aiortc delivers 20 ms Opus frames
SPEECH = Path(__file__).resolve().parents[1] / "pipeline" / "demo_data" / "jfk.ogg"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _capture(port: int, tracks: int, seconds: float, out: Path) -> None:
    """The child: the real API app (WHIP ingest) and a measurement window of ``seconds``
    that opens once all ``tracks`` sessions are up."""
    import uvicorn

    from pipeline.api.app import create_app
    from pipeline.capture.whip import WhipIngest
    from pipeline.config import Settings
    from pipeline.runtime import Runtime

    rt = Runtime.from_settings(Settings.from_env(), actor="bench")
    app = create_app(rt)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    ingest: WhipIngest = app.state.whip

    def frames() -> tuple[int, Any]:
        rooms = [
            r
            for r in (ingest.room(m) for m in {s.meeting_id for s in ingest._sessions.values()})
            if r
        ]
        return sum(r.stats.frames for r in rooms), [r.stats for r in rooms]

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rooms = [ingest.room(s.meeting_id) for s in ingest._sessions.values()]
        if sum(len(r.participants) for r in set(filter(None, rooms))) >= tracks:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)  # let every track settle into steady state
    f0, _ = frames()
    c0, t0 = _cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    f1, stats = frames()
    c1, t1 = _cpu(), time.monotonic()
    out.write_text(
        json.dumps(
            {
                "cpu_s": c1 - c0,
                "wall_s": t1 - t0,
                "frames": f1 - f0,
                "sealed": sum(s.sealed for s in stats),
                "stored": sum(s.stored for s in stats),
                "dropped": sum(s.dropped_backlog for s in stats),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )
    server.should_exit = True
    await serving


def opus_packets(pcm: bytes) -> list[bytes]:
    """16 kHz mono PCM encoded once as 20 ms Opus packets (48 kHz stereo, as browsers send)."""
    import av
    import numpy as np

    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format = 48000, "stereo", "s16"
    enc.bit_rate = 64000
    up = av.AudioResampler(format="s16", layout="stereo", rate=48000, frame_size=960)
    frame = av.AudioFrame.from_ndarray(
        np.frombuffer(pcm, "<i2").reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = 16000
    packets = []
    for chunk in [*up.resample(frame), *up.resample(None)]:
        packets += [bytes(p) for p in enc.encode(chunk)]
    packets += [bytes(p) for p in enc.encode(None)]
    return packets


class OpusTrack:
    """Pre-encoded Opus packets paced in real time: the sender only packetizes, so one
    publisher process can feed many more tracks than if it encoded each one."""

    kind = "audio"

    def __init__(self, packets: list[bytes], shift: int) -> None:
        from aiortc.mediastreams import MediaStreamTrack

        self.track = type(
            "OpusPackets", (MediaStreamTrack,), {"kind": "audio", "recv": self._recv}
        )()
        self.packets, self.i, self.shift = packets, 0, shift
        self.start: float | None = None
        self.late = 0

    async def _recv(self, *_: Any) -> Any:
        import fractions

        import av

        if self.start is None:
            self.start = time.monotonic()
        wait = self.start + self.i * 0.02 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -0.1:
            self.late += 1
        packet = av.Packet(self.packets[(self.i + self.shift) % len(self.packets)])
        packet.pts, packet.time_base = self.i * 960, fractions.Fraction(1, 48000)
        self.i += 1
        return packet


async def _publish(
    port: int, tracks: int, seconds: float, token: str, meeting: str, speech: bytes
) -> dict[str, int]:
    from pipeline.publish import WhipPublisher

    url = f"http://127.0.0.1:{port}/v1/meetings/{meeting}/whip"
    packets = opus_packets(speech)
    pubs, sources = [], []
    for i in range(tracks):
        # offset each participant so utterances do not all end at the same instant
        source = OpusTrack(packets, (i * 37) % len(packets))
        pub = WhipPublisher(url, token, source.track, f"p{i:03d}")
        await pub.start()
        pubs.append(pub)
        sources.append(source)
    started = time.monotonic()
    while time.monotonic() - started < seconds + 4:
        await asyncio.sleep(0.5)
    late = sum(s.late for s in sources)
    for pub in pubs:
        await pub.stop()
    return {"publisher_late_frames": late}


def _loop_factory(name: str) -> Any:
    from pipeline.aio import loop_factory

    return loop_factory() if name == "uvloop" else None


def run(n: int, seconds: float, redis_url: str, loop: str = "asyncio") -> dict[str, Any]:
    from pipeline import services
    from pipeline.audio.decode import decode_file
    from pipeline.capture.ice import configure_ice
    from pipeline.config import Settings
    from pipeline.runtime import Runtime

    redis.Redis.from_url(redis_url).flushdb()
    home = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    env = {
        **os.environ,
        "SEALSCRIBE_REDIS_URL": redis_url,
        "SEALSCRIBE_HOME": str(home),
        "SEALSCRIBE_KEY_PROVIDER": "local",
        "SEALSCRIBE_ICE_HOSTS": "127.0.0.1",
        "SEALSCRIBE_BOT_ALLOW": "127.0.0.1",  # the publishers' loopback candidates
        # every track publishes into one meeting: lift the WHIP session caps above --tracks
        "SEALSCRIBE_WHIP_PER_MEETING": str(max(n, 50)),
        "SEALSCRIBE_WHIP_PER_TENANT": str(max(n, 100)),
    }
    rt = Runtime.from_settings(Settings.from_env(env), actor="bench")
    tenant, token = services.create_tenant(rt, "bench")
    meeting = services.create_meeting(rt, tenant.id, transcription=True)
    configure_ice("127.0.0.1")
    from pipeline.net import free_port

    port = free_port()
    out = home / "stats.json"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.capture",
            "--child",
            str(port),
            "--tracks",
            str(n),
            "--seconds",
            str(seconds),
            "--out",
            str(out),
            "--loop",
            loop,
        ],
        env=env,
    )
    try:
        time.sleep(3)
        pub = asyncio.run(_publish(port, n, seconds, token, meeting.id, decode_file(SPEECH, 60)))
        child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    stats = json.loads(out.read_text())
    expected = n * FRAMES_PER_S * stats["wall_s"]
    redis.Redis.from_url(redis_url).flushdb()
    return {
        "tracks": n,
        **pub,
        **stats,
        "cpu_per_track_pct": round(100 * stats["cpu_s"] / stats["wall_s"] / n, 2),
        "cpu_total_pct": round(100 * stats["cpu_s"] / stats["wall_s"], 1),
        "frames_received_pct": round(100 * stats["frames"] / expected, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", default="10,25,50,75")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="uvloop",
        help="the capture process's event loop (uvloop, as in production)",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        from pipeline.capture.ice import configure_ice

        configure_ice("127.0.0.1")
        with asyncio.Runner(loop_factory=_loop_factory(args.loop)) as runner:
            runner.run(_capture(args.child, int(args.tracks), args.seconds, args.out))
        return
    results = [run(int(n), args.seconds, args.redis_url, args.loop) for n in args.tracks.split(",")]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"{'tracks':>6} {'CPU/track':>10} {'CPU total':>10} {'frames in':>10} "
        f"{'sealed':>7} {'stored':>7} {'dropped':>8} {'RSS MB':>7} {'pub late':>9}"
    )
    for r in results:
        print(
            f"{r['tracks']:>6} {r['cpu_per_track_pct']:>9.2f}% {r['cpu_total_pct']:>9.1f}% "
            f"{r['frames_received_pct']:>9.1f}% {r['sealed']:>7} {r['stored']:>7} "
            f"{r['dropped']:>8} {r['peak_rss_mb']:>7.0f} {r['publisher_late_frames']:>9}"
        )


if __name__ == "__main__":
    main()
