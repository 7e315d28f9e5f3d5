"""Audio segments in, transcript segments out, with faster-whisper.

One segment goes through ``WhisperModel.transcribe``. Several segments of one participant of
one meeting may share one window (``workers.packing``: Whisper pads every input to 30 s, so
ten 3 s utterances in one window cost a tenth of ten windows); each word then goes back to
the segment its middle lies in. Several windows that share a language setting go through
``BatchedInferencePipeline`` in one call: each becomes one clip of a concatenated signal, so
the model encodes and decodes them as a batch.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import Settings
from pipeline.models import AudioSegment, TranscriptSegment, Word
from workers import packing
from workers.model import load_model

__all__ = ["Request", "Transcriber"]

#: (audio, language or None to detect, translate to English)
Request = tuple[AudioSegment, str | None, bool]
_GAP = np.zeros(1600, dtype=np.float32)  # 0.1 s of silence between clips of a batch
#: an interim's window: its own frames and one second of silence (100 frames)
_SHORT_PAD_FRAMES = 100
#: a packed segment at least this long that got no word is transcribed again alone
_RETRY_MS = 8000


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
    start_ms = base
    if audio.keep_from_ms is not None or audio.keep_to_ms is not None:
        # A piece of a cut utterance overlaps its neighbours: it keeps only the words whose
        # middle lies in its own window, and its text is made of those words.
        words = tuple(w for w in words if audio.keeps(w.start_ms, w.end_ms))
        text = "".join(w.word for w in words).strip()
        if words:
            start_ms, end_ms = max(base, words[0].start_ms), words[-1].end_ms
        else:
            start_ms = max(base, audio.keep_from_ms or base)
            end_ms = max(start_ms, min(end_ms, audio.keep_to_ms or end_ms))
    return TranscriptSegment(
        audio.participant_id,
        audio.seq,
        start_ms,
        max(end_ms, start_ms),
        text,
        words,
        language,
        translated,
        audio.part,
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

    @property
    def interim_batch_size(self) -> int:
        """Interims per model call: as many as finals on CUDA, where a batch costs about
        what one does; one on CPU, where a batch costs the sum of its parts (measured with
        bench/interim.py) and would only hold a worker longer while a final waits."""
        return self.batch_size if self.load().model.device == "cuda" else 1

    def _options(
        self, language: str | None, translate: bool, interim: bool = False
    ) -> dict[str, Any]:
        """Decoding options. An interim caption (the final replaces it) is decoded with
        ``SEALSCRIBE_INTERIM_BEAM`` (greedy by default) and without word timings, an extra
        alignment pass."""
        if not self.load().model.is_multilingual:  # English-only: nothing else to ask of it
            language, translate = "en", False
        return {
            "language": language,
            "task": "translate" if translate else "transcribe",
            "beam_size": self.settings.interim_beam if interim else self.settings.beam_size,
            "word_timestamps": not interim,
        }

    def transcribe(
        self,
        audio: AudioSegment,
        language: str | None = None,
        translate: bool = False,
        interim: bool = False,
    ) -> TranscriptSegment:
        """One segment in one call; an ``interim`` one as :meth:`_options` says, with word
        timings only if it must be trimmed to a keep window."""
        options = self._options(language, translate, interim)
        if interim and audio.keep_from_ms is not None:
            options["word_timestamps"] = True
        segments, info = self.load().transcribe(
            _samples(audio), condition_on_previous_text=False, vad_filter=False, **options
        )
        pieces = list(segments)  # consume the generator here, inside the task
        return _to_transcript(audio, pieces, info.language, options["task"] == "translate")

    def transcribe_many(
        self, requests: Sequence[Request], keys: Sequence[Hashable | None] | None = None
    ) -> list[TranscriptSegment]:
        """Transcribe each request, batching those that share a known language.

        Requests with the same ``keys`` entry (not None: one participant of one meeting)
        may be packed into one window of up to ``packing.WINDOW_MS`` and their words split
        back by time; requests of different keys never share a window."""
        keys = list(keys) if keys is not None else [None] * len(requests)
        results: dict[int, TranscriptSegment] = {}
        groups: dict[tuple[str | None, bool], list[int]] = {}
        for i, (_audio, language, translate) in enumerate(requests):
            options = self._options(language, translate)
            groups.setdefault((options["language"], translate), []).append(i)
        for (language, translate), idx in groups.items():
            items = [
                packing.Item(keys[i], requests[i][0].duration_ms, requests[i][0].start_ms)
                for i in idx
            ]
            windows = [[idx[k] for k in w] for w in packing.plan(items)]
            audios = [[requests[i][0] for i in w] for w in windows]
            if language is None or len(windows) == 1:
                # detection is per window (no batching); one window needs no batch
                done = [self._transcribe_window(a, language, translate) for a in audios]
            else:
                done = self._transcribe_batch(audios, language, translate)
            for w, out in zip(windows, done, strict=True):
                results.update(zip(w, out, strict=True))
            # Whisper may skip a stretch of a packed window (batched decoding has no
            # temperature fallback): a long packed segment left without a word is heard
            # again alone, as it would have been unpacked. Not a shorter one: in a window
            # Whisper follows the speaker and leaves out quieter crosstalk from the others
            # (on the AMI headsets half the segments, up to 6 s, came back empty, and their
            # text alone was other people's words), and hearing them again would cost more
            # than packing saves.
            again = [
                i
                for w in windows
                if len(w) > 1
                for i in w
                if not results[i].words and requests[i][0].duration_ms >= _RETRY_MS
            ]
            if again:
                alone = self.transcribe_many([requests[i] for i in again])
                results.update(zip(again, alone, strict=True))
        return [results[i] for i in range(len(requests))]

    def transcribe_interims(self, requests: Sequence[Request]) -> list[TranscriptSegment]:
        """Interim captions of several participants (or meetings) in one batched call where
        their language is known, one clip each: never packed together.

        An interim is decoded in a short window: the encoder sees the utterance so far and
        one second of silence, not the 30 s window faster-whisper pads every input to
        (CTranslate2 takes any length up to 30 s; whisper.cpp calls this the audio
        context). On fleurs-en, greedy, that is three times faster for ~10 s utterances and
        more for shorter ones, at no loss of accuracy (WER 6.6 % against 8.1 % padded;
        ``python -m bench.interim``). Without a known language, or with a keep window
        to trim to (which needs word timings), an interim takes the ordinary path."""
        results: dict[int, TranscriptSegment] = {}
        groups: dict[tuple[str, bool], list[int]] = {}
        for i, (audio, language, translate) in enumerate(requests):
            known = self._options(language, translate)["language"]
            if known is None or audio.keep_from_ms is not None or audio.duration_ms > 29_000:
                results[i] = self.transcribe(audio, language, translate, interim=True)
            else:
                groups.setdefault((known, translate), []).append(i)
        for (language, translate), idx in groups.items():
            done = self._decode_short([requests[i][0] for i in idx], language, translate)
            results.update(zip(idx, done, strict=True))
        return [results[i] for i in range(len(requests))]

    def _decode_short(
        self, audios: list[AudioSegment], language: str, translate: bool
    ) -> list[TranscriptSegment]:
        """Greedy (``SEALSCRIBE_INTERIM_BEAM``) text of each audio, encoded in a window of
        its own length plus one second, in one batch; no timestamps, no word timings."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self.load()
        task = "translate" if translate else "transcribe"
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task=task, language=language
        )
        features = [model.feature_extractor(_samples(a)) for a in audios]
        frames = min(3000, max(f.shape[-1] for f in features) + _SHORT_PAD_FRAMES)
        batch = np.zeros((len(audios), features[0].shape[0], frames), dtype=np.float32)
        for row, f in zip(batch, features, strict=True):
            row[:, : min(frames, f.shape[-1])] = f[:, :frames]
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        out = model.model.generate(
            ctranslate2.StorageView.from_array(batch),
            [prompt] * len(audios),
            beam_size=self.settings.interim_beam,
            # speech is at most ~5 tokens a second: a looping decode stops soon after
            max_length=min(224, 16 + 6 * max(a.duration_ms for a in audios) // 1000),
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1]) or ()),
        )
        results = []
        for audio, res in zip(audios, out, strict=True):
            ids = [t for t in res.sequences_ids[0] if t < tokenizer.eot]
            text = tokenizer.decode(ids).strip()
            results.append(
                TranscriptSegment(
                    audio.participant_id,
                    audio.seq,
                    audio.start_ms,
                    audio.end_ms,
                    text,
                    (),
                    language,
                    translate,
                    audio.part,
                )
            )
        return results

    def _transcribe_window(
        self, audios: list[AudioSegment], language: str | None, translate: bool
    ) -> list[TranscriptSegment]:
        """One window through ``WhisperModel.transcribe``: a lone segment as it is, several
        packed with silence between them and the words split back."""
        if len(audios) == 1:
            return [self.transcribe(audios[0], language, translate)]
        options = self._options(language, translate)
        samples, spans = packing.splice([_samples(a) for a in audios])
        segments, info = self.load().transcribe(
            samples, condition_on_previous_text=False, vad_filter=False, **options
        )
        pieces = list(segments)
        return _split(audios, pieces, spans, info.language, options["task"] == "translate")

    def _transcribe_batch(
        self,
        windows: list[list[AudioSegment]],
        language: str,
        translate: bool,
        interim: bool = False,
    ) -> list[list[TranscriptSegment]]:
        """Each window one clip of a concatenated signal, the clips decoded as a batch."""
        from faster_whisper import BatchedInferencePipeline

        if self._batched is None:
            self._batched = BatchedInferencePipeline(self.load())
        parts, clips, layouts, offset = [], [], [], 0.0
        for audios in windows:
            samples, spans = packing.splice([_samples(a) for a in audios])
            clips.append({"start": offset, "end": offset + len(samples) / 16000})
            layouts.append([(offset + s, offset + e) for s, e in spans])
            parts += [samples, _GAP]
            offset += (len(samples) + len(_GAP)) / 16000
        segments, _info = self._batched.transcribe(
            np.concatenate(parts),
            clip_timestamps=clips,
            batch_size=len(windows),
            **self._options(language, translate, interim),
        )
        pieces: list[list[Any]] = [[] for _ in windows]
        for seg in segments:
            mid = (seg.start + seg.end) / 2
            i = next((k for k, c in enumerate(clips) if mid <= c["end"]), len(clips) - 1)
            pieces[i].append(seg)
        out = []
        for audios, p, c, spans in zip(windows, pieces, clips, layouts, strict=True):
            if len(audios) == 1:
                out.append([_to_transcript(audios[0], p, language, translate, c["start"])])
            else:
                out.append(_split(audios, p, spans, language, translate))
        return out


