"""Broker throughput: Celery task messages a second through one Redis or one RabbitMQ.

    .venv/bin/python -m bench.broker [--broker redis] [--broker amqp://...]
                                     [--messages 50000] [--senders 2] [--consumers 2]
                                     [--prefetch 1,16] [--json]

The sizing model (docs/scaling.md) has 10,000 concurrent meetings send about 12,000 task
messages a second. This measures what one broker on this machine sustains, and the broker
CPU it costs, with exactly what sealscribe sends and how its workers take it:

* **publish**: ``--senders`` processes, each with the real send-only client
  (``pipeline.queue._make``: :func:`pipeline.queue.broker_conf`'s settings, so on RabbitMQ a
  durable quorum queue on the topic exchange and a publisher confirm awaited per message),
  send their share of ``--messages`` :data:`pipeline.queue.TRANSCRIBE` tasks with args
  ``[meeting_id, segment_id]`` (``m_<16 hex>``, ``p.<n>``), as
  :func:`pipeline.queue.enqueue_transcribe` does, one after the other;
* **consume**: ``--consumers`` processes take them with kombu as a Celery worker does: the
  queue the Celery app declares (the same quorum queue on RabbitMQ, the ``sealscribe`` list
  on Redis), the app's transport options, late acknowledgement with the given prefetch (a
  worker's is 1), one ack per message, no task run.

For every prefetch value in ``--prefetch`` it publishes and consumes once (so each publish
row is a repeat of the first). Timed from a barrier all processes start behind to the last
message sent, or acknowledged. Broker CPU is the server's own (the process listening on the
URL's port: ``beam.smp`` for RabbitMQ, ``redis-server`` for Redis, from /proc), in cores
(CPU seconds over wall seconds); client CPU is the senders' or consumers' together; busy
cores is the whole machine's (/proc/stat), so other load shows.

The queues ``sealscribe`` and ``sealscribe-interim`` are purged before and after: run it
only where no sealscribe worker takes from that broker (it waits for any ``sealscribe
worker`` or ``bench.scale`` on this machine to end, and for a RabbitMQ queue's consumers to
leave). Loopback only. Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TICK = os.sysconf("SC_CLK_TCK")
DEFAULT_REDIS = "redis://127.0.0.1:6379/11"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Row:
    broker: str
    phase: str
    messages: int
    seconds: float
    msgs_per_s: float
    broker_cores: float
    msgs_per_broker_core_s: float
    client_cores: float
    busy_cores: float


# --- /proc ---------------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (all their threads), in seconds."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting on I/O)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def listener_pids(port: int) -> list[int]:
    """The process(es) listening on TCP ``port`` of this machine (``ss -ltnp``), else those
    whose command line names the port (a ``redis-server 127.0.0.1:6379``)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=10
        ).stdout
        pids = sorted({int(p) for p in re.findall(r"pid=(\d+)", out)})
        if pids:
            return pids
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if re.search(rf"(redis-server|beam\.smp).*:{port}\b", cmd):
                    found.append(int(entry.name))
    return found


def sealscribe_workers() -> list[int]:
    """Pids of ``sealscribe worker`` (or ``celery -A workers.app worker``) processes here, and
    of a ``bench.scale`` run (which starts them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            argv = [a.decode() for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
            names = [Path(a).name for a in argv[:3]]
            worker = "worker" in argv and ("sealscribe" in names or "workers.app" in argv)
            if worker or "bench.scale" in argv:  # bench.scale starts workers, and times them
                pids.append(int(entry.name))
    return pids


# --- brokers -------------------------------------------------------------------------------


def broker_url(spec: str) -> str:
    url = DEFAULT_REDIS if spec == "redis" else spec
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        raise SystemExit(f"{spec}: loopback brokers only (127.0.0.1)")
    return url


def broker_name(url: str) -> str:
    from pipeline.queue import is_amqp

    return "RabbitMQ" if is_amqp(url) else "Redis"


def broker_port(url: str) -> int:
    from pipeline.queue import is_amqp

    return urlsplit(url).port or (5672 if is_amqp(url) else 6379)


def _queues(url: str) -> Iterator[tuple[str, Any]]:
    """Each of sealscribe's queues, declared as the Celery app declares them (so RabbitMQ
    accepts the declaration; not passive: Redis has no list while it is empty)."""
    from pipeline.queue import INTERIM_QUEUE, QUEUE, _make

    app = _make(url)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=3)
            for name in (QUEUE, INTERIM_QUEUE):
                with conn.channel() as channel:
                    queue = app.amqp.queues[name](channel)
                    queue.declare()
                    yield name, queue
    finally:
        app.close()


def queue_state(url: str) -> dict[str, tuple[int, int]]:
    """Messages waiting and consumers, for each of sealscribe's queues (declared as the
    Celery app declares them, so RabbitMQ accepts the declaration)."""

    state = {}
    for name, queue in _queues(url):
        ok = queue.queue_declare()
        state[name] = (int(ok.message_count), int(ok.consumer_count))
    return state


def purge(url: str) -> int:
    """Empties sealscribe's queues; returns how many messages were dropped."""

    dropped = 0
    for _, queue in _queues(url):
        dropped += int(queue.purge() or 0)
    return dropped


