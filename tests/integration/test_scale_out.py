"""Work distribution: several ``sealscribe worker`` processes share one Redis queue. One is
killed with SIGKILL mid-load (a lost pod or host), another drained with SIGTERM (a warm
shutdown, as Kubernetes stops a pod): every segment is transcribed exactly once and each
meeting's transcript is complete and in order. And the worker's metrics, served from its
main process, are the sum over its prefork children and name no meeting, tenant or person.

These tests use their own Redis database (db 7 unless ``SEALSCRIBE_TEST_SCALE_REDIS_URL``
says otherwise), so they never share one with the module worker of test_workers.py.
"""

from __future__ import annotations

import os
import re
import signal
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis

from bench.scale import submit
from pipeline import services
from pipeline.config import Settings, get_settings
from pipeline.net import free_port
from pipeline.queue import use_broker
from pipeline.runtime import Runtime
from pipeline.services.transcripts import read_transcript
from pipeline.store import schema
from pipeline.store.connection import as_str
from tests.conftest import shared_data
from tests.harness.processes import (
    TEST_BROKER_URL,
    WorkerProcess,
    broker_for,
    purge_broker,
    wait_until,
)

# Several workers loading models at once, a kill and a drain under load: longer than most.
pytestmark = pytest.mark.timeout(600)

SCALE_REDIS_URL = os.environ.get("SEALSCRIBE_TEST_SCALE_REDIS_URL", "redis://127.0.0.1:6379/7")
#: Redelivery after a SIGKILL waits this long: longer than any batch takes here (a lease
#: shorter than a batch would let a second worker take the same segment), short enough
#: for the test.
VISIBILITY = "20"


@pytest.fixture
def scale_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A private home and temp directory, and the scale database, for this process (the
    client side) and for the workers it starts."""
    values = {
        "SEALSCRIBE_HOME": str(tmp_path / "home"),
        "SEALSCRIBE_REDIS_URL": SCALE_REDIS_URL,
        "SEALSCRIBE_BROKER_URL": TEST_BROKER_URL,
        "SEALSCRIBE_KEY_PROVIDER": "local",
        "SEALSCRIBE_VISIBILITY": VISIBILITY,
        "TMPDIR": str(tmp_path),
    }
    r = redis.Redis.from_url(SCALE_REDIS_URL)
    r.flushdb()
    purge_broker(broker_for(SCALE_REDIS_URL))
    for k in ("SEALSCRIBE_HOME", "SEALSCRIBE_REDIS_URL", "SEALSCRIBE_BROKER_URL"):
        monkeypatch.setenv(k, values[k])
    monkeypatch.setenv("SEALSCRIBE_KEY_PROVIDER", "local")
    get_settings.cache_clear()
    previous = use_broker(broker_for(SCALE_REDIS_URL))
    try:
        yield values
    finally:
        use_broker(previous)
        get_settings.cache_clear()
        r.flushdb()
        r.close()


@pytest.fixture
def rt(scale_env: dict[str, str]) -> Runtime:
    return Runtime.from_settings(Settings.from_env(scale_env), actor="test")


def start_workers(
    n: int, env: dict[str, str], logs: Path, args: tuple[str, ...] = ()
) -> list[WorkerProcess]:
    """``n`` worker processes, loading their models at the same time."""

    def one(i: int) -> WorkerProcess:
        return WorkerProcess(Path(env["SEALSCRIBE_HOME"]), logs / f"worker{i}.log", args, **env)

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
    started = [f.result() for f in futures if f.exception() is None]
    if len(started) < n:  # stop the others: a worker left running would serve later tests
        for w in started:
            w.stop()
        raise next(e for f in futures if (e := f.exception()) is not None)
    return started


def pool_pids(w: WorkerProcess) -> set[int]:
    """The worker's prefork children: the processes that run tasks (and hold leases)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{w.proc.pid}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


def lease_holders(rt: Runtime, meetings: list[tuple[str, int]]) -> dict[tuple[str, str], int]:
    """Pending segment -> pid of the worker process whose batch holds its lease."""
    pending = [(m, sid) for m, _ in meetings for sid in rt.store.segments.pending_audio(m)]
    owners = rt.store.redis.mget([schema.lease(m, sid) for m, sid in pending]) if pending else []
    held = {}
    for segment, owner in zip(pending, owners, strict=True):
        found = re.match(r"worker:[^:]+:(\d+):", as_str(owner or b""))
        if found:
            held[segment] = int(found.group(1))
    return held


