"""Seal and open throughput (MB/s) of the sealed-segment format, beside raw AES-256-GCM from
``cryptography`` in the same run, on typical segment sizes; then the cost of unwrapping a
data key through OpenBao Transit (a real ``bao`` dev server on loopback), and what the
worker's per-meeting data-key cache saves.

    .venv/bin/python -m bench.seal [--seconds 1.0] [--unwraps 300]

A 10 s utterance of 16 kHz mono s16 PCM is 320 KB; a transcript segment is ~1 KB.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from keys import segment
from keys.segment import SegmentContext, SegmentKind
from keys.types import DataKey

SIZES = {
    "transcript 1 KB": 1024,
    "utterance 3 s": 96_000,
    "utterance 10 s": 320_000,
    "long 30 s": 960_000,
}


def rate(fn: Callable[[], object], nbytes: int, seconds: float) -> float:
    fn()  # warm up
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n * nbytes / elapsed / 1e6


def transit_unwrap(n: int) -> dict[str, float]:
    """p50 / p95 of one unwrap through Transit, and per-segment key cost with the cache."""
    import statistics
    import tempfile
    from pathlib import Path

    from keys.transit import TransitConfig, TransitKeyProvider
    from keys.types import KeyContext, KeyUse, Purpose
    from tests.harness.bao import BaoServer
    from workers.keycache import DataKeyCache

    server = BaoServer(Path(tempfile.mkdtemp(prefix="bench-bao-")))
    try:
        provider = TransitKeyProvider(TransitConfig(url=server.url, token=server.token))
        provider.create("t_bench")
        ctx = KeyContext("t_bench", "m_bench", KeyUse.AUDIO)
        wrapped = provider.wrap("t_bench", DataKey.generate(), ctx, Purpose.TRANSCRIBE)
        provider.unwrap("t_bench", wrapped, ctx, Purpose.TRANSCRIBE)  # warm the connection
        times = []
        for _ in range(n):
            start = time.perf_counter()
            provider.unwrap("t_bench", wrapped, ctx, Purpose.TRANSCRIBE)
            times.append((time.perf_counter() - start) * 1000)
        cache = DataKeyCache(ttl=60)
        calls = 0

        def counted() -> DataKey:
            nonlocal calls
            calls += 1
            return provider.unwrap("t_bench", wrapped, ctx, Purpose.TRANSCRIBE)

        start = time.perf_counter()
        for _ in range(n):  # n segments of one meeting
            cache.get("t_bench", "m_bench", KeyUse.AUDIO, wrapped.to_str(), counted)
        cached_ms = (time.perf_counter() - start) * 1000 / n
    finally:
        server.stop()
    q = statistics.quantiles(times, n=20)
    return {
        "unwrap_p50_ms": statistics.median(times),
        "unwrap_p95_ms": q[18],
        "cached_per_segment_ms": cached_ms,
        "kms_calls_for_segments": calls,
        "segments": n,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument(
        "--unwraps", type=int, default=300, help="unwraps through Transit to time (0 to skip)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args()

    key = DataKey.generate()
    ctx = SegmentContext("t_bench", "m_bench", "p_bench", 1, SegmentKind.AUDIO)
    gcm = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    rows: list[dict[str, Any]] = []
    for label, size in SIZES.items():
        data = os.urandom(size)
        sealed = segment.seal(key, ctx, data)
        raw = gcm.encrypt(nonce, data, None)
        cases: dict[str, Callable[[], object]] = {
            "seal_MBps": functools.partial(segment.seal, key, ctx, data),
            "open_MBps": functools.partial(segment.open, key, ctx, sealed),
            "aesgcm_encrypt_MBps": functools.partial(gcm.encrypt, nonce, data, None),
            "aesgcm_decrypt_MBps": functools.partial(gcm.decrypt, nonce, raw, None),
        }
        row: dict[str, Any] = {"payload": label, "bytes": size}
        row.update({name: rate(fn, size, args.seconds) for name, fn in cases.items()})
        rows.append(row)
    transit = transit_unwrap(args.unwraps) if args.unwraps else None
    if args.json:
        print(
            json.dumps(
                {
                    "machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(),
                    "rows": rows,
                    "transit": transit,
                },
                indent=2,
            )
        )
        return
    print(
        f"{'payload':<16} {'seal':>9} {'open':>9} {'AES-GCM enc':>12} {'AES-GCM dec':>12}   (MB/s)"
    )
    for r in rows:
        print(
            f"{r['payload']:<16} {r['seal_MBps']:>9.0f} {r['open_MBps']:>9.0f} "
            f"{r['aesgcm_encrypt_MBps']:>12.0f} {r['aesgcm_decrypt_MBps']:>12.0f}"
        )
    ten = next(r for r in rows if r["payload"] == "utterance 10 s")
    audio_mbps = 16000 * 2 / 1e6
    print(
        f"\nOne core seals {ten['seal_MBps'] / audio_mbps:,.0f}x real time of 16 kHz audio "
        f"({ten['seal_MBps'] / ten['aesgcm_encrypt_MBps']:.0%} of raw AES-GCM speed)."
    )
    if transit:
        print(
            f"\nUnwrap through OpenBao Transit (loopback, {transit['segments']} calls): "
            f"p50 {transit['unwrap_p50_ms']:.2f} ms, p95 {transit['unwrap_p95_ms']:.2f} ms"
        )
        print(
            f"With the worker's data-key cache, {transit['segments']} segments of one "
            f"meeting made {transit['kms_calls_for_segments']} KMS call(s): "
            f"{transit['cached_per_segment_ms']:.3f} ms of key cost per segment"
        )


if __name__ == "__main__":
    main()
