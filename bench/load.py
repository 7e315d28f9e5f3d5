"""Load: many meetings publishing over WHIP at once for minutes; does any segment get lost?

    .venv/bin/python -m bench.load [--meetings 10] [--participants 4] [--minutes 5]
                                   [--workers 2] [--worker-nice 10] [--json]

Each meeting's participants publish the four AMI ES2004 headset tracks
(pipeline/demo_data/ami-es2004-{A..D}.ogg, 60 s each, looped; participants beyond four reuse
them shifted), every meeting from a different offset so meetings are not in lock-step. The
audio is encoded once as Opus and paced in real time by a publisher subprocess (so its CPU is
visible and apart from the API's), into a ``sealscribe serve`` subprocess whose WHIP capture
segments, seals, stores and queues every utterance, and ``--workers`` ``sealscribe worker
-c 1`` subprocesses (one thread each, as bench/scale.py found best) transcribe them. All of
it runs against a Redis database the benchmark flushes before and after (``--redis-url``,
default db 11).

Publishers stop ``--minutes`` after the last track is up; the run then waits until the queue
has drained: no segment pending, no Celery message queued, nothing held in capture's backlog.
Then it scores the word error rate of the transcripts over each track's whole loops against
the AMI references (shared/data/ami-es2004/text; approximate at the loop edges, for comparing
runs).
From the rates measured it also says how long this load could go on before its last
segments would wait past the audio TTL (the drain is what the last segments wait).

Reports, for the run: segments produced (sealed at capture, the API's /metrics), queued and
dropped by capture, transcribed (transcript segments stored, counted in the store), purged
by the workers (policy; 0 here), and **lost** = produced - transcribed - purged - dropped
for policy: a segment dropped by capture's backlog, expired in Redis before a worker reached
it (``SEALSCRIBE_AUDIO_TTL``, 3600 s by default: set it lower to see expiry counted), or
still pending at ``--drain-timeout``. Also: frames captured against frames sent; the queue
depth every ``--sample`` seconds (segments pending, Celery messages, how long the oldest
pending segment has waited); the drain time; audio seconds transcribed per wall second while
publishing and while draining; CPU (cores) of the publishers, the API, the workers and
everything else on the machine, per phase; peak resident memory (VmHWM) of each process; and
Redis's peak memory. Linux only (reads /proc).

``--worker-nice`` (default 10) lowers the workers' CPU priority (their autogroup's, as each
runs in its own session) while the publishers are live, and sets it back to 0 when they stop:
on a machine shared with live capture, transcription is what can wait (its queue is in Redis)
and capture is what cannot (audio it does not receive in time is gone). In production they
run in separate pods. ``--worker-nice 0`` measures without it. Setting it back needs root
(CAP_SYS_NICE); without it the workers stay niced through the drain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.scale import Worker, machine_busy_seconds, workers

DEMO = Path(__file__).resolve().parents[1] / "pipeline" / "demo_data"
TRACKS = [DEMO / f"ami-es2004-{c}.ogg" for c in "ABCD"]
#: the per-speaker reference texts of those 60 s (shared/data, as bench/transcribe.py)
AMI_TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ami-es2004" / "text"
FRAME_S = 0.02  # one Opus packet, one captured frame


# -- the publisher subprocess -----------------------------------------------------------------


def _usage() -> dict[str, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"at": time.time(), "cpu_s": r.ru_utime + r.ru_stime}


async def _publish(cfg: dict[str, Any], status: Path) -> dict[str, Any]:
    from bench.capture import OpusTrack, opus_packets
    from pipeline.audio.decode import decode_file
    from pipeline.publish import WhipPublisher

    packets = [opus_packets(decode_file(path, 120)) for path in TRACKS]
    meetings: list[str] = cfg["meetings"]
    per, seconds, base = cfg["participants"], cfg["seconds"], cfg["base"]

    sources: list[OpusTrack] = []
    placed: list[dict[str, Any]] = []  # where each track starts in its loop, for the WER

    def mark(event: str) -> None:
        frames = sum(s.i for s in sources)
        with status.open("a") as f:
            f.write(json.dumps({"event": event, "frames": frames, **_usage()}) + "\n")

    pubs: list[WhipPublisher] = []
    for k, meeting in enumerate(meetings):
        url = f"{base}/v1/meetings/{meeting}/whip"
        started = []
        for p in range(per):
            track = packets[p % len(TRACKS)]
            # meetings start at different points of the minute; a meeting's fifth to eighth
            # participants replay the first four's tracks 17 s later
            shift = (k * len(track) // len(meetings) + p // len(TRACKS) * 850) % len(track)
            source = OpusTrack(track, shift)
            name = "ABCD"[p % len(TRACKS)] + (str(p // len(TRACKS)) if p >= 4 else "")
            pub = WhipPublisher(url, cfg["token"], source.track, name)
            sources.append(source)
            placed.append(
                {"meeting": meeting, "participant": name, "letter": "ABCD"[p % len(TRACKS)]}
                | {"shift_frames": shift, "loop_frames": len(track)}
            )
            pubs.append(pub)
            started.append(pub.start(timeout=60))
        await asyncio.gather(*started)  # one meeting's participants join together
    mark("up")
    await asyncio.sleep(seconds)
    mark("stopping")
    await asyncio.gather(*(pub.stop() for pub in pubs))
    mark("stopped")
    return {
        "tracks": len(sources),
        "frames_sent": sum(s.i for s in sources),
        "late_frames": sum(s.late for s in sources),
        "placed": [p | {"frames": s.i} for p, s in zip(placed, sources, strict=True)],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def publisher_main(config: Path) -> None:
    from pipeline.aio import run
    from pipeline.capture.ice import configure_ice

    cfg = json.loads(config.read_text())
    configure_ice("127.0.0.1")
    result = run(_publish(cfg, Path(cfg["status"])))
    Path(cfg["out"]).write_text(json.dumps(result))


# -- the benchmark ----------------------------------------------------------------------------


def scrape(url: str, timeout: float = 30) -> dict[str, float]:
    """Prometheus samples as {'name{label="v"}': value} (label sets sorted)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            key = f"{s.name}{{{labels}}}" if labels else s.name
            out[key] = out.get(key, 0.0) + s.value
    return out


