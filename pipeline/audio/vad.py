"""Streaming voice detection with the Silero VAD model that faster-whisper ships.

One :class:`SileroVAD` per track keeps the model's recurrent state, the 64 samples of context
Silero prepends to each chunk, and the samples of a chunk not yet complete, so a track's PCM
can be fed in pieces of any size (a 100 ms capture batch, a whole file) and gives the same
probabilities. The model (``faster_whisper/assets/silero_vad_v6.onnx``, no download) is loaded
once per process with onnxruntime, one thread, as faster-whisper loads it, and shared by every
track: an onnxruntime session may be run from several threads at once.

A probability is given per fixed frame of :data:`FRAME_SAMPLES` (512 samples, 32 ms at
16 kHz). :class:`SpeechGate` turns them into per-frame speech decisions with hysteresis (a
frame starts speech at ``start`` or more, speech goes on while frames stay at ``stay`` or
more), which is what a segmenter consumes instead of its energy rule.

Why the level still matters (see :class:`SileroVAD` ``gate_dbfs``): a frame below -90 dBFS
(digital silence: a muted microphone, Opus DTX, a track between two talk spurts of a
browser that stops sending) is not given to the model and gets probability 0, so silence
costs nothing; and the crosstalk arbiter compares tracks by level, which the model does not
give. The gate is no higher on purpose: real recordings can be very quiet (the fleurs-en
clips are at -67 dBFS RMS; a -65 dBFS gate lost whole sentences of them), and the model
itself tells quiet speech from noise; the energy rule's adaptive floor is not needed.

The segmenter's energy rule (:mod:`pipeline.audio.segmenter`) is still there, behind
``SEALSCRIBE_VAD=energy``: it needs no model and costs a few microseconds per frame, for a
deployment that would rather spend nothing on detection than keep noise and music out;
with it there is no crosstalk suppression either (the arbiter needs per-frame decisions of
the same 32 ms frames). Silero with the arbiter is the default; it costs about twice the
capture CPU per track of the energy rule at 30 tracks (3.1 % of a core against 1.7 %;
docs/benchmarks.md, "Live" and "Voice detection and crosstalk"), and one capture process
still holds 50 tracks.

Measured cost (``python -m bench.crosstalk --cost``): about 60 us per chunk when a call
holds 3 or more chunks (a 100 ms capture batch holds 3), 100 us for a call of one: 0.3 % of
a core per track fed in 100 ms batches. The exported graph carries its state
with a batch of one (``h``/``c`` are ``[1, 1, 128]`` and the rows of ``input`` are
consecutive chunks of one stream), so tracks cannot share a call; batching is per track,
over the chunks of a capture batch.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipeline.audio.segmenter import SegmenterConfig

__all__ = [
    "FRAME_MS",
    "FRAME_SAMPLES",
    "LOOKBACK_MS",
    "PAD_MS",
    "PRE_PAD_MS",
    "SAMPLE_RATE",
    "GateConfig",
    "SileroSpeech",
    "SileroVAD",
    "SpeechGate",
    "VoiceDetector",
    "load_model",
    "segmenter_config",
]

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512  # Silero's chunk at 16 kHz
FRAME_MS = FRAME_SAMPLES * 1000 // SAMPLE_RATE  # 32
#: how far before the frame Silero first calls speech an utterance may start (the segmenter
#: finds the onset there by level): from a fresh state, or on soft or Opus-coded speech,
#: the probability can take 0.5-1.5 s of the first words to reach the threshold
LOOKBACK_MS = 1500
#: audio kept after an utterance's last speech frame: Silero calls the end of speech sooner
#: than the energy rule, on the fading last word, so it needs more than the energy rule's
#: 240 ms; within the end-of-utterance pause (500 ms) this costs no caption latency
PAD_MS = 384
#: audio kept before an utterance's onset (where the look-back put it, in the level rise):
#: Whisper reads an utterance worse with half a second of room noise before the first word.
#: fleurs-en after an Opus round trip, Silero, 5 start offsets (2026-12-02): WER 6.6 % with
#: 480 ms on both sides, 5.3-5.9 % with 240-256 ms before and 352-416 ms after, 7.0-7.2 %
#: with 240-300 ms after (the last word clipped); the energy rule 5.4 %
PRE_PAD_MS = 256
_CONTEXT = 64  # samples of the previous chunk the model sees before each chunk
_STATE = (1, 1, 128)
#: frames of digital silence (below the gate) after which the model's state starts afresh
_RESET_AFTER = 8


class VoiceDetector(Protocol):
    """Speech probability per fixed frame of a stream of 16 kHz mono s16le PCM."""

    frame_samples: int

    def speech_probs(self, pcm_16k_s16: bytes) -> list[float]:
        """One probability per frame completed by ``pcm`` (the remainder is kept)."""
        ...

    def reset(self) -> None:
        """Forget the stream so far (a new stream, or one resumed after an off period)."""
        ...


@functools.cache
def load_model() -> Any:
    """The onnxruntime session of faster-whisper's bundled Silero VAD (loaded once)."""
    import onnxruntime  # type: ignore[import-untyped]
    from faster_whisper.utils import get_assets_path

    opts = onnxruntime.SessionOptions()
    # one thread: capture runs many tracks in one process, each call is ~0.1 ms
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    opts.log_severity_level = 4
    return onnxruntime.InferenceSession(
        os.path.join(get_assets_path(), "silero_vad_v6.onnx"),
        providers=["CPUExecutionProvider"],
        sess_options=opts,
    )