@dataclass(frozen=True)
class _Piece:
    """The words of a packed window that are one segment's, as a Whisper segment."""

    start: float
    end: float
    text: str
    words: tuple[Any, ...]


def _split(
    audios: Sequence[AudioSegment],
    pieces: Sequence[Any],
    spans: Sequence[tuple[float, float]],
    language: str | None,
    translated: bool,
) -> list[TranscriptSegment]:
    """A packed window's Whisper segments -> one TranscriptSegment per packed segment: each
    word goes to the segment its middle lies in (``packing.split_words``), its times kept
    within that segment; a segment's keep window then applies as to a lone one."""
    words = [w for p in pieces for w in (p.words or ())]
    out = []
    for audio, own, (start, end) in zip(
        audios, packing.split_words(words, spans), spans, strict=True
    ):
        clamped = tuple(
            _Word(min(max(w.start, start), end), min(max(w.end, start), end), w.word, w.probability)
            for w in own
        )
        piece = (
            [_Piece(clamped[0].start, clamped[-1].end, "".join(w.word for w in clamped), clamped)]
            if clamped
            else []
        )
        out.append(_to_transcript(audio, piece, language, translated, start))
    return out


@dataclass(frozen=True)
class _Word:
    start: float
    end: float
    word: str
    probability: float