def total(samples: dict[str, float], name: str) -> float:
    """The sum of ``name`` over every label set."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


def by_label(samples: dict[str, float], name: str) -> dict[str, int]:
    """{label value: count} of a counter with one label, non-zero ones only."""
    out = {}
    for k, v in samples.items():
        if k.startswith(name + "{") and v:
            out[k.split('"')[1]] = int(v)
    return out


def renice(ws: list[Worker], nice: int) -> None:
    """Set the workers' priority: their autogroups' (each worker runs in its own session,
    and with autogroups the kernel shares CPU between sessions first) and every thread's.
    Lowering the nice value again needs root (CAP_SYS_NICE); without it they stay niced."""
    for w in ws:
        _renice(w, nice)


def _renice(w: Worker, nice: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{w.proc.pid}/autogroup").write_text(str(nice))
    for pid in w.pids():
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


class Probe:
    """Everything sampled while the run goes on."""

    def __init__(self, rt: Any, api: Worker, ws: list[Worker]) -> None:
        self.rt, self.api, self.ws = rt, api, ws
        self.api_url = f"http://127.0.0.1:{api.metrics_port}/metrics"
        self.redis_peak = 0

    def depth(self) -> tuple[int, int, float]:
        """(segments pending, Celery messages queued, seconds the oldest has waited)."""
        from pipeline.services.health import queue_depth
        from pipeline.store import schema

        pending, messages = queue_depth(self.rt)
        oldest = self.rt.store.redis.zrange(schema.PENDING, 0, 0, withscores=True)
        used = int(self.rt.store.redis.info("memory")["used_memory"])
        self.redis_peak = max(self.redis_peak, used)
        return pending, messages, time.time() - oldest[0][1] if oldest else 0.0

    def api_metrics(self) -> tuple[dict[str, float] | None, float | None]:
        """The API's counters and how long it took to answer (its event loop's lag, which
        capture shares); (None, None) if it did not answer within 30 s."""
        asked = time.monotonic()
        try:
            samples = scrape(self.api_url)
        except OSError:
            return None, None
        return samples, round(time.monotonic() - asked, 2)

    def workers(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for w in self.ws:
            for k, v in scrape(f"http://127.0.0.1:{w.metrics_port}/metrics").items():
                merged[k] = merged.get(k, 0.0) + v
        return merged

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the API, each worker, the whole machine, this process."""
        return {
            "api": self.api.cpu_seconds(),
            **{f"worker{i}": w.cpu_seconds() for i, w in enumerate(self.ws)},
            "machine": machine_busy_seconds(),
            "bench": time.process_time(),
            "wall": time.time(),
        }