def wait_until_free(url: str, wait_s: float) -> None:
    """Waits (up to ``wait_s``) until no sealscribe worker runs here and, on RabbitMQ, no
    one consumes sealscribe's queues: a purge must not take anyone's work."""
    deadline = time.monotonic() + wait_s
    while True:
        workers = sealscribe_workers()
        busy = {n: c for n, (_, c) in queue_state(url).items() if c}
        if not workers and not busy:
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"still busy after {wait_s:.0f} s: sealscribe workers {workers}, "
                f"queue consumers {busy}"
            )
        print(f"waiting: sealscribe workers {workers}, consumers {busy}", file=sys.stderr)
        time.sleep(15)


# --- the client processes ------------------------------------------------------------------


def sender(url: str, count: int, barrier: Barrier, out: Any) -> None:
    """Sends ``count`` transcribe tasks through sealscribe's client, one at a time."""
    from pipeline.queue import TRANSCRIBE, _make

    app = _make(url)
    meetings = ["m_" + secrets.token_hex(8) for _ in range(50)]
    # one message before the clock: the connection, the queue's declaration and the channel
    # (in confirm mode on RabbitMQ) are made once per process, not per message
    app.send_task(TRANSCRIBE, args=[meetings[0], "p.0"], ignore_result=True)
    barrier.wait()
    start, cpu = time.monotonic(), time.process_time()
    for n in range(1, count + 1):
        app.send_task(TRANSCRIBE, args=[meetings[n % len(meetings)], f"p.{n}"], ignore_result=True)
    out.put((start, time.monotonic(), time.process_time() - cpu, count))
    app.close()


def consumer(url: str, prefetch: int, expected: int, done: Any, barrier: Barrier, out: Any) -> None:
    """Takes messages from the ``sealscribe`` queue as a worker does (late ack, ``prefetch``
    unacknowledged at most) and acks each, until ``expected`` have been acked by all."""
    from kombu.message import Message
    from kombu.messaging import Consumer

    from pipeline.queue import QUEUE, TRANSCRIBE, _make

    app = _make(url)
    queue = app.amqp.queues[QUEUE]
    taken = 0
    last = 0.0
    wrong = 0

    def on_message(body: Any, message: Message) -> None:
        nonlocal taken, last, wrong
        args = body[0] if isinstance(body, list | tuple) else None
        if message.headers.get("task") != TRANSCRIBE or not args or len(args) != 2:
            wrong += 1
        message.ack()  # type: ignore[no-untyped-call]
        taken += 1
        last = time.monotonic()
        with done.get_lock():
            done.value += 1

    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=3)
        channel = conn.channel()
        with Consumer(  # type: ignore[no-untyped-call]
            channel,
            queues=[queue],
            accept=["json"],
            callbacks=[on_message],
            prefetch_count=prefetch,
        ):
            barrier.wait()
            start, cpu = time.monotonic(), time.process_time()
            while done.value < expected:
                with contextlib.suppress(TimeoutError, OSError):
                    conn.drain_events(timeout=0.25)
            used = time.process_time() - cpu
    out.put((start, last or start, used, taken, wrong))
    app.close()


