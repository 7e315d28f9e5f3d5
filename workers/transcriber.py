"""Audio segments in, transcript segments out, with faster-whisper.

One segment goes through ``WhisperModel.transcribe``. Several segments that share a language
setting go through ``BatchedInferencePipeline`` in one call: each becomes one clip of a
concatenated signal, so the model encodes and decodes them as a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.models import AudioSegment, TranscriptSegment, Word
from workers.model import load_model

__all__ = ["Request", "Transcriber"]

#: (audio, language or None to detect, translate to English)
Request = tuple[AudioSegment, str | None, bool]
_GAP = np.zeros(1600, dtype=np.float32)  # 0.1 s of silence between clips of a batch


def _samples(audio: AudioSegment) -> np.ndarray:
    return np.frombuffer(audio.pcm, dtype="<i2").astype(np.float32) / 32768.0


def _to_transcript(
    audio: AudioSegment,
    pieces: Sequence[Any],
    language: str | None,
    translated: bool,
    offset_s: float = 0.0,
) -> TranscriptSegment:
    """Whisper segments (times in seconds from ``offset_s``) -> one TranscriptSegment."""
    base = audio.start_ms

    def ms(t: float) -> int:
        return base + max(0, round((t - offset_s) * 1000))

    words = tuple(
        Word(ms(w.start), ms(w.end), w.word, round(float(w.probability), 4))
        for s in pieces
        for w in (s.words or ())
    )
    text = " ".join(s.text.strip() for s in pieces).strip()
    end_ms = ms(pieces[-1].end) if pieces else base + audio.duration_ms
    return TranscriptSegment(
        audio.participant_id, audio.seq, base, max(end_ms, base), text, words, language, translated
    )


class Transcriber:
    def __init__(self, settings: Settings, cpu_threads: int = 0) -> None:
        self.settings = settings
        self.cpu_threads = cpu_threads
        self._batched: Any = None

    def load(self) -> Any:
        return load_model(self.settings, self.cpu_threads)

    @property
    def batch_size(self) -> int:
        """Segments per model call: SEALSCRIBE_BATCH, or 8 on CUDA and 4 on CPU (measured
        with bench/transcribe.py: 4 cut the pipeline's wall time by a quarter on 2 cores)."""
        if self.settings.batch:
            return self.settings.batch
        return 8 if self.load().model.device == "cuda" else 4

    def _options(self, language: str | None, translate: bool) -> dict[str, Any]:
        if not self.load().model.is_multilingual:  # English-only: nothing else to ask of it
            language, translate = "en", False
        return {
            "language": language,
            "task": "translate" if translate else "transcribe",
            "beam_size": self.settings.beam_size,
            "word_timestamps": True,
        }

    def transcribe(
        self, audio: AudioSegment, language: str | None = None, translate: bool = False
    ) -> TranscriptSegment:
        options = self._options(language, translate)
        segments, info = self.load().transcribe(
            _samples(audio), condition_on_previous_text=False, vad_filter=False, **options
        )
        pieces = list(segments)  # consume the generator here, inside the task
        return _to_transcript(audio, pieces, info.language, options["task"] == "translate")

    def transcribe_many(self, requests: Sequence[Request]) -> list[TranscriptSegment]:
        """Transcribe each request, batching those that share a known language."""
        results: dict[int, TranscriptSegment] = {}
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, (audio, language, translate) in enumerate(requests):
            options = self._options(language, translate)
            if options["language"] is None:  # detection is per segment: no batching
                results[i] = self.transcribe(audio, language, translate)
            else:
                groups.setdefault((options["language"], translate), []).append(i)
        for (language, translate), idx in groups.items():
            if len(idx) == 1:
                results[idx[0]] = self.transcribe(requests[idx[0]][0], language, translate)
                continue
            batch = self._transcribe_batch([requests[i][0] for i in idx], language, translate)
            results.update(zip(idx, batch, strict=True))
        return [results[i] for i in range(len(requests))]

    def _transcribe_batch(
        self, audios: list[AudioSegment], language: str, translate: bool
    ) -> list[TranscriptSegment]:
        from faster_whisper import BatchedInferencePipeline

        if self._batched is None:
            self._batched = BatchedInferencePipeline(self.load())
        parts, clips, offset = [], [], 0.0
        for audio in audios:
            samples = _samples(audio)
            clips.append({"start": offset, "end": offset + len(samples) / 16000})
            parts += [samples, _GAP]
            offset += (len(samples) + len(_GAP)) / 16000
        segments, _info = self._batched.transcribe(
            np.concatenate(parts),
            clip_timestamps=clips,
            batch_size=len(audios),
            **self._options(language, translate),
        )
        pieces: list[list[Any]] = [[] for _ in audios]
        for seg in segments:
            mid = (seg.start + seg.end) / 2
            i = next((k for k, c in enumerate(clips) if mid <= c["end"]), len(clips) - 1)
            pieces[i].append(seg)
        return [
            _to_transcript(a, p, language, translate, c["start"])
            for a, p, c in zip(audios, pieces, clips, strict=True)
        ]