def cores(a: dict[str, float], b: dict[str, float], pub: float) -> dict[str, float]:
    """Cores used between two CPU readings (``pub``: the publishers' CPU seconds meanwhile);
    ``other``: the machine's busy cores less all of ours."""
    wall = b["wall"] - a["wall"]
    d = {k: (b[k] - a[k]) / wall for k in a if k != "wall"}
    ws = sum(v for k, v in d.items() if k.startswith("worker"))
    out = {
        "publishers": pub / wall,
        "api": d["api"],
        "workers": ws,
        **{k: v for k, v in d.items() if k.startswith("worker")},
    }
    out["other"] = max(0.0, d["machine"] - ws - d["api"] - pub / wall - d["bench"])
    return {k: round(v, 2) for k, v in out.items()}


def wait_healthy(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start; see {log}") from exc
            time.sleep(0.2)


def run(
    meetings: int,
    participants: int,
    minutes: float,
    n_workers: int,
    nice: int,
    redis_url: str,
    sample_s: float,
    drain_timeout: float,
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-load-"))
    env = {
        **os.environ,
        "SEALSCRIBE_REDIS_URL": redis_url,
        "SEALSCRIBE_HOME": str(home),
        "SEALSCRIBE_KEY_PROVIDER": "local",
        "SEALSCRIBE_ICE_HOSTS": "127.0.0.1",
        "SEALSCRIBE_BOT_ALLOW": "127.0.0.1",  # the publishers' loopback candidates
        "SEALSCRIBE_CPU_THREADS": os.environ.get("SEALSCRIBE_CPU_THREADS", "1"),
    }
    from pipeline import services
    from pipeline.config import Settings
    from pipeline.net import free_port
    from pipeline.queue import use_broker
    from pipeline.runtime import Runtime

    settings = Settings.from_env(env)
    rt = Runtime.from_settings(settings, actor="bench")
    use_broker(redis_url)
    rt.store.redis.flushdb()
    logs = home / "logs"
    logs.mkdir(parents=True)
    api_proc: subprocess.Popen[bytes] | None = None
    pub_proc: subprocess.Popen[bytes] | None = None
    ok = False
    try:
        tenant, token = services.create_tenant(rt, "bench")
        ids = [
            services.create_meeting(rt, tenant.id, transcription=True).id for _ in range(meetings)
        ]
        port = free_port()
        api_log = logs / "api.log"
        api_proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "serve", "--port", str(port)],
            env=env,
            stdout=api_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        api = Worker(api_proc, api_log, port)  # a process tree with CPU and memory readings
        wait_healthy(port, api_proc, api_log)
        with workers(n_workers, env, logs) as ws:
            renice(ws, nice)
            probe = Probe(rt, api, ws)
            cfg_path, status, out = home / "pub.json", home / "pub.status", home / "pub.out"
            cfg_path.write_text(
                json.dumps(
                    {
                        "meetings": ids,
                        "participants": participants,
                        "seconds": minutes * 60,
                        "base": f"http://127.0.0.1:{port}",
                        "token": token,
                        "status": str(status),
                        "out": str(out),
                    }
                )
            )
            pub_proc = subprocess.Popen(
                [sys.executable, "-m", "bench.load", "--publisher", str(cfg_path)],
                env=env,
                stdout=(logs / "publisher.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            # transcription waits while meetings are live, then takes the cores back
            result = observe(
                probe, pub_proc, status, sample_s, drain_timeout, lambda: renice(ws, 0)
            )
            result["publisher"] = json.loads(out.read_text())
            result["peak_rss_mib"] = {
                "api": round(api.memory_mib("VmHWM")),
                "workers": [round(w.memory_mib("VmHWM")) for w in ws],
                "publishers": round(result["publisher"]["peak_rss_mib"]),
            }
        transcribed = sum(rt.store.segments.transcript_count(m) for m in ids)
        ok = True
        summary = summarize(result, transcribed, settings.audio_ttl, probe.redis_peak)
        summary["wer_ami_loops"] = loop_wer(rt, result["publisher"]["placed"])
        return summary
    finally:
        for proc in (pub_proc, api_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        rt.store.redis.flushdb()
        if ok:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"bench.load failed; logs kept in {home}", file=sys.stderr)


def loop_wer(rt: Any, placed: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Word error rate of the transcripts against the AMI reference of each looped track,
    over the loops a track published whole (its segments placed by start time; a word or
    two at each loop's edge may land in the neighbouring loop, so this is for comparing
    runs, not an absolute figure). Track C is crosstalk, without a reference: left out.
    None when no track published a whole loop or the references are missing."""
    from bench.wer import normalise, word_errors
    from pipeline.services.transcripts import read_transcript

    texts = AMI_TEXT.glob("mixture.*.words_joined.txt")
    refs = {t.name.split(".")[1]: normalise(t.read_text().replace("_", "")) for t in texts}
    refs = {k: v for k, v in refs.items() if len(v) >= 20}
    errors = words = loops = 0
    said: dict[str, list[Any]] = {}
    for track in placed:
        ref = refs.get(track["letter"])
        if not ref:
            continue
        if track["meeting"] not in said:
            said[track["meeting"]] = read_transcript(rt, track["meeting"])
        loop_ms, shift_ms = track["loop_frames"] * 20, track["shift_frames"] * 20
        heard: dict[int, list[str]] = {}
        for s in said[track["meeting"]]:
            if s.participant_id == track["participant"]:
                heard.setdefault((shift_ms + s.start_ms) // loop_ms, []).append(s.text)
        # the loops between the first loop start after the shift and the end of publishing
        for j in range(-(-shift_ms // loop_ms), (shift_ms + track["frames"] * 20) // loop_ms):
            errors += word_errors(ref, normalise(" ".join(heard.get(j, []))))
            words += len(ref)
            loops += 1
    return {"wer": round(errors / words, 3), "loops": loops} if words else None


def snapshot(probe: Probe) -> dict[str, dict[str, float]]:
    """CPU so far and every counter of the API and the workers, now."""
    api, _ = probe.api_metrics()
    return {"cpu": probe.cpu(), "workers": probe.workers(), "api": api or {}}


def observe(
    probe: Probe,
    pub: subprocess.Popen[bytes],
    status: Path,
    sample_s: float,
    drain_timeout: float,
    on_stop: Callable[[], None],
) -> dict[str, Any]:
    """Sample until the publishers have stopped and the queue has drained (or timed out)."""
    events: dict[str, dict[str, float]] = {}  # the publishers' marks: up, stopping, stopped
    snaps: dict[str, dict[str, dict[str, float]]] = {}  # ours at each mark
    series: list[dict[str, Any]] = []
    start = time.time()
    next_sample = start
    quiet = 0
    drained_at: float | None = None
    api: dict[str, float] = {}
    while True:
        time.sleep(1)
        if status.exists():
            for line in status.read_text().splitlines():
                e = json.loads(line)
                if e["event"] not in events:
                    events[e["event"]] = e
                    snaps[e["event"]] = snapshot(probe)
                    if e["event"] == "stopping":
                        on_stop()
        now = time.time()
        pending, messages, oldest = probe.depth()
        stopped = pub.poll() is not None
        if now >= next_sample or stopped:
            fresh, answered = probe.api_metrics()
            api = fresh or api
            wm = probe.workers()
            next_sample = now + sample_s
            phase = "drain" if "stopping" in events else "live" if "up" in events else "joining"
            series.append(
                {
                    "t": round(now - events.get("up", {"at": start})["at"], 1),
                    "phase": phase,
                    "pending": pending,
                    "messages": messages,
                    "oldest_wait_s": round(oldest, 1),
                    "api_answer_s": answered,
                    "sealed": int(total(api, "sealscribe_segments_sealed_total")),
                    "transcribed": int(total(wm, "sealscribe_segments_transcribed_total")),
                    "audio_s": round(total(wm, "sealscribe_audio_transcribed_seconds_total"), 1),
                }
            )
        if stopped:
            if "stopped" not in events:
                raise RuntimeError("the publishers exited early; see their log")
            held = (
                total(api, "sealscribe_segments_sealed_total")
                - total(api, "sealscribe_segments_queued_total")
                - total(api, "sealscribe_segments_dropped_total")
            )
            quiet = quiet + 1 if fresh and pending == messages == held == 0 else 0
            # twice in a row: the captures flush their last utterances as sessions close
            if quiet >= 2:
                drained_at = now - 1
                break
            if now - events["stopping"]["at"] > drain_timeout:
                break
    snaps["drained"] = snapshot(probe)
    return {"events": events, "snaps": snaps, "series": series, "drained_at": drained_at}


def summarize(
    r: dict[str, Any], transcribed: int, audio_ttl: int, redis_peak: int
) -> dict[str, Any]:
    events, snaps, series, pub = r["events"], r["snaps"], r["series"], r["publisher"]
    up, stop = events["up"], events["stopping"]
    live_s = stop["at"] - up["at"]
    drain_s = None if r["drained_at"] is None else r["drained_at"] - stop["at"]
    api, wm = snaps["drained"]["api"], snaps["drained"]["workers"]

    def delta(name: str, kind: str, a: str, b: str) -> float:
        return total(snaps[b][kind], name) - total(snaps[a][kind], name)

    sealed = int(total(api, "sealscribe_segments_sealed_total"))
    queued = int(total(api, "sealscribe_segments_queued_total"))
    dropped = by_label(api, "sealscribe_segments_dropped_total")
    purged = by_label(wm, "sealscribe_segments_purged_total")
    pending_left = series[-1]["pending"]
    lost = sealed - transcribed - sum(purged.values()) - dropped.get("policy", 0)
    stream_s = FRAME_S * pub["frames_sent"]
    audio_s = total(wm, "sealscribe_audio_transcribed_seconds_total")
    stream_rate = FRAME_S * (stop["frames"] - up["frames"]) / live_s
    seg, aud = "sealscribe_segments_transcribed_total", "sealscribe_audio_transcribed_seconds_total"
    return {
        "live_s": round(live_s, 1),
        "drain_s": None if drain_s is None else round(drain_s, 1),
        "tracks": pub["tracks"],
        "frames_sent": pub["frames_sent"],
        "frames_captured": int(total(api, "sealscribe_capture_frames_total")),
        "frames_captured_pct": round(
            100 * total(api, "sealscribe_capture_frames_total") / pub["frames_sent"], 2
        ),
        "publisher_late_frames": pub["late_frames"],
        "segments": {
            "produced": sealed,
            "queued": queued,
            "dropped_by_capture": dropped,
            "transcribed": transcribed,
            "purged_by_policy": purged,
            # queued, neither transcribed nor purged, not pending: its audio expired
            "expired": max(0, queued - transcribed - sum(purged.values()) - pending_left),
            "pending_at_end": pending_left,
            "lost": lost,
        },
        "tasks": by_label(wm, "sealscribe_transcribe_tasks_total"),
        "stream_s_published": round(stream_s),
        "audio_s_transcribed": round(audio_s, 1),
        "rates_live": {
            "stream_s_per_s": round(stream_rate, 1),
            # the share of the stream that capture cut into utterances, at the live rate
            "speech_s_produced_per_s": round(stream_rate * audio_s / stream_s, 1)
            if not lost
            else None,
            "segments_produced_per_s": round(
                delta("sealscribe_segments_sealed_total", "api", "up", "stopping") / live_s, 2
            ),
            "segments_transcribed_per_s": round(
                delta(seg, "workers", "up", "stopping") / live_s, 2
            ),
            "audio_s_transcribed_per_s": round(delta(aud, "workers", "up", "stopping") / live_s, 1),
        },
        "rates_drain": {
            "segments_transcribed_per_s": round(
                delta(seg, "workers", "stopping", "drained") / drain_s, 2
            ),
            "audio_s_transcribed_per_s": round(
                delta(aud, "workers", "stopping", "drained") / drain_s, 1
            ),
        }
        if drain_s
        else {},
        "queue_max": {
            "pending": max(s["pending"] for s in series),
            "messages": max(s["messages"] for s in series),
            "oldest_wait_s": max(s["oldest_wait_s"] for s in series),
        },
        "api_answer_s_max": max((s["api_answer_s"] or 0) for s in series),
        "api_unanswered": sum(1 for s in series if s["api_answer_s"] is None),
        "audio_ttl_s": audio_ttl,
        "cpu_cores_live": cores(
            snaps["up"]["cpu"], snaps["stopping"]["cpu"], stop["cpu_s"] - up["cpu_s"]
        ),
        "cpu_cores_drain": cores(
            snaps["stopping"]["cpu"],
            snaps["drained"]["cpu"],
            events["stopped"]["cpu_s"] - stop["cpu_s"],
        ),
        "peak_rss_mib": r["peak_rss_mib"],
        "redis_peak_used_mib": round(redis_peak / 2**20),
        "series": series,
    }


def headroom(res: dict[str, Any]) -> float | None:
    """Minutes of this load (published continuously) before the last segment of it would
    wait longer than the audio TTL, at the rates measured; None: the queue did not grow."""
    live, drain = res["rates_live"], res["rates_drain"]
    growth = live["segments_produced_per_s"] - live["segments_transcribed_per_s"]
    if growth <= 0 or not drain:
        return None
    minutes: float = res["audio_ttl_s"] * drain["segments_transcribed_per_s"] / growth / 60
    return round(minutes, 1)


def print_report(res: dict[str, Any], every: float) -> None:
    a, seg, live, drain = res["args"], res["segments"], res["rates_live"], res["rates_drain"]
    print(
        f"{a['meetings']} meetings x {a['participants']} participants = {res['tracks']} "
        f"tracks, {a['minutes']} min; {a['workers']} workers (nice {a['worker_nice']} while "
        f"publishing); {res['cores']} cores; audio TTL {res['audio_ttl_s']} s"
    )
    print(
        f"segments: produced {seg['produced']}, queued {seg['queued']}, dropped by capture "
        f"{seg['dropped_by_capture'] or 0}, transcribed {seg['transcribed']}, purged by "
        f"policy {seg['purged_by_policy'] or 0}, expired {seg['expired']}, pending at end "
        f"{seg['pending_at_end']}: LOST {seg['lost']}"
    )
    print(
        f"frames: {res['frames_sent']} sent, {res['frames_captured']} captured "
        f"({res['frames_captured_pct']} %), {res['publisher_late_frames']} sent late"
    )
    drained = (
        "did not drain within --drain-timeout"
        if res["drain_s"] is None
        else f"drained {res['drain_s']} s after the publishers stopped"
    )
    print(f"publishing {res['live_s']} s (all tracks up); {drained}")
    print(
        f"while publishing, per wall s: {live['stream_s_per_s']} s of stream, "
        f"{live['speech_s_produced_per_s']} s of speech cut into "
        f"{live['segments_produced_per_s']} segments; transcribed "
        f"{live['segments_transcribed_per_s']} segments ({live['audio_s_transcribed_per_s']}"
        f" s of audio)"
    )
    if drain:
        print(
            f"while draining, per wall s: transcribed {drain['segments_transcribed_per_s']} "
            f"segments ({drain['audio_s_transcribed_per_s']} s of audio); "
            f"{res['audio_s_transcribed']} s of audio transcribed in all"
        )
    q = res["queue_max"]
    print(
        f"queue max: {q['pending']} segments pending, {q['messages']} Celery messages, "
        f"oldest waited {q['oldest_wait_s']} s; /metrics answered within "
        f"{res['api_answer_s_max']} s ({res['api_unanswered']} times not within 30 s)"
    )
    w = res.get("wer_ami_loops")
    print(
        "WER: no track published a whole loop"
        if not w
        else f"WER {w['wer']:.1%} over {w['loops']} whole 60 s loops of the AMI tracks with a "
        "reference (approximate at loop edges: for comparing runs)"
    )
    minutes = headroom(res)
    print(
        "the queue did not grow"
        if minutes is None
        else f"at these rates a meeting load like this one could last {minutes} min before "
        f"its last segments waited past the audio TTL (lost)"
    )
    for phase in ("live", "drain"):
        c = res[f"cpu_cores_{phase}"]
        print(f"CPU cores {phase}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    m = res["peak_rss_mib"]
    print(
        f"peak RSS MiB: api {m['api']}, workers {'/'.join(map(str, m['workers']))}, "
        f"publishers {m['publishers']}; Redis used {res['redis_peak_used_mib']} MiB at most "
        "(the whole server)"
    )
    print(
        f"{'t s':>6} {'phase':>7} {'pending':>8} {'messages':>8} {'oldest s':>8} "
        f"{'sealed':>7} {'transcr':>7} {'audio s':>8} {'API s':>6}"
    )
    shown = float("-inf")
    for i, s in enumerate(res["series"]):
        if s["t"] - shown >= every or i == len(res["series"]) - 1:
            shown = s["t"]
            answered = "-" if s["api_answer_s"] is None else f"{s['api_answer_s']:.2f}"
            print(
                f"{s['t']:>6.0f} {s['phase']:>7} {s['pending']:>8} {s['messages']:>8} "
                f"{s['oldest_wait_s']:>8.0f} {s['sealed']:>7} {s['transcribed']:>7} "
                f"{s['audio_s']:>8.0f} {answered:>6}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meetings", type=int, default=10)
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="sealscribe worker -c 1 processes (default 2: one per core; a "
        "third only shares the cores, see bench/scale.py)",
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=10,
        help="the workers' nice value (0: same priority as capture)",
    )
    parser.add_argument(
        "--sample", type=float, default=5.0, help="seconds between samples of the queue"
    )
    parser.add_argument(
        "--print-every",
        type=float,
        default=30.0,
        help="seconds between the rows of the queue series printed",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=3900.0,
        help="give up this long after the publishers stop",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/11",
        help="a Redis database the benchmark may flush",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--publisher", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publisher:
        publisher_main(args.publisher)
        return
    res = run(
        args.meetings,
        args.participants,
        args.minutes,
        args.workers,
        args.worker_nice,
        args.redis_url,
        args.sample,
        args.drain_timeout,
    )
    res = {
        "args": {
            "meetings": args.meetings,
            "participants": args.participants,
            "minutes": args.minutes,
            "workers": args.workers,
            "worker_nice": args.worker_nice,
        },
        "cores": os.cpu_count(),
        **res,
    }
    res["headroom_minutes"] = headroom(res)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print_report(res, args.print_every)


if __name__ == "__main__":
    main()
