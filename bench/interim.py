"""What an interim caption costs: the utterance so far decoded greedily in Whisper's padded
30 s window (faster-whisper's path) against a window of its own length plus a second
(``Transcriber.transcribe_interims``), on the fleurs-en clips cut to 2, 5 and 10 s and whole.

    .venv/bin/python -m bench.interim [--threads 1] [--repeat 3]

Reports milliseconds per interim (best of ``--repeat``) at each length and the word error
rate of the whole clips, each way.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fleurs-en"


def main() -> None:
    from bench.wer import normalise, word_errors
    from pipeline.audio.decode import decode_file
    from pipeline.config import Settings
    from pipeline.models import AudioSegment
    from workers.transcriber import Transcriber

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    t = Transcriber(Settings.from_env(), cpu_threads=args.threads)
    clips = sorted(DATA.glob("*.ogg"))
    pcms = [decode_file(c, 60) for c in clips]
    refs = [normalise(c.with_suffix(".txt").read_text()) for c in clips]

    def padded(a: AudioSegment) -> str:
        return t.transcribe(a, "en", False, interim=True).text

    def short(a: AudioSegment) -> str:
        return t.transcribe_interims([(a, "en", False)])[0].text

    short(AudioSegment("p", 0, 0, 16000, pcms[0]))  # load and warm up
    print(f"{'length':>8} {'padded ms':>10} {'short ms':>9}")
    for seconds in (2, 5, 10, None):
        audios = [
            AudioSegment("p", 0, 0, 16000, p[: seconds * 32000] if seconds else p) for p in pcms
        ]
        row = []
        for way in (padded, short):
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                texts = [way(a) for a in audios]
                best = min(best, time.perf_counter() - start)
            row.append((best / len(audios) * 1000, texts))
        label = f"{seconds} s" if seconds else "whole"
        print(f"{label:>8} {row[0][0]:>10.0f} {row[1][0]:>9.0f}")
        if seconds is None:
            for name, (_, texts) in zip(("padded", "short"), row, strict=True):
                errors = sum(word_errors(r, normalise(x)) for r, x in zip(refs, texts, strict=True))
                print(f"WER whole clips, {name}: {errors / sum(map(len, refs)):.1%}")


if __name__ == "__main__":
    main()
