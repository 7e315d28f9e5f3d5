"""One audio segment in, one transcript segment out, with faster-whisper."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.models import AudioSegment, TranscriptSegment, Word
from workers.model import load_model

__all__ = ["Transcriber"]


class Transcriber:
    def __init__(self, settings: Settings, cpu_threads: int = 0) -> None:
        self.settings = settings
        self.cpu_threads = cpu_threads

    def load(self) -> Any:
        return load_model(self.settings, self.cpu_threads)

    def transcribe(self, audio: AudioSegment, language: str | None = None,
                   translate: bool = False) -> TranscriptSegment:
        model = self.load()
        if not model.model.is_multilingual:  # English-only: nothing else to ask of it
            language, translate = "en", False
        task = "translate" if translate else "transcribe"
        samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float32) / 32768.0
        segments, _info = model.transcribe(
            samples, language=language, task=task, beam_size=self.settings.beam_size,
            word_timestamps=True, condition_on_previous_text=False, vad_filter=False)
        pieces = list(segments)  # the generator must be consumed inside the task
        base = audio.start_ms
        words = tuple(
            Word(base + round(w.start * 1000), base + round(w.end * 1000), w.word,
                 round(float(w.probability), 4))
            for s in pieces for w in (s.words or ()))
        text = " ".join(s.text.strip() for s in pieces).strip()
        end_ms = base + (round(pieces[-1].end * 1000) if pieces else audio.duration_ms)
        return TranscriptSegment(audio.participant_id, audio.seq, base,
                                 max(end_ms, base), text, words)
