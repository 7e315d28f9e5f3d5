"""Seal and open throughput (MB/s) of the sealed-segment format, beside raw AES-256-GCM from
``cryptography`` in the same run, on typical segment sizes.

    .venv/bin/python -m bench.seal [--seconds 1.0]

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

SIZES = {"transcript 1 KB": 1024, "utterance 3 s": 96_000, "utterance 10 s": 320_000,
         "long 30 s": 960_000}


def rate(fn: Callable[[], object], nbytes: int, seconds: float) -> float:
    fn()  # warm up
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n * nbytes / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
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
    if args.json:
        print(json.dumps({"machine": platform.processor() or platform.machine(),
                          "cpus": os.cpu_count(), "rows": rows}, indent=2))
        return
    print(f"{'payload':<16} {'seal':>9} {'open':>9} {'AES-GCM enc':>12} {'AES-GCM dec':>12}"
          "   (MB/s)")
    for r in rows:
        print(f"{r['payload']:<16} {r['seal_MBps']:>9.0f} {r['open_MBps']:>9.0f} "
              f"{r['aesgcm_encrypt_MBps']:>12.0f} {r['aesgcm_decrypt_MBps']:>12.0f}")
    ten = next(r for r in rows if r["payload"] == "utterance 10 s")
    audio_mbps = 16000 * 2 / 1e6
    print(f"\nOne core seals {ten['seal_MBps'] / audio_mbps:,.0f}x real time of 16 kHz audio "
          f"({ten['seal_MBps'] / ten['aesgcm_encrypt_MBps']:.0%} of raw AES-GCM speed).")


if __name__ == "__main__":
    main()