def measure(url: str, phase: str, target: Any, argsets: list[tuple[Any, ...]]) -> Row:
    """Starts one process per argument set, times them from a shared barrier to the last
    one's end, with the broker's CPU and the machine's meanwhile."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(len(argsets) + 1)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*a, barrier, out)) for a in argsets]
    for p in procs:
        p.start()
    pids = listener_pids(broker_port(url))
    barrier.wait(timeout=120)
    broker0, busy0 = cpu_seconds(pids), busy_seconds()
    results = [out.get(timeout=1800) for _ in procs]
    broker1, busy1 = cpu_seconds(pids), busy_seconds()
    for p in procs:
        p.join(timeout=60)
        if p.exitcode:
            raise SystemExit(f"{phase}: a client process failed ({p.exitcode})")
    wall = max(r[1] for r in results) - min(r[0] for r in results)
    messages = sum(r[3] for r in results)
    if any(len(r) > 4 and r[4] for r in results):
        raise SystemExit(f"{phase}: messages not shaped as sealscribe's transcribe tasks")
    broker_cores = (broker1 - broker0) / wall
    return Row(
        broker=broker_name(url),
        phase=phase,
        messages=messages,
        seconds=wall,
        msgs_per_s=messages / wall,
        broker_cores=broker_cores,
        msgs_per_broker_core_s=messages / (broker1 - broker0) if broker1 > broker0 else 0.0,
        client_cores=sum(r[2] for r in results) / wall,
        busy_cores=(busy1 - busy0) / wall,
    )


def run(url: str, messages: int, senders: int, consumers: int, prefetches: list[int]) -> list[Row]:
    from pipeline.queue import QUEUE

    if not listener_pids(broker_port(url)):
        raise SystemExit(f"no broker process found listening on port {broker_port(url)}")
    dropped = purge(url)
    if dropped:
        print(f"{broker_name(url)}: purged {dropped} messages left before", file=sys.stderr)
    rows = []
    try:
        for prefetch in prefetches:
            share = [messages // senders + (i < messages % senders) for i in range(senders)]
            rows.append(measure(url, "publish", sender, [(url, n) for n in share]))
            waiting = queue_state(url)[QUEUE][0]
            done = mp.get_context("spawn").Value("q", 0)
            args = [(url, prefetch, waiting, done) for _ in range(consumers)]
            rows.append(measure(url, f"consume, prefetch {prefetch}", consumer, args))
    finally:
        purge(url)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--broker",
        action="append",
        help=f"'redis' ({DEFAULT_REDIS}) or a RabbitMQ URL (amqp://guest:guest@127.0.0.1:5672/"
        "sealscribe-test); repeat to measure several",
    )
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--consumers", type=int, default=2, help="consumer processes")
    parser.add_argument(
        "--prefetch", default="1,16", help="comma-separated consumer prefetch counts (a worker: 1)"
    )
    parser.add_argument(
        "--wait", type=float, default=1800, help="seconds to wait for running workers to end"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    urls = [broker_url(b) for b in args.broker or ["redis"]]
    prefetches = [int(p) for p in args.prefetch.split(",")]

    rows: list[Row] = []
    for url in urls:
        wait_until_free(url, args.wait)
        rows += run(url, args.messages, args.senders, args.consumers, prefetches)
    if args.json:
        print(
            json.dumps(
                {
                    "cores": os.cpu_count(),
                    "senders": args.senders,
                    "consumers": args.consumers,
                    "rows": [asdict(r) for r in rows],
                },
                indent=2,
            )
        )
        return
    print(
        f"{args.messages} transcribe tasks a run; {args.senders} sender and {args.consumers} "
        f"consumer processes; {os.cpu_count()} cores, clients and broker on one machine"
    )
    head = (
        f"{'broker':<9} {'phase':<20} {'messages':>8} {'seconds':>8} {'msgs/s':>8} "
        f"{'broker cores':>12} {'msgs/s per broker core':>22} {'client cores':>12} "
        f"{'busy cores':>10}"
    )
    print(head)
    for r in rows:
        print(
            f"{r.broker:<9} {r.phase:<20} {r.messages:>8} {r.seconds:>8.2f} {r.msgs_per_s:>8.0f} "
            f"{r.broker_cores:>12.2f} {r.msgs_per_broker_core_s:>22.0f} {r.client_cores:>12.2f} "
            f"{r.busy_cores:>10.2f}"
        )


if __name__ == "__main__":
    main()