def _dbfs(frames: np.ndarray) -> np.ndarray:
    """Level of each row of float samples in [-1, 1], in dBFS."""
    level: np.ndarray = 10.0 * np.log10(np.mean(frames * frames, axis=-1) + 1e-12)
    return level


@dataclass
class SileroVAD:
    """Silero VAD over one track, stateful between calls.

    ``gate_dbfs``: frames quieter than this are not run through the model (probability 0);
    None runs every frame. ``levels`` receives each frame's level (dBFS) for the caller,
    in step with the probabilities of the last call."""

    gate_dbfs: float | None = -90.0
    session: Any = None
    frame_samples: int = FRAME_SAMPLES
    levels: list[float] = field(default_factory=list)
    _h: np.ndarray = field(init=False, repr=False)
    _c: np.ndarray = field(init=False, repr=False)
    _context: np.ndarray = field(init=False, repr=False)
    _rest: np.ndarray = field(init=False, repr=False)
    _low: int = field(init=False, repr=False, default=0)  # gated-out frames in a row
    chunks_run: int = 0  # frames given to the model (for cost figures)

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = load_model()
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros(_STATE, dtype=np.float32)
        self._c = np.zeros(_STATE, dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._rest = np.zeros(0, dtype=np.float32)
        self._low = 0
        self.levels = []

    def speech_probs(self, pcm_16k_s16: bytes) -> list[float]:
        samples = np.frombuffer(pcm_16k_s16, dtype="<i2").astype(np.float32) / 32768.0
        if self._rest.size:
            samples = np.concatenate([self._rest, samples])
        whole = samples.size // FRAME_SAMPLES * FRAME_SAMPLES
        self._rest = samples[whole:].copy()
        if not whole:
            self.levels = []
            return []
        frames = samples[:whole].reshape(-1, FRAME_SAMPLES)
        levels = _dbfs(frames)
        self.levels = levels.tolist()
        probs = np.zeros(len(frames), dtype=np.float32)
        run = np.ones(len(frames), dtype=bool)
        if self.gate_dbfs is not None:
            run = levels >= self.gate_dbfs
        # Each row is the chunk after its predecessor's last 64 samples, as Silero expects.
        # After a quarter second of digital silence (below the gate: a muted microphone,
        # DTX, a pause the sender filled with zeros) the model starts afresh: carried over
        # such a gap its state kept the probability of the next words near 0 for up to 2 s
        # (fleurs-en published with zeros between clips: WER 10.4 % against 6.2 % for the
        # energy rule), while a fresh state finds speech within 0.5 s (WER 6.2 %). A pause
        # filled with room noise is run through the model and not reset: a fresh state
        # there blips on hum and tones.
        tails = np.concatenate([self._context[None, :], frames[:-1, -_CONTEXT:]])
        rows = np.concatenate([tails, frames], axis=1)
        self._context = frames[-1, -_CONTEXT:].copy()
        # Consecutive runs of gated-in frames go to the model in one call each; the state
        # carries over a gated-out stretch (silence between two words changes little).
        i = 0
        n = len(frames)
        while i < n:
            if not run[i]:
                self._low += 1
                i += 1
                continue
            if self._low >= _RESET_AFTER:
                self._h = np.zeros(_STATE, dtype=np.float32)
                self._c = np.zeros(_STATE, dtype=np.float32)
            self._low = 0
            j = i
            while j < n and run[j]:
                j += 1
            out, self._h, self._c = self.session.run(
                None, {"input": rows[i:j], "h": self._h, "c": self._c}
            )
            probs[i:j] = np.asarray(out, dtype=np.float32).reshape(-1)
            self.chunks_run += j - i
            i = j
        return probs.tolist()


@dataclass(frozen=True)
class GateConfig:
    #: a frame at this probability or more starts speech
    start: float = 0.5
    #: speech goes on while frames stay at this probability or more
    stay: float = 0.35


@dataclass
class SpeechGate:
    """Per-frame speech decisions with hysteresis from a stream of probabilities."""

    config: GateConfig = field(default_factory=GateConfig)
    speaking: bool = False

    def decide(self, prob: float) -> bool:
        threshold = self.config.stay if self.speaking else self.config.start
        self.speaking = prob >= threshold
        return self.speaking

    def reset(self) -> None:
        self.speaking = False


@dataclass
class SileroSpeech:
    """What a segmenter holds per track: PCM in, one speech decision per 32 ms frame out
    (model probabilities through the hysteresis gate), with each frame's level alongside
    in :attr:`levels` for the crosstalk arbiter."""

    vad: SileroVAD = field(default_factory=SileroVAD)
    gate: SpeechGate = field(default_factory=SpeechGate)

    @property
    def levels(self) -> list[float]:
        return self.vad.levels

    def decide(self, pcm_16k_s16: bytes) -> list[bool]:
        return [self.gate.decide(p) for p in self.vad.speech_probs(pcm_16k_s16)]

    def reset(self) -> None:
        self.vad.reset()
        self.gate.reset()


def segmenter_config(**knobs: Any) -> SegmenterConfig:
    """A segmenter's configuration for Silero's decisions: its 32 ms frames, the look-back
    to the onset, and the context kept either side; ``knobs`` set the rest (the live
    maximum, the end-of-utterance pause, interims)."""
    silero = SegmenterConfig(
        frame_ms=FRAME_MS, lookback_ms=LOOKBACK_MS, pad_ms=PAD_MS, pre_pad_ms=PRE_PAD_MS
    )
    return dataclasses.replace(silero, **knobs)
