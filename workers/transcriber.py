"""Audio segments in, transcript segments out, with faster-whisper.

One segment goes through ``WhisperModel.transcribe``. Several segments of one participant of
one meeting may share one window (``workers.packing``: Whisper pads every input to 30 s, so
ten 3 s utterances in one window cost a tenth of ten windows); each word then goes back to
the segment its middle lies in. Several windows that share a language setting go through
``BatchedInferencePipeline`` in one call: each becomes one clip of a concatenated signal, so
the model encodes and decodes them as a batch.

Whisper's encoder is built for 30 s windows and faster-whisper pads every input to one, but
CTranslate2 encodes any length up to that: a final of one whole utterance up to
``SEALSCRIBE_SHORT_WINDOW_MS`` (20 s) is encoded at its own length plus one second
(whisper.cpp's "audio context"). For a 5-10 s live utterance that is ~60 instead of ~450 ms
of encoder on one core, most of a final's cost; the text comes from the same beam search and
the word timings from the same alignment heads. On the CPU such segments go one at a time (a
padded batch costs the sum of its parts there). Packed windows and the pieces of a cut
utterance keep the padded window: their words are split or trimmed by their timings, which
the padded decode places more reliably, and they are not what a live caption waits for. A
short decode that looks failed is done again the ordinary way, with faster-whisper's
temperature fallback: by faster-whisper's own measures (compression ratio over 2.4, average
log-probability under -1, no text), or with words the alignment places at the very end of
the signal or after it, where no speech is (a decoder that went on past the speech repeats
itself there: seen in a talk-over test), or that says three or more words twice in a row.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
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
#: a short window's word that starts this near the end of the signal (every utterance ends
#: with at least a quarter second of pad) was made up by the decoder
_TAIL_S = 0.1
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
        if not interim and options["language"] is not None and _whole(audio):
            pieces = self._decode_final_short(_samples(audio), options["language"], translate)
            if pieces is not None:
                return _to_transcript(audio, pieces, options["language"], translate)
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
            # detection is per window (no batching); one window needs no batch; on the CPU a
            # short window alone (encoded at its own length) costs less than in a batch
            single = [language is None or len(windows) == 1 or self._short_alone(a) for a in audios]
            done: list[list[TranscriptSegment]] = [[] for _ in audios]
            for k, a in enumerate(audios):
                if single[k]:
                    done[k] = self._transcribe_window(a, language, translate)
            batched = [k for k in range(len(audios)) if not single[k]]
            if batched and language is not None:
                together = self._transcribe_batch([audios[k] for k in batched], language, translate)
                for k, segs in zip(batched, together, strict=True):
                    done[k] = segs
            for w, segs in zip(windows, done, strict=True):
                results.update(zip(w, segs, strict=True))
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

    def _tokenizer(self, language: str, translate: bool) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        model = self.load()
        task = "translate" if translate else "transcribe"
        return Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task=task, language=language
        )

    def _short_window(self, signals: Sequence[np.ndarray]) -> tuple[Any, list[int]]:
        """The encoder output of ``signals`` in one batch, in a window of the longest one's
        length plus one second, and each one's own number of feature frames."""
        model = self.load()
        features = [model.feature_extractor(x) for x in signals]
        frames = min(3000, max(f.shape[-1] for f in features) + _SHORT_PAD_FRAMES)
        batch = np.zeros((len(signals), features[0].shape[0], frames), dtype=np.float32)
        for row, f in zip(batch, features, strict=True):
            row[:, : min(frames, f.shape[-1])] = f[:, :frames]
        return model.encode(batch), [min(frames, f.shape[-1] - 1) for f in features]

    def _generate(
        self, encoded: Any, count: int, tokenizer: Any, beam: int, seconds: float
    ) -> tuple[list[Any], int]:
        """Text tokens (no timestamps) for ``count`` encoded windows, and the most tokens a
        decode may give: speech is at most ~5 tokens a second, so a looping decode stops
        soon after.

        CTranslate2's Whisper ``generate`` gives at most half its ``max_length`` tokens,
        whatever the prompt (as openai-whisper samples at most half the text context;
        measured with ctranslate2 4.8), so it is asked for twice the limit."""
        from faster_whisper.transcribe import get_suppressed_tokens

        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        limit = min(224, 16 + int(6 * seconds))
        out = self.load().model.generate(
            encoded,
            [prompt] * count,
            beam_size=beam,
            max_length=2 * limit,
            return_scores=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1]) or ()),
        )
        return out, limit

    def _decode_short(
        self, audios: list[AudioSegment], language: str, translate: bool
    ) -> list[TranscriptSegment]:
        """Greedy (``SEALSCRIBE_INTERIM_BEAM``) text of each audio, encoded in a window of
        its own length plus one second, in one batch; no timestamps, no word timings."""
        tokenizer = self._tokenizer(language, translate)
        encoded, _frames = self._short_window([_samples(a) for a in audios])
        seconds = max(a.duration_ms for a in audios) / 1000
        out, _limit = self._generate(
            encoded, len(audios), tokenizer, self.settings.interim_beam, seconds
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

    def _short_alone(self, audios: Sequence[AudioSegment]) -> bool:
        """Whether a window of ``audios`` costs least on its own: one whole utterance short
        enough to be encoded at its own length, on the CPU."""
        if len(audios) != 1 or not _whole(audios[0]):
            return False
        if audios[0].duration_ms > self.settings.short_window_ms:
            return False
        return bool(self.load().model.device != "cuda")

    def _decode_final_short(
        self, samples: np.ndarray, language: str, translate: bool
    ) -> list[Any] | None:
        """Whisper-segment-like pieces (one) of ``samples`` with word timings, beam search
        (``SEALSCRIBE_BEAM_SIZE``) in a window of its own length plus one second; None if
        it is too long for that or the decode looks failed (the caller then decodes it the
        ordinary way)."""
        from faster_whisper.transcribe import get_compression_ratio

        seconds = len(samples) / 16000
        if not len(samples) or seconds * 1000 > self.settings.short_window_ms:
            return None
        model = self.load()
        tokenizer = self._tokenizer(language, translate)
        encoded, (frames,) = self._short_window([samples])
        (res,), limit = self._generate(encoded, 1, tokenizer, self.settings.beam_size, seconds)
        ids = [t for t in res.sequences_ids[0] if t < tokenizer.eot]
        if not ids or len(ids) >= limit - 1:
            return None  # nothing heard, or cut at the length limit
        text = tokenizer.decode(ids).strip()
        avg_logprob = res.scores[0] * len(ids) / (len(ids) + 1)
        if avg_logprob < -1.0 or get_compression_ratio(text) > 2.4:
            return None
        piece = {"seek": 0, "start": 0.0, "end": seconds, "tokens": ids, "text": text}
        model.add_word_timestamps([[piece]], tokenizer, encoded, frames, *_punctuation(), 0.0)
        words = [SimpleNamespace(**w) for w in piece.get("words", ())]
        if any(w.start >= seconds - _TAIL_S for w in words) or _repeats(text):
            # words placed in the silence after the signal: the decoder went on past the
            # speech (it may repeat a sentence there), which the padded window would not
            return None
        return [SimpleNamespace(start=piece["start"], end=piece["end"], text=text, words=words)]

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


def _repeats(text: str, least: int = 3) -> bool:
    """Whether ``text`` says a run of at least ``least`` words twice in a row: a decoder in a
    short window that went on past the speech may read the sentence again (seen on a 2 s
    synthetic sentence), which the compression ratio is too coarse to catch."""
    words = text.lower().split()
    for k in range(least, len(words) // 2 + 1):
        for i in range(len(words) - 2 * k + 1):
            if words[i : i + k] == words[i + k : i + 2 * k]:
                return True
    return False


def _whole(audio: AudioSegment) -> bool:
    """A whole utterance, not a piece of a cut one (whose words are trimmed to a keep window
    by their timings: those stay with the padded window's decode)."""
    return audio.keep_from_ms is None and audio.keep_to_ms is None


@functools.cache
def _punctuation() -> tuple[str, str]:
    """faster-whisper's defaults for the punctuation joined to the word after / before it."""
    from faster_whisper import WhisperModel

    params = inspect.signature(WhisperModel.transcribe).parameters
    return params["prepend_punctuations"].default, params["append_punctuations"].default


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
