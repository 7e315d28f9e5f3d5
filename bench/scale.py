"""Scale-out: throughput with 1, 2 and 3 worker processes on one machine, same corpus.

    .venv/bin/python -m bench.scale [--workers 1,2,3] [--mode live|file] [--threads N]
                                    [--broker redis] [--broker amqp://...]
                                    [--store redis] [--store cluster] [--files N]
                                    [--json] [--save PATH]

Each worker is its own ``sealscribe worker -c 1`` process (as one pod or container each would
be), started fresh for every row, all against one store that the benchmark flushes:

* ``--store redis`` (the default): one Redis database (``--redis-url``, default db 11);
* ``--store cluster``: a Redis Cluster of six nodes on loopback ports (three primaries, each
  with a replica: ``tests/harness/cluster.py``) that the benchmark starts for its rows and
  stops after; the workers take its ``redis+cluster://`` URL. A cluster carries no Celery
  messages, so it needs a RabbitMQ broker: ``--store cluster`` with ``--broker redis`` (or
  no ``--broker``) is refused.

Celery's messages wait in the store's Redis too (``--broker redis``, the default), or, with
``--broker amqp://...``, in RabbitMQ (durable quorum queues, publisher confirms). Several
``--store`` and ``--broker`` options run every row on each combination of them, side by side
in one table (and one JSON: ``--json`` prints it instead of the table, ``--save PATH`` writes
it beside the table), each row labelled with its store and broker. The corpus is
bench/transcribe.py's (the ten fleurs-en clips and the four AMI ES2004 headset sources; its
first N files with ``--files N``, for a short check), one meeting per file:

* ``--mode live`` (default) cuts each file into voice-activity utterances, as the bot's
  capture does in a meeting, and seals and queues every one at once: a backlog of short
  segments, what workers drain when many meetings speak at the same time;
* ``--mode file`` submits each file as ``sealscribe transcribe`` does (utterances joined into
  windows of up to 28 s): few, long segments.

Timed from the first submit until the last transcript is stored, workers already loaded.
Reports audio seconds per wall second, segments per second, and for each worker process
(Celery main process plus its prefork child): the CPU it used (cores, averaged over the
run), its peak resident memory (VmHWM, summed over both processes: what a pod's memory
request must cover), and how many segments it transcribed (from its ``--metrics-port``).
Also reports the busy cores of everything else on the machine during the run (Redis, and
any other load: compare runs only where it is small), and what Redis holds (MEMORY USAGE of
every key; on a cluster, of every key on each primary, replicas not counted): the sealed
audio waiting at its largest, per second of speech, and what stays after the drain (sealed
transcripts and their records) per segment: the sizing model's unit costs. Linux only
(reads /proc).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.transcribe import corpus
from pipeline.net import free_port
from pipeline.store import schema

TICK = os.sysconf("SC_CLK_TCK")
STORES = ("redis", "cluster")
#: every key of the store, and the sealed audio segments waiting (``ss:audio:{m}:SEGMENT``:
#: a hash tag's braces are literal in a SCAN pattern)
ALL_KEYS = f"{schema.PREFIX}*"
AUDIO_KEYS = schema.audio("*", "*")
#: SEALSCRIBE_REDIS_WAIT_REPLICAS as given (a cluster's rows set it to 0)
WAIT_REPLICAS = os.environ.get("SEALSCRIBE_REDIS_WAIT_REPLICAS")


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def pids(self) -> list[int]:
        """The main process and its children (the prefork pool)."""
        pids = [self.proc.pid]
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                pids += [int(p) for p in (task / "children").read_text().split()]
        return pids

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICK

    def memory_mib(self, field: str) -> float:
        """VmRSS or VmHWM (peak), summed over the worker's processes."""
        kib = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(field + ":"):
                        kib += int(line.split()[1])
        return kib / 1024

    def transcribed(self) -> int:
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name == "sealscribe_segments_transcribed":
                return int(sum(s.value for s in family.samples if s.name.endswith("_total")))
        return 0


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy so far (from /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / TICK


@contextlib.contextmanager
def workers(n: int, env: dict[str, str], logs: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    try:
        for i in range(n):
            log = logs / f"worker{i}.log"
            port = free_port()
            proc = subprocess.Popen(  # our own interpreter and fixed arguments
                [
                    sys.executable,
                    "-m",
                    "pipeline.cli",
                    "worker",
                    "-c",
                    "1",
                    "--loglevel",
                    "info",
                    "--metrics-port",
                    str(port),
                    "-n",  # one control queue each on RabbitMQ
                    f"bench{i}@%h",
                ],
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            started.append(Worker(proc, log, port))
        deadline = time.monotonic() + 180
        for w in started:  # loaded in parallel; ready once its child has loaded the model
            while b"ready." not in w.log.read_bytes():
                if w.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start; see {w.log}")
                time.sleep(0.2)
        yield started
    finally:
        for w in started:  # warm shutdown of the main process only, as Kubernetes does
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        for w in started:
            try:
                w.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(w.proc.pid, signal.SIGKILL)
                w.proc.wait()


def utterances(path: Path) -> list[Any]:
    """The file's utterances, as live capture cuts them."""
    from pipeline.audio.decode import decode_file
    from pipeline.audio.segmenter import Segmenter

    segmenter = Segmenter()
    pcm = decode_file(path, 36000)
    return [*segmenter.feed(pcm), *segmenter.flush()]


def submit(
    rt: Any, tenant_id: str, path: Path, mode: str, participant: str = "speaker"
) -> tuple[str, int]:
    """Seal and queue one file as one meeting; (meeting id, segments)."""
    from pipeline.audio.decode import SAMPLE_RATE
    from pipeline.capture.file import capture_segments
    from pipeline.models import AudioSegment
    from pipeline.services.meetings import create_meeting
    from pipeline.services.transcripts import submit_file

    if mode == "file":
        job = submit_file(rt, path, tenant_id)
        return job.meeting.id, job.segments
    meeting = create_meeting(rt, tenant_id, transcription=True)
    segments = [
        AudioSegment(participant, seq, utt.start_ms, SAMPLE_RATE, utt.pcm)
        for seq, utt in enumerate(utterances(path))
    ]
    return meeting.id, capture_segments(rt, meeting, segments).stored


def held_bytes(rt: Any, pattern: str = ALL_KEYS, values: bool = False) -> tuple[int, int]:
    """(bytes Redis holds for the keys matching ``pattern``, by MEMORY USAGE; with
    ``values``, the length of their string values, else how many there are): exact per key,
    unlike INFO's total, which moves with client buffers. On a cluster, SCAN walks every
    primary and the (non-transactional) pipeline sends each key's commands to its node."""
    keys = list(rt.store.redis.scan_iter(match=pattern, count=1000))
    if not keys:
        return 0, 0
    pipe = rt.store.redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    for key in keys:
        pipe.strlen(key) if values else pipe.exists(key)
    found = pipe.execute()
    usage = sum(int(u or 0) for u in found[: len(keys)])
    return usage, sum(int(n or 0) for n in found[len(keys) :])


def broker_name(url: str) -> str:
    """A broker as the table shows it: ``redis`` or RabbitMQ's host (never a password)."""
    if url == "redis":
        return "redis"
    host = url.rpartition("@")[2].split("/")[0]
    return f"amqp {host}"


@contextlib.contextmanager
def store_url(store: str, redis_url: str) -> Iterator[str]:
    """The URL the workers take as ``SEALSCRIBE_REDIS_URL`` for ``store``: ``redis_url``, or
    a six-node Redis Cluster started for the block (stopped, and its files removed, after)."""
    if store == "redis":
        yield redis_url
        return
    from tests.harness.cluster import redis_cluster

    with (
        tempfile.TemporaryDirectory(prefix="sealscribe-scale-cluster-") as workdir,
        redis_cluster(Path(workdir)) as cluster,
    ):
        yield cluster.url


def run(
    n: int,
    mode: str,
    threads: int,
    redis_url: str,
    items: list[Path],
    broker: str = "redis",
    store: str = "redis",
) -> dict[str, Any]:
    """One row: ``n`` workers drain the corpus from the store at ``redis_url`` (``store``:
    ``redis`` or ``cluster``, its label); ``broker`` is ``redis`` (the store's) or a RabbitMQ
    URL."""
    home = Path(tempfile.mkdtemp(prefix="sealscribe-scale-"))
    broker_url = redis_url if broker == "redis" else broker
    settings = {
        "SEALSCRIBE_REDIS_URL": redis_url,
        "SEALSCRIBE_BROKER_URL": broker_url,
        "SEALSCRIBE_HOME": str(home),
        "SEALSCRIBE_KEY_PROVIDER": "local",
    }
    if store == "cluster":  # a cluster takes no WAIT (its primaries' min-replicas-to-write)
        settings["SEALSCRIBE_REDIS_WAIT_REPLICAS"] = "0"
    elif WAIT_REPLICAS is not None:  # as given, after a cluster's row
        settings["SEALSCRIBE_REDIS_WAIT_REPLICAS"] = WAIT_REPLICAS
    env = {**os.environ, **settings}
    if threads:
        env["SEALSCRIBE_CPU_THREADS"] = str(threads)
    os.environ.update(settings)
    from pipeline import services
    from pipeline.config import get_settings
    from pipeline.queue import use_broker
    from pipeline.runtime import Runtime

    get_settings.cache_clear()
    use_broker(broker_url)
    purge_queues()
    rt = Runtime.from_settings(get_settings(), actor="bench")
    rt.store.redis.flushdb()  # on a cluster client: FLUSHDB on every primary
    logs = home / "logs"
    logs.mkdir(parents=True)
    try:
        tenant, _ = services.create_tenant(rt, "bench")
        with workers(n, env, logs) as ws:
            idle_rss = [w.memory_mib("VmRSS") for w in ws]
            cpu0 = [w.cpu_seconds() for w in ws]
            busy0, own0 = machine_busy_seconds(), time.process_time()
            memory0, _ = held_bytes(rt)
            waiting = (0, 0)  # sealed audio waiting at its largest: (bytes held, value bytes)
            start = time.perf_counter()
            meetings = [submit(rt, tenant.id, path, mode) for path in items]
            while any(rt.store.segments.pending_count(m) for m, _ in meetings):
                if time.perf_counter() - start > 3600:
                    raise RuntimeError("not done after an hour")
                waiting = max(waiting, held_bytes(rt, AUDIO_KEYS, values=True))
                time.sleep(0.05)
            wall = time.perf_counter() - start
            cpu = [w.cpu_seconds() - c for w, c in zip(ws, cpu0, strict=True)]
            busy, own = machine_busy_seconds() - busy0, time.process_time() - own0
            peak = [w.memory_mib("VmHWM") for w in ws]
            done = [w.transcribed() for w in ws]
        segments = sum(s for _, s in meetings)
        time.sleep(1.0)  # the last transcript's caption entry and counters land
        kept = held_bytes(rt)[0] - memory0  # transcripts, manifests, captions: all that stays
        stored = sum(rt.store.segments.transcript_count(m) for m, _ in meetings)
        if stored != segments:
            raise RuntimeError(f"{stored} transcripts stored for {segments} segments")
        return {
            "store": store,
            "broker": broker_name(broker),
            "workers": n,
            "wall_s": wall,
            "segments": segments,
            # the machine's busy cores beside the workers and this client: Redis, and
            # anything else running (a benchmark wants it near zero)
            "other_cores": max(0.0, (busy - sum(cpu) - own) / wall),
            # Redis: the sealed audio waiting at its largest, per second of speech it holds
            # (16 kHz 16-bit: 32,000 value bytes a second), and what stays after (sealed
            # transcripts and their records)
            "redis_peak_mib": waiting[0] / 2**20,
            "redis_kib_per_speech_s": waiting[0] / 1024 / max(1.0, waiting[1] / 32000),
            "redis_kept_kib": kept / 1024,
            "per_worker": [
                {"cpu_cores": c / wall, "peak_rss_mib": p, "idle_rss_mib": r, "segments": d}
                for c, p, r, d in zip(cpu, peak, idle_rss, done, strict=True)
            ],
        }
    finally:
        rt.store.redis.flushdb()
        rt.store.redis.close()
        shutil.rmtree(home, ignore_errors=True)


def purge_queues() -> None:
    """Nothing an earlier run left in the broker's queues (Redis: flushed with the store)."""
    from pipeline.queue import INTERIM_QUEUE, QUEUE, client

    with client().connection_for_write() as conn:
        for name in (QUEUE, INTERIM_QUEUE):  # not declared yet: nothing to purge
            with contextlib.suppress(*conn.channel_errors), conn.channel() as channel:
                channel.queue_purge(name)


def measure(
    counts: Sequence[str],
    mode: str,
    threads: int,
    redis_url: str,
    items: list[Path],
    brokers: Sequence[str],
    stores: Sequence[str],
) -> list[dict[str, Any]]:
    """Every row: each store (a cluster started once for all of its rows), each broker on
    it, each worker count."""
    rows = []
    for store in stores:
        with store_url(store, redis_url) as url:
            rows += [
                run(int(n), mode, threads, url, items, broker, store)
                for broker in brokers
                for n in counts
            ]
    return rows


#: the width of a row's label: its store and broker
LABEL = 30


def label(row: dict[str, Any]) -> str:
    return f"{row['store']} / {row['broker']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", default="1,2,3", help="comma-separated worker process counts (default 1,2,3)"
    )
    parser.add_argument("--mode", choices=("live", "file"), default="live")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="SEALSCRIBE_CPU_THREADS per worker (0: the worker's default, one per core for -c 1)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/11",
        help="a Redis database the benchmark may flush",
    )
    parser.add_argument(
        "--broker",
        action="append",
        help="'redis' (the store's Redis, the default) or a RabbitMQ URL (amqp://user:pass@"
        "host:port/vhost); repeat to compare brokers in one run",
    )
    parser.add_argument(
        "--store",
        action="append",
        choices=STORES,
        help="'redis' (one Redis: --redis-url, the default) or 'cluster' (a six-node Redis "
        "Cluster the benchmark starts; needs --broker amqp://...); repeat to compare stores "
        "in one run",
    )
    parser.add_argument(
        "--files",
        type=int,
        default=0,
        metavar="N",
        help="only the corpus's first N files (a short check; default: all)",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON, not the table")
    parser.add_argument(
        "--save", type=Path, metavar="PATH", help="also write the JSON to PATH (with the table)"
    )
    args = parser.parse_args()
    brokers: list[str] = list(dict.fromkeys(args.broker or ["redis"]))
    stores: list[str] = list(dict.fromkeys(args.store or ["redis"]))
    if "cluster" in stores and "redis" in brokers:
        parser.error(
            "--store cluster needs a RabbitMQ broker (--broker amqp://user:pass@host:port/vhost), "
            "not --broker redis (the default): Celery has no transport for a Redis Cluster"
        )
    if args.files < 0:
        parser.error("--files must be 0 (all) or more")

    from pipeline.audio.decode import decode_file

    items = [path for path, _ in corpus()]
    if args.files:
        items = items[: args.files]
    audio_s = sum(len(decode_file(p, 36000)) / 32000 for p in items)
    # the speech in it, as live capture cuts it: what a worker transcribes in live mode
    speech_s = sum(len(u.pcm) / 32000 for p in items for u in utterances(p))
    rows = measure(
        args.workers.split(","), args.mode, args.threads, args.redis_url, items, brokers, stores
    )
    for row in rows:
        row["audio_s_per_wall_s"] = audio_s / row["wall_s"]
        row["segments_per_s"] = row["segments"] / row["wall_s"]
        # speech transcribed per core-second the workers used (live mode)
        row["speech_s_per_core_s"] = speech_s / (
            sum(p["cpu_cores"] for p in row["per_worker"]) * row["wall_s"]
        )
        # unit costs for the sizing model (docs/scaling.md)
        row["redis_bytes_per_transcript_segment"] = row["redis_kept_kib"] * 1024 / row["segments"]
    result = {
        "audio_s": audio_s,
        "speech_s": speech_s,
        "files": len(items),
        "mode": args.mode,
        "threads": args.threads or "default",
        "cores": os.cpu_count(),
        "stores": stores,
        "brokers": [broker_name(b) for b in brokers],
        "rows": rows,
    }
    if args.save:
        args.save.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{len(items)} files, {audio_s:.0f} s of audio ({speech_s:.0f} s of speech as live "
        f"capture cuts it), mode {args.mode}, "
        f"{rows[0]['segments']} segments; {os.cpu_count()} cores; threads per worker: "
        f"{args.threads or 'default'}"
    )
    print(
        f"{'store / broker':<{LABEL}} {'workers':>7} {'wall s':>7} {'audio s/wall s':>15} "
        f"{'segments/s':>11} {'CPU cores/worker':>17} {'peak RSS MiB/worker':>20} "
        f"{'segments per worker':>20} {'other cores':>11} {'speech s/core s':>15}"
    )
    for row in rows:
        per = row["per_worker"]
        cores = "/".join(f"{p['cpu_cores']:.2f}" for p in per)
        peak = "/".join(f"{p['peak_rss_mib']:.0f}" for p in per)
        done = "/".join(str(p["segments"]) for p in per)
        print(
            f"{label(row):<{LABEL}} {row['workers']:>7} {row['wall_s']:>7.1f} "
            f"{row['audio_s_per_wall_s']:>15.1f} {row['segments_per_s']:>11.2f} "
            f"{cores:>17} {peak:>20} {done:>20} {row['other_cores']:>11.2f} "
            f"{row['speech_s_per_core_s']:>15.1f}"
        )
    print("Redis: peak backlog and what stays (transcripts and their records):")
    for row in rows:
        print(
            f"{label(row):<{LABEL}} {row['workers']:>7} peak {row['redis_peak_mib']:7.1f} MiB "
            f"({row['redis_kib_per_speech_s']:.1f} KiB per s of speech waiting); kept "
            f"{row['redis_kept_kib']:7.1f} KiB "
            f"({row['redis_bytes_per_transcript_segment']:.0f} B per transcript segment)"
        )


if __name__ == "__main__":
    main()
