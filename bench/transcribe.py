"""Plain faster-whisper vs the full sealed pipeline, same audio, same model, one run.

    .venv/bin/python -m bench.transcribe [--redis-url redis://127.0.0.1:6379/13]

Plain: ``WhisperModel(tiny.en, int8).transcribe(file, beam_size=5)`` on each file in turn,
model already loaded, one thread per core (faster here than CTranslate2's default). Pipeline:
``sealscribe transcribe``'s path (decode in memory, VAD segmentation, seal, Redis, Celery)
with ``sealscribe worker``'s defaults (one process per core, one thread each), timed from the
first submit until the last transcript is stored, workers already warm. Same machine, same
cores, same model, same beam.
Reports audio-seconds per wall-second for both, their ratio (pipeline wall / plain wall;
<= 1.0 means the pipeline is at least as fast), and WER (normalised as in
shared/data/NOTICE.md). Uses its own Redis database, flushed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def corpus() -> list[tuple[Path, str | None]]:
    """(audio file, reference text or None) for every clip of shared/data used here."""
    items: list[tuple[Path, str | None]] = []
    for ogg in sorted((DATA / "fleurs-en").glob("*.ogg")):
        items.append((ogg, ogg.with_suffix(".txt").read_text()))
    ami = DATA / "ami-es2004"
    for n, letter in enumerate("ABCD"):
        ref = (ami / "text" / f"mixture.{letter}.words_joined.txt").read_text()
        # AMI spells letters as L_C_D_; source2 is mostly crosstalk (no WER for it).
        items.append((ami / "sources" / f"source{n}.wav", None if n == 2 else ref.replace("_", "")))
    return items


def wer(pairs: list[tuple[str, str]]) -> float:
    from bench.wer import normalise, word_errors

    errors = words = 0
    for ref, hyp in pairs:
        r = normalise(ref)
        errors += word_errors(r, normalise(hyp))
        words += len(r)
    return errors / max(words, 1)


def run_plain(items: list[tuple[Path, str | None]]) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    from workers.model import resolve_model_path

    model = WhisperModel(
        str(resolve_model_path("tiny.en")),
        device="cpu",
        compute_type="int8",
        cpu_threads=os.cpu_count() or 1,
    )
    list(model.transcribe(str(items[0][0]), beam_size=5)[0])  # warm up
    texts = {}
    start = time.perf_counter()
    for path, _ in items:
        segments, _info = model.transcribe(str(path), beam_size=5, language="en")
        texts[path] = " ".join(s.text.strip() for s in segments)
    return {"wall_s": time.perf_counter() - start, "texts": texts}


def run_pipeline(
    items: list[tuple[Path, str | None]], redis_url: str, processes: int, batch: int
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="sealscribe-bench-"))
    os.environ.update(SEALSCRIBE_REDIS_URL=redis_url, SEALSCRIBE_HOME=str(home))
    from pipeline import services
    from pipeline.config import get_settings
    from pipeline.processes import worker_process
    from pipeline.runtime import Runtime
    from pipeline.services.transcripts import read_transcript, submit_file, wait_for

    settings = get_settings()
    rt = Runtime.from_settings(settings, actor="bench")
    rt.store.redis.flushdb()
    try:
        tenant, _ = services.create_tenant(rt, "bench")
        with worker_process(
            settings,
            home / "logs" / "worker.log",
            concurrency=processes,
            reuse=False,
            extra_env={"SEALSCRIBE_BATCH": str(batch)},
        ):
            start = time.perf_counter()
            jobs = [(path, submit_file(rt, path, tenant.id)) for path, _ in items]
            for _, job in jobs:
                wait_for(rt, job, lambda *_: None, timeout=3600)
            wall = time.perf_counter() - start
        texts = {
            path: " ".join(s.text for s in read_transcript(rt, job.meeting.id))
            for path, job in jobs
        }
        segments = sum(job.segments for _, job in jobs)
        return {"wall_s": wall, "texts": texts, "segments": segments}
    finally:
        rt.store.redis.flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/13",
        help="a Redis database the benchmark may flush",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per core, like sealscribe worker)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help="SEALSCRIBE_BATCH for the workers (0: their default, 4 on CPU)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from pipeline.audio.decode import decode_file

    items = corpus()
    audio_s = sum(len(decode_file(p, 36000)) / 32000 for p, _ in items)
    plain = run_plain(items)
    pipe = run_pipeline(items, args.redis_url, args.processes, args.batch)
    result: dict[str, Any] = {
        "audio_s": round(audio_s, 1),
        "processes": args.processes,
        "batch": args.batch,
        "files": len(items),
        "segments": pipe["segments"],
    }
    for name, run in (("plain", plain), ("pipeline", pipe)):
        texts = run["texts"]
        result[name] = {
            "wall_s": round(run["wall_s"], 2),
            "audio_s_per_wall_s": round(audio_s / run["wall_s"], 2),
            "wer_fleurs": round(
                wer([(r, texts[p]) for p, r in items if r is not None and p.suffix == ".ogg"]), 4
            ),
            "wer_ami": round(
                wer([(r, texts[p]) for p, r in items if r is not None and p.suffix == ".wav"]), 4
            ),
        }
    result["ratio"] = round(pipe["wall_s"] / plain["wall_s"], 3)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{result['files']} files, {audio_s:.0f} s of audio, {args.processes} worker "
        f"processes, batch {args.batch}; "
        f"pipeline cut it into {result['segments']} sealed segments"
    )
    print(f"{'':10} {'wall s':>8} {'audio s/wall s':>15} {'WER fleurs':>11} {'WER AMI':>8}")
    for name in ("plain", "pipeline"):
        r = result[name]
        print(
            f"{name:10} {r['wall_s']:>8.1f} {r['audio_s_per_wall_s']:>15.1f} "
            f"{r['wer_fleurs']:>11.1%} {r['wer_ami']:>8.1%}"
        )
    print(f"ratio (pipeline wall / plain wall): {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
