"""The store's primary lost: how long a failover takes, what asynchronous replication loses,
and what waiting for the replica (``SEALSCRIBE_REDIS_WAIT_REPLICAS=1``) costs.

    .venv/bin/python -m bench.failover [--segments 300] [--seconds 10] [--trials 3] [--json]

Runs on real ``redis-server`` processes on loopback (a primary, one replica, three sentinels
that call a primary down after 1 s: ``tests/harness/sentinel.py``), through sealscribe's own
store client (``redis+sentinel://``):

* **cost**: ``--segments`` sealed audio segments of ``--seconds`` of speech each (random
  bytes of a sealed segment's size: 16 kHz 16-bit PCM plus the seal) stored one after
  another with ``put_audio``, with and without waiting for the replica; milliseconds per
  write (p50, p95) and writes per second.
* **loss**: a writer stores segments as fast as it can (as capture does when a backlog
  drains); the primary is SIGKILLed 2 s in; the writer retries each write until the new
  primary takes it. Counted: writes the old primary acknowledged that the new one does not
  have, and the seconds from the kill until a write succeeds again. ``--trials`` groups
  each, with and without waiting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pipeline.errors import StoreUnavailable
from pipeline.models import SealedSegment
from pipeline.store import Store, schema

SEALED_OVERHEAD = 64  # a sealed segment's header and tag, about
MEETING = "m-failover"


def sealed(seq: int, seconds: float) -> SealedSegment:
    size = int(seconds * 16000 * 2) + SEALED_OVERHEAD
    return SealedSegment(MEETING, "alice", seq, os.urandom(size))


def cost(url: str, wait: int, n: int, seconds: float) -> dict[str, Any]:
    store = Store.from_url(url, audio_ttl=600, wait_replicas=wait, wait_ms=1000)
    segments = [sealed(seq, seconds) for seq in range(n)]
    times = []
    start = time.perf_counter()
    for segment in segments:
        t0 = time.perf_counter()
        store.segments.put_audio(segment)
        times.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - start
    store.redis.delete(*[schema.audio(MEETING, s.segment_id) for s in segments])
    store.redis.delete(schema.meeting_audio(MEETING), schema.PENDING)
    times.sort()
    return {
        "wait_replicas": wait,
        "segments": n,
        "segment_s": seconds,
        "p50_ms": statistics.median(times),
        "p95_ms": times[int(0.95 * (n - 1))],
        "writes_per_s": n / wall,
        "mib_per_s": n * len(segments[0].sealed) / wall / 2**20,
    }


def loss(workdir: Path, wait: int, seconds: float) -> dict[str, Any]:
    from tests.harness.sentinel import sentinel_group

    with sentinel_group(workdir) as group:
        store = Store.from_url(group.url, audio_ttl=600, wait_replicas=wait, wait_ms=1000)
        acknowledged: list[str] = []
        stop = threading.Event()
        down: list[float] = []

        def writer() -> None:
            seq = 0
            while not stop.is_set():
                segment = sealed(seq, seconds)
                stored = False
                while not stored and not stop.is_set():
                    try:
                        store.segments.put_audio(segment)
                        stored = True
                    except StoreUnavailable:
                        if not down:  # the first failed write: the outage has begun
                            down.append(time.monotonic())
                        time.sleep(0.01)
                if not stored:  # stopped while retrying: never acknowledged
                    break
                if len(down) == 1:  # the first write after the outage
                    down.append(time.monotonic())
                acknowledged.append(segment.segment_id)
                seq += 1

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(2.0)
        old = group.primary.port
        killed = time.monotonic()
        group.primary.kill()
        failover_s = group.wait_failover(old)
        time.sleep(1.0)
        stop.set()
        thread.join()
        have = set(store.segments.pending_audio(MEETING))
        lost = [sid for sid in acknowledged if sid not in have]
        return {
            "wait_replicas": wait,
            "acknowledged": len(acknowledged),
            "lost": len(lost),
            "sentinels_agreed_s": failover_s,
            "writes_again_after_s": (down[1] - killed) if len(down) == 2 else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0, help="speech per segment")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from tests.harness.sentinel import sentinel_group

    root = Path(tempfile.mkdtemp(prefix="sealscribe-failover-"))
    with sentinel_group(root / "cost") as group:
        costs = [cost(group.url, wait, args.segments, args.seconds) for wait in (0, 1, 0, 1)]
    losses = [
        loss(root / f"loss-{wait}-{trial}", wait, args.seconds)
        for trial in range(args.trials)
        for wait in (0, 1)
    ]
    result = {"cost": costs, "loss": losses}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"sealed writes of {args.seconds:g} s of speech, {args.segments} each run:")
    print(f"{'wait':>4} {'p50 ms':>7} {'p95 ms':>7} {'writes/s':>9} {'MiB/s':>7}")
    for row in costs:
        print(
            f"{row['wait_replicas']:>4} {row['p50_ms']:>7.2f} {row['p95_ms']:>7.2f} "
            f"{row['writes_per_s']:>9.0f} {row['mib_per_s']:>7.1f}"
        )
    print("primary SIGKILLed under a writer going flat out:")
    print(f"{'wait':>4} {'acknowledged':>12} {'lost':>5} {'sentinels s':>11} {'writes s':>9}")
    for row in losses:
        again = row["writes_again_after_s"]
        print(
            f"{row['wait_replicas']:>4} {row['acknowledged']:>12} {row['lost']:>5} "
            f"{row['sentinels_agreed_s']:>11.2f} {again if again is None else f'{again:.2f}':>9}"
        )


if __name__ == "__main__":
    main()
