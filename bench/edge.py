"""The multi-tenant edge under a hostile tenant's load: one part per defence (issue 15).

    .venv/bin/python -m bench.edge whip [--seconds 60] [--audio 4] [--video 2]
                                        [--video-size 640x480] [--fault-seconds 0] [--json]

Each part runs against its own private ``redis-server`` (loopback, a free port, no
persistence) and a real ``sealscribe serve`` subprocess (:class:`Deployment`); nothing the
machine's shared Redis holds is touched, and nothing leaves 127.0.0.1.

``whip``: the API's resident memory (VmRSS of the ``sealscribe serve`` process) while one WHIP
session publishes into a meeting with transcription on, for ``--seconds``, in a fresh API
process per case:

* one track: an ordinary publisher (one audio track);
* N audio + M video: a publisher that offers ``--audio`` audio and ``--video`` video tracks
  and **ignores the answer**: it sends on every track even where the API answered
  ``inactive`` (a well-behaved one would send nothing there). Its video is a moving test
  pattern of ``--video-size``, 30 frames a second, VP8.
* with ``--fault-seconds S``: the same hostile publisher for S seconds against an API with
  the ``whip-reads-extra-tracks`` fault (the unfixed behaviour: every track received and
  decoded, nothing reading the extra ones), to show what the defence prevents.

Reports per case: RSS once the session is up (after a 5 s warm-up), at the end, the growth
between them, and its rate; also what the publisher sent per kind, and the answer's
directions. The target: the hostile multi-track session's growth within 10 MiB of the
one-track session's.

``sockets`` (``python -m bench.edge sockets [--sockets 500] [--meetings 25] [--unbounded]``):
one tenant opens ``--sockets`` caption sockets over ``--meetings`` meetings (with the
default caps, 20 per meeting and 100 per tenant, all but 100 are closed with 4429), then
another tenant opens one (it must open), then a caption is stored in each meeting. Reports
how many opened and were refused (by close code), whether the other tenant's opened, how
long the caption took to reach every open socket, and Redis's client count and the API's
RSS before and with the sockets open. ``--unbounded`` repeats it against an API with the
``caption-sockets-unbounded`` fault (no caps: what the shared pool alone does).

Other parts add themselves to :data:`PARTS` (a name, a function adding its arguments, and
one running it and returning its report).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import av
import httpx
import numpy as np
import redis
from aiortc import RTCBundlePolicy, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack

from pipeline.capture.ice import configure_ice, rtc_configuration
from pipeline.config import Settings
from pipeline.net import free_port
from pipeline.processes import wait_until
from pipeline.publish import PcmTrack, WhipPublisher
from pipeline.runtime import Runtime

__all__ = [
    "PARTS",
    "Deployment",
    "MultiTrackPublisher",
    "PatternTrack",
    "answer_directions",
    "deployment",
    "main",
    "rss_mib",
]

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "pipeline" / "demo_data" / "jfk.ogg"
MIB = 1024 * 1024


# -- a deployment of its own ---------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (Linux /proc), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} reports no VmRSS")


@dataclass
class Deployment:
    """A private redis-server and one ``sealscribe serve``, on 127.0.0.1."""

    root: Path
    redis_url: str
    api_url: str
    env: dict[str, str]
    rt: Runtime
    api: subprocess.Popen[bytes] = field(repr=False)

    @property
    def api_pid(self) -> int:
        return self.api.pid

    def rss_mib(self) -> float:
        return rss_mib(self.api.pid)

    def log_tail(self, chars: int = 3000) -> str:
        log = self.root / "api.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def deployment(root: Path | None = None, env: dict[str, str] | None = None) -> Iterator[Deployment]:
    """Start redis-server and ``sealscribe serve`` (``env`` added to the API's environment,
    e.g. settings or ``SEALSCRIBE_FAULTS``); stop both and delete ``root`` afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server (Debian package redis-server) is needed")
    own_root = root is None
    root = Path(tempfile.mkdtemp(prefix="bench-edge-")) if root is None else root
    home, tmp = root / "home", root / "tmp"
    for folder in (home, tmp):
        folder.mkdir(parents=True, exist_ok=True)
    redis_port, api_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (root / "redis.log").open("ab") as out:
            procs.append(
                subprocess.Popen(
                    [
                        *(binary, "--port", str(redis_port), "--bind", "127.0.0.1"),
                        *("--save", "", "--appendonly", "no", "--dir", str(root)),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        wait_until(lambda: _redis_answers(redis_url), 20, "redis-server", 0.1)
        base = {k: v for k, v in os.environ.items() if not k.startswith("SEALSCRIBE_")}
        full = {
            **base,
            "SEALSCRIBE_REDIS_URL": redis_url,
            "SEALSCRIBE_HOME": str(home),
            "SEALSCRIBE_KEY_PROVIDER": "local",
            "SEALSCRIBE_ICE_HOSTS": "127.0.0.1",
            # the egress policy refuses loopback ICE candidates unless the operator lists it
            "SEALSCRIBE_BOT_ALLOW": "127.0.0.1",
            "TMPDIR": str(tmp),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        api_url = f"http://127.0.0.1:{api_port}"
        with (root / "api.log").open("ab") as out:
            api = subprocess.Popen(
                [
                    *(sys.executable, "-m", "pipeline.cli", "serve"),
                    *("--host", "127.0.0.1", "--port", str(api_port)),
                ],
                env=full,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(api)
        wait_until(
            lambda: _http_ok(f"{api_url}/openapi.json"),
            60,
            "sealscribe serve",
            0.1,
            alive=lambda: api.poll() is None,
        )
        settings = {k: v for k, v in full.items() if k != "SEALSCRIBE_FAULTS"}
        rt = Runtime.from_settings(Settings.from_env(settings), actor="bench-edge")
        configure_ice("127.0.0.1")
        try:
            yield Deployment(root, redis_url, api_url, full, rt, api)
        finally:
            rt.store.redis.close()
    finally:
        for proc in reversed(procs):
            _stop(proc)
        if own_root:
            if os.environ.get("BENCH_EDGE_KEEP"):
                print(f"kept {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)


def _redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- a publisher of many tracks ------------------------------------------------------------


class PatternTrack(VideoStreamTrack):
    """A moving test pattern, ``width`` x ``height`` at 30 frames a second."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.width, self.height = width, height
        y = np.tile(np.arange(width, dtype=np.uint8), (height, 1))
        self._planes = (y, np.full((height // 2, width // 2), 128, np.uint8))
        self._n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        y, uv = self._planes
        self._n += 1
        frame = av.VideoFrame.from_ndarray(
            np.concatenate(
                [
                    np.roll(y, self._n * 4, axis=1),
                    uv.reshape(-1, self.width),
                    uv.reshape(-1, self.width),
                ]
            ),
            format="yuv420p",
        )
        frame.pts, frame.time_base = pts, time_base
        return frame


def answer_directions(sdp: str) -> list[tuple[str, str]]:
    """(kind, direction) of each media section of an SDP message, in order."""
    sections = re.split(r"\r?\n(?=m=)", sdp)[1:]
    found = []
    for section in sections:
        kind = section[2:].split(" ", 1)[0]
        direction = next(
            (d for d in ("sendrecv", "sendonly", "recvonly", "inactive") if f"a={d}" in section),
            "sendrecv",
        )
        found.append((kind, direction))
    return found


class MultiTrackPublisher:
    """One WHIP session offering ``audio`` audio tracks (``pcm``, real time) and ``video``
    video tracks (:class:`PatternTrack`). With ``ignore_answer`` it sends on every track
    whatever the answer says (a hostile or broken publisher): sections answered
    ``inactive`` are taken as ``recvonly``.

    After :meth:`start`: :attr:`status` and :attr:`answer` (the SDP, or the problem
    document on refusal); :attr:`resource`, the session's URL, when it was created."""

    def __init__(
        self,
        endpoint: str,
        token: str,
        pcm: bytes,
        audio: int = 4,
        video: int = 2,
        video_size: tuple[int, int] = (320, 240),
        participant: str = "multi",
        ignore_answer: bool = True,
    ) -> None:
        self.endpoint, self.token, self.participant = endpoint, token, participant
        self.ignore_answer = ignore_answer
        self.tracks: list[MediaStreamTrack] = [PcmTrack(pcm) for _ in range(audio)]
        self.tracks += [PatternTrack(*video_size) for _ in range(video)]
        # max-bundle: every track on one transport, as a browser sends once the answer
        # accepts BUNDLE (aiortc's default, balanced, strands a second video track on a
        # transport it then stops)
        config = rtc_configuration()
        config.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
        self.pc = RTCPeerConnection(config)
        self.status = 0
        self.answer = ""
        self.resource: str | None = None

    async def start(self, timeout: float = 20.0) -> None:
        for track in self.tracks:
            self.pc.addTransceiver(track, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.endpoint,
                data=self.pc.localDescription.sdp,
                params={"participant": self.participant},
                headers={
                    "Content-Type": "application/sdp",
                    "Authorization": f"Bearer {self.token}",
                },
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp,
        ):
            self.status, self.answer = resp.status, await resp.text()
            if resp.status != 201:
                return
            self.resource = urljoin(self.endpoint, resp.headers.get("Location", ""))
        sdp = self.answer
        if self.ignore_answer:
            sdp = re.sub(r"^a=inactive(\r?)$", r"a=recvonly\1", sdp, flags=re.M)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if self.pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the WHIP connection did not come up ({self.pc.connectionState})"
                )
            await asyncio.sleep(0.05)

    async def sent(self) -> dict[str, int]:
        """RTP packets sent so far, per kind."""
        totals: dict[str, int] = {}
        for sender in self.pc.getSenders():
            for stat in (await sender.getStats()).values():
                if stat.type == "outbound-rtp":
                    totals[stat.kind] = totals.get(stat.kind, 0) + stat.packetsSent
        return totals

    async def reported(self) -> dict[str, int]:
        """Tracks the far end sent receiver reports for, per kind: a track the API receives
        (its receiver runs) is reported about once a second; one it ignores never is."""
        totals: dict[str, int] = {}
        for sender in self.pc.getSenders():
            stats = (await sender.getStats()).values()
            if any(s.type == "remote-inbound-rtp" for s in stats) and sender.track is not None:
                kind = sender.track.kind
                totals[kind] = totals.get(kind, 0) + 1
        return totals

    async def stop(self) -> None:
        if self.resource is not None:
            resource, self.resource = self.resource, None
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with (
                    aiohttp.ClientSession() as http,
                    http.delete(
                        resource,
                        headers={"Authorization": f"Bearer {self.token}"},
                        timeout=aiohttp.ClientTimeout(total=10),
                    ),
                ):
                    pass
        await self.pc.close()


# -- whip -----------------------------------------------------------------------------------


def _whip_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, help="per case (default 60)")
    parser.add_argument("--audio", type=int, default=4, help="audio tracks offered (4)")
    parser.add_argument("--video", type=int, default=2, help="video tracks offered (2)")
    parser.add_argument("--video-size", default="640x480", help="WxH of the video (640x480)")
    parser.add_argument(
        "--fault-seconds",
        type=float,
        default=0.0,
        help="also run the hostile publisher this long against the unfixed behaviour "
        "(fault whip-reads-extra-tracks); 0: not",
    )


async def _whip_case(
    dep: Deployment, token: str, meeting_id: str, pcm: bytes, seconds: float, **offer: Any
) -> dict[str, Any]:
    endpoint = f"{dep.api_url}/v1/meetings/{meeting_id}/whip"
    rss_start = dep.rss_mib()
    pub: MultiTrackPublisher | WhipPublisher
    if offer:
        pub = MultiTrackPublisher(endpoint, token, pcm, participant="hostile", **offer)
        await pub.start()
        if pub.status != 201:
            raise RuntimeError(f"the offer was refused ({pub.status}): {pub.answer[:300]}")
        directions = [f"{k} {d}" for k, d in answer_directions(pub.answer)]
    else:
        pub = WhipPublisher(endpoint, token, PcmTrack(pcm), "single")
        await pub.start()
        directions = ["audio recvonly"]
    await asyncio.sleep(5)  # warm-up: codecs, capture's first utterances
    rss0, t0 = dep.rss_mib(), time.monotonic()
    samples = [rss0]
    while time.monotonic() - t0 < seconds:
        await asyncio.sleep(1)
        samples.append(dep.rss_mib())
    rss1, elapsed = samples[-1], time.monotonic() - t0
    report: dict[str, Any] = {
        "answer": directions,
        "rss_at_start_mib": round(rss_start, 1),
        "rss_up_mib": round(rss0, 1),
        "rss_end_mib": round(rss1, 1),
        "rss_peak_mib": round(max(samples), 1),
        "growth_mib": round(rss1 - rss0, 1),
        "growth_mib_per_s": round((rss1 - rss0) / elapsed, 2),
        "seconds": round(elapsed, 1),
    }
    if isinstance(pub, MultiTrackPublisher):
        report["packets_sent"] = await pub.sent()
        report["tracks_reported_by_api"] = await pub.reported()
    await pub.stop()
    return report


def run_whip(args: argparse.Namespace) -> dict[str, Any]:
    from pipeline import services
    from pipeline.audio.decode import decode_file

    width, height = (int(v) for v in args.video_size.split("x"))
    pcm = decode_file(SPEECH, max_seconds=60)
    hostile = {"audio": args.audio, "video": args.video, "video_size": (width, height)}
    cases: list[tuple[str, dict[str, Any], float, dict[str, str]]] = [
        ("one track", {}, args.seconds, {}),
        (f"{args.audio} audio + {args.video} video, answer ignored", hostile, args.seconds, {}),
    ]
    if args.fault_seconds > 0:
        cases.append(
            (
                f"{args.audio} audio + {args.video} video, fault whip-reads-extra-tracks",
                hostile,
                args.fault_seconds,
                {
                    "SEALSCRIBE_FAULTS": "whip-reads-extra-tracks",
                    "SEALSCRIBE_ALLOW_FAULTS": "i-understand-this-breaks-privacy",
                },
            )
        )
    results: dict[str, Any] = {}
    for name, offer, seconds, env in cases:
        print(f"whip: {name} for {seconds:g} s ...", file=sys.stderr, flush=True)
        with deployment(env=env) as dep:
            tenant, token = services.create_tenant(dep.rt, "bench")
            meeting = services.create_meeting(dep.rt, tenant.id, transcription=True)
            results[name] = asyncio.run(_whip_case(dep, token, meeting.id, pcm, seconds, **offer))
    one, many = (results[name] for name, *_ in cases[:2])
    results["difference_mib"] = round(abs(many["growth_mib"] - one["growth_mib"]), 1)
    results["within_10_mib"] = results["difference_mib"] <= 10
    return results


def _print_whip(report: dict[str, Any]) -> None:
    print(f"{'case':58} {'RSS up':>8} {'RSS end':>8} {'growth':>8} {'MiB/s':>7}")
    for name, case in report.items():
        if isinstance(case, dict):
            print(
                f"{name:58} {case['rss_up_mib']:8.1f} {case['rss_end_mib']:8.1f} "
                f"{case['growth_mib']:8.1f} {case['growth_mib_per_s']:7.2f}"
            )
            print(f"{'':4}answer: {', '.join(case['answer'])}")
            if "packets_sent" in case:
                print(
                    f"{'':4}sent {case['packets_sent']}; API receiver reports for "
                    f"{case['tracks_reported_by_api'] or 'no track'}"
                )
    print(
        f"difference in growth: {report['difference_mib']} MiB "
        f"({'within' if report['within_10_mib'] else 'NOT within'} 10 MiB)"
    )


# -- sockets --------------------------------------------------------------------------------


def _sockets_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sockets", type=int, default=500, help="one tenant opens (500)")
    parser.add_argument("--meetings", type=int, default=25, help="spread over (25)")
    parser.add_argument(
        "--unbounded",
        action="store_true",
        help="also run against an API with the caption-sockets-unbounded fault (no caps)",
    )


def _redis_clients(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("clients")["connected_clients"])
    finally:
        client.close()


async def _sockets_case(
    dep: Deployment, count: int, meetings: int, settle: float = 2.0
) -> dict[str, Any]:
    """One tenant opens ``count`` caption sockets over ``meetings`` meetings (round robin,
    50 at a time); then another tenant opens one; then a caption goes to every meeting."""
    from keys.types import KeyUse, Purpose
    from pipeline import services
    from pipeline.models import TranscriptSegment
    from pipeline.sealing import seal_transcript

    a, a_token = services.create_tenant(dep.rt, "hostile")
    b, b_token = services.create_tenant(dep.rt, "neighbour")
    ids = [services.create_meeting(dep.rt, a.id, transcription=True).id for _ in range(meetings)]
    theirs = services.create_meeting(dep.rt, b.id, transcription=True).id
    base = dep.api_url.replace("http", "ws", 1)

    def url(meeting_id: str) -> str:
        return f"{base}/v1/meetings/{meeting_id}/captions?cursor=$"

    rss0, clients0 = dep.rss_mib(), _redis_clients(dep.redis_url)
    opened: list[tuple[str, aiohttp.ClientWebSocketResponse]] = []
    codes: dict[str, int] = {}
    # no limit on connections: aiohttp's default (100) would hold the rest back
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        async def one(meeting_id: str, token: str) -> tuple[str, aiohttp.ClientWebSocketResponse]:
            ws = await http.ws_connect(
                url(meeting_id), headers={"Authorization": f"Bearer {token}"}
            )
            return meeting_id, ws

        started = time.monotonic()
        for first in range(0, count, 50):
            batch = [ids[i % meetings] for i in range(first, min(count, first + 50))]
            opened += await asyncio.gather(*(one(m, a_token) for m in batch))
        opening_s = time.monotonic() - started
        await asyncio.sleep(settle)  # refusals arrive as close frames
        live: list[tuple[str, aiohttp.ClientWebSocketResponse]] = []
        for meeting_id, ws in opened:
            if ws.closed or ws.close_code is not None:
                codes[str(ws.close_code)] = codes.get(str(ws.close_code), 0) + 1
                continue
            try:
                msg = await ws.receive(timeout=0.01)
            except TimeoutError:
                live.append((meeting_id, ws))
                continue
            key = str(ws.close_code) if msg.type is aiohttp.WSMsgType.CLOSE else str(msg.type)
            codes[key] = codes.get(key, 0) + 1
        rss1, clients1 = dep.rss_mib(), _redis_clients(dep.redis_url)
        _, neighbour = await one(theirs, b_token)
        try:
            await neighbour.receive(timeout=settle)
            neighbour_open = False
        except TimeoutError:
            neighbour_open = True
        await neighbour.close()

        # a caption to every meeting, twice: how long until every open socket has it (the
        # first time each socket also unwraps its meeting's transcript key, audited)
        keys = {
            m: services.data_key(
                dep.rt, dep.rt.store.meetings.get(m), KeyUse.TRANSCRIPT, Purpose.TRANSCRIBE
            )
            for m in ids
        }
        fanout_s: list[float] = []
        delivered: list[int] = []
        for seq in range(2):
            sent = time.monotonic()
            for meeting_id in ids:
                segment = TranscriptSegment("alice", seq, seq * 2000, seq * 2000 + 1500, "hi")
                sealed = seal_transcript(keys[meeting_id], a.id, meeting_id, segment)
                dep.rt.store.segments.complete(sealed, seq * 2000)
            received = await asyncio.gather(
                *(ws.receive(timeout=30) for _, ws in live), return_exceptions=True
            )
            fanout_s.append(round(time.monotonic() - sent, 2))
            delivered.append(
                sum(
                    1
                    for r in received
                    if not isinstance(r, BaseException) and r.type.name == "TEXT"
                )
            )
        for _, ws in opened:
            await ws.close()
    return {
        "sockets_tried": count,
        "meetings": meetings,
        "open": len(live),
        "refused": codes,
        "other_tenant_opens": neighbour_open,
        "opening_s": round(opening_s, 2),
        "caption_fanout_s": fanout_s,
        "captions_delivered": delivered,
        "redis_clients_before": clients0,
        "redis_clients_open": clients1,
        "api_rss_before_mib": round(rss0, 1),
        "api_rss_open_mib": round(rss1, 1),
    }


def run_sockets(args: argparse.Namespace) -> dict[str, Any]:
    cases: list[tuple[str, dict[str, str]]] = [("caps (defaults)", {})]
    if args.unbounded:
        cases.append(
            (
                "fault caption-sockets-unbounded",
                {
                    "SEALSCRIBE_FAULTS": "caption-sockets-unbounded",
                    "SEALSCRIBE_ALLOW_FAULTS": "i-understand-this-breaks-privacy",
                },
            )
        )
    results: dict[str, Any] = {}
    for name, env in cases:
        print(f"sockets: {name}: {args.sockets} sockets ...", file=sys.stderr, flush=True)
        # no request-rate quota: sockets are opened with the header, not counted as requests
        with deployment(env={"SEALSCRIBE_QUOTA_RPS": "0", **env}) as dep:
            results[name] = asyncio.run(_sockets_case(dep, args.sockets, args.meetings))
            results[name]["caps"] = {
                "per_meeting": dep.rt.settings.caption_sockets_per_meeting,
                "per_tenant": dep.rt.settings.caption_sockets_per_tenant,
            }
    return results


def _print_sockets(report: dict[str, Any]) -> None:
    for name, case in report.items():
        print(
            f"{name}: {case['sockets_tried']} sockets over {case['meetings']} meetings "
            f"(caps {case['caps']['per_meeting']}/meeting, {case['caps']['per_tenant']}/tenant)"
        )
        print(f"  open {case['open']}, refused {case['refused']}, opened in {case['opening_s']} s")
        print(f"  another tenant's socket opens: {case['other_tenant_opens']}")
        for i, (n, took) in enumerate(
            zip(case["captions_delivered"], case["caption_fanout_s"], strict=True)
        ):
            print(
                f"  {'first' if i == 0 else 'next'} caption to every meeting reached {n} "
                f"sockets in {took} s"
            )
        print(
            f"  Redis clients {case['redis_clients_before']} -> {case['redis_clients_open']}; "
            f"API RSS {case['api_rss_before_mib']} -> {case['api_rss_open_mib']} MiB"
        )


# -- the command ---------------------------------------------------------------------------

#: part name -> (help, add its arguments, run it and return its report, print the report)
PARTS: dict[
    str,
    tuple[
        str,
        Callable[[argparse.ArgumentParser], None],
        Callable[[argparse.Namespace], dict[str, Any]],
        Callable[[dict[str, Any]], None],
    ],
] = {
    "whip": (
        "API memory: a WHIP session offering many tracks vs one track",
        _whip_args,
        run_whip,
        _print_whip,
    ),
    "sockets": (
        "caption sockets: one tenant's hundreds refused beyond the caps, Redis clients, RSS",
        _sockets_args,
        run_sockets,
        _print_sockets,
    ),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.edge", description=__doc__.split("\n")[0]
    )
    parts = parser.add_subparsers(dest="part", required=True)
    for name, (help_text, add_args, _, _) in PARTS.items():
        sub = parts.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="print the report as JSON")
        add_args(sub)
    args = parser.parse_args(argv)
    _, _, run, show = PARTS[args.part]
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        show(report)


if __name__ == "__main__":
    main()