def test_three_workers_one_killed_one_drained_each_segment_once_in_order(
    scale_env: dict[str, str], rt: Runtime, tmp_path: Path
) -> None:
    tenant = services.create_tenant(rt, "Acme")[0].id
    sources = sorted(shared_data("ami-es2004", "sources").glob("source*.wav"))
    fleurs = sorted(shared_data("fleurs-en").glob("*.ogg"))[:4]
    workers = start_workers(3, scale_env, tmp_path)
    victim, drained, survivor = workers
    try:
        # Four AMI headset tracks and four fleurs clips, each its own meeting, cut into
        # voice-activity utterances as live capture cuts them: 50-odd segments at once.
        meetings = [
            submit(rt, tenant, path, "live", participant="Alice") for path in [*sources, *fleurs]
        ]
        total = sum(n for _, n in meetings)
        assert total >= 40
        pids = {w: pool_pids(w) for w in workers}
        seen: set[int] = set()  # pool processes seen holding a lease: who got work

        def holding(w: WorkerProcess) -> set[tuple[str, str]]:
            held = lease_holders(rt, meetings)
            seen.update(held.values())
            return {seg for seg, pid in held.items() if pid in pids[w]}

        # SIGKILL the first worker (main process and child) in the middle of a batch.
        wait_until(lambda: holding(victim), 30, "the victim holding leases", interval=0.02)
        victim.kill()
        orphaned = holding(victim)  # leased by a dead process: back after the lease lapses
        assert orphaned, "the killed worker's batch finished before it died"

        # Drain the second: SIGTERM to its main process only, as Kubernetes stops a pod.
        wait_until(lambda: holding(drained), 30, "the drained worker holding leases", interval=0.02)
        in_hand = holding(drained)
        os.kill(drained.proc.pid, signal.SIGTERM)
        assert drained.proc.wait(timeout=60) == 0
        assert b"Warm shutdown" in drained.log.read_bytes()
        # A warm shutdown finishes the batch in hand; nothing of it waits for redelivery.
        for meeting_id, sid in in_hand:
            assert sid not in rt.store.segments.pending_audio(meeting_id)

        def all_done() -> bool:
            holding(survivor)
            return not any(rt.store.segments.pending_count(m) for m, _ in meetings)

        wait_until(all_done, 120, "every meeting transcribed", interval=0.2)
    finally:
        for w in workers:
            w.stop()
    assert seen >= set().union(*pids.values()), "every worker took part before the kills"
    assert rt.store.redis.zcard(schema.PENDING) == 0
    for meeting_id, n in meetings:
        # Stored exactly once: one caption event per stored transcript, none repeated.
        events: Any = rt.store.redis.xrange(schema.meeting_captions(meeting_id))
        sids = [as_str(fields[b"sid"]) for _, fields in events]
        assert sorted(sids) == sorted(f"Alice.{i}" for i in range(n)), meeting_id
        # Complete and in order, whichever worker transcribed which segment.
        transcript = read_transcript(rt, meeting_id)
        assert [s.seq for s in transcript] == list(range(n))
        starts = [s.start_ms for s in transcript]
        assert starts == sorted(starts)
    assert any(s.text for m, _ in meetings for s in read_transcript(rt, m))


def test_worker_metrics_are_summed_over_its_processes_and_name_nobody(
    scale_env: dict[str, str], rt: Runtime, tmp_path: Path
) -> None:
    tenant = services.create_tenant(rt, "Zephyrine Holdings")[0].id
    port = free_port()
    (worker,) = start_workers(
        1, scale_env, tmp_path, ("--concurrency", "2", "--metrics-port", str(port))
    )
    try:
        clips = sorted(shared_data("fleurs-en").glob("*.ogg"))[:6]
        meetings = [
            submit(rt, tenant, clip, "live", participant="Quillon Marchetti") for clip in clips
        ]
        wait_until(
            lambda: not any(rt.store.segments.pending_count(m) for m, _ in meetings),
            90,
            "every segment transcribed",
            interval=0.2,
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        worker.stop()
    values = {
        name: float(v) for name, v in re.findall(r"(?m)^(sealscribe_\S+) ([0-9.e+-]+)$", text)
    }
    total = sum(n for _, n in meetings)
    # Counted in the children, served by the main process: the sum, whichever child worked.
    assert values["sealscribe_segments_transcribed_total"] == total
    assert values["sealscribe_audio_transcribed_seconds_total"] > 30
    assert values["sealscribe_transcription_rtf_count"] >= 1
    assert (
        0
        < values["sealscribe_transcription_rtf_sum"] / values["sealscribe_transcription_rtf_count"]
        < 5
    )
    assert values['sealscribe_key_unwraps_total{purpose="transcribe"}'] >= 1
    outcomes = {k: v for k, v in values.items() if k.startswith("sealscribe_transcribe_tasks")}
    assert values['sealscribe_transcribe_tasks_total{outcome="transcribed"}'] >= 1
    assert sum(outcomes.values()) >= total
    # Labels name kinds and reasons only: no meeting, tenant or participant.
    for secret in (tenant, "Zephyrine", "Quillon", "Marchetti", *(m for m, _ in meetings)):
        assert secret not in text
