"""Crosstalk, noise and cost of voice detection: today's energy segmenter vs Silero VAD, with
and without crosstalk suppression, transcribed by the real tiny.en.

    nice -n 10 .venv/bin/python -m bench.crosstalk            # AMI: misattributed/duplicated/WER
    nice -n 10 .venv/bin/python -m bench.crosstalk --noise    # fleurs-en + pink/babble, no-speech
    nice -n 10 .venv/bin/python -m bench.crosstalk --cost     # CPU per track of VAD + arbiter

AMI (``shared/data/ami-es2004``: four headsets, ``mixture.rttm``): each headset is cut into
utterances as live capture does (SegmenterConfig with the live defaults, 15 s pieces), every
utterance is transcribed alone (beam 5, word timestamps, as the worker does), and the words are
scored:

* misattributed: a word of source N whose middle lies outside every RTTM turn of N's speaker
  (0.25 s collar), over all words;
* duplicated: a word for which another speaker's transcript has the same normalised word at
  an overlapping time (both copies count), over all words;
* WER per speaker against the headset references (A, B, D; C says only "Mm. Yeah.");
* overlapped turns kept: of the RTTM turns that overlap another speaker's turn (someone
  talking over someone), how many still have a word in their speaker's own transcript.

Headset N's RTTM speaker is the one during whose solo turns N is loudest (the file does not
say). Pipelines: ``energy`` (pipeline/audio/segmenter.py as it is), ``vad`` (the same segmenter
fed Silero decisions: start >= 0.5, stay >= 0.35, 32 ms frames), each with ``none``, ``gate``
(crosstalk frames are not speech and are silenced inside an utterance: the arbiter in the
capture path, decided over whole tracks), ``live`` (the same, decided by the streaming
CrosstalkArbiter through LiveTrack in 100 ms batches, 288 ms look-ahead, track N arriving
N x 100 ms late, crosstalk silenced before the segmenter, as capture would) or ``post``
(utterances cut as before, then crosstalk frames silenced and an utterance left with under
150 ms of own speech dropped: an arbiter after segmentation).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.audio.decode import decode_file
from pipeline.audio.segmenter import Segmenter, SegmenterConfig, Utterance
from pipeline.audio.vad import (
    FRAME_MS,
    FRAME_SAMPLES,
    GateConfig,
    SileroSpeech,
    SileroVAD,
    SpeechGate,
    segmenter_config,
)
from pipeline.capture.crosstalk import (
    CrosstalkArbiter,
    CrosstalkConfig,
    LiveTrack,
    crosstalk_frames,
    features,
    silence_frames,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
AMI = DATA / "ami-es2004"
COLLAR_S = 0.25
LIVE = SegmenterConfig(max_utterance_ms=15000, end_silence_ms=500)


def vad_decisions(pcm: bytes, gate: GateConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, hysteresis decisions) per 32 ms frame, fed as capture feeds it."""
    vad, g = SileroVAD(), SpeechGate(gate or GateConfig())
    probs: list[float] = []
    for i in range(0, len(pcm), 3200):  # 100 ms capture batches
        probs += vad.speech_probs(pcm[i : i + 3200])
    p = np.asarray(probs)
    return p, np.array([g.decide(float(x)) for x in p], dtype=bool)


def segment(pcm: bytes, detector: str, decisions: np.ndarray | None = None) -> list[Utterance]:
    if detector == "energy":
        seg: Segmenter = Segmenter(LIVE)
    else:
        cfg = segmenter_config(
            max_utterance_ms=LIVE.max_utterance_ms, end_silence_ms=LIVE.end_silence_ms
        )
        assert decisions is not None
        seg = Segmenter(cfg)
        n = min(len(pcm) // (FRAME_SAMPLES * 2), len(decisions))
        found = [*seg.feed(pcm[: n * FRAME_SAMPLES * 2], decisions[:n].tolist()), *seg.flush()]
        return [u for u in found if not u.interim]
    return [u for u in [*seg.feed(pcm), *seg.flush()] if not u.interim]


@dataclass
class Word:
    start: float
    end: float
    text: str


def _model() -> Any:
    from faster_whisper import WhisperModel

    from workers.model import resolve_model_path

    return WhisperModel(
        str(resolve_model_path("tiny.en")), device="cpu", compute_type="int8", cpu_threads=1
    )


def transcribe(model: Any, utts: list[Utterance]) -> list[Word]:
    words: list[Word] = []
    for u in utts:
        x = np.frombuffer(u.pcm, dtype="<i2").astype(np.float32) / 32768.0
        segs, _ = model.transcribe(
            x,
            language="en",
            beam_size=5,
            word_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        for s in segs:
            for w in s.words or ():
                a, b = u.start_ms + w.start * 1000, u.start_ms + w.end * 1000
                mid = (a + b) / 2
                if u.keep_from_ms is not None and mid < u.keep_from_ms:
                    continue
                if u.keep_to_ms is not None and mid >= u.keep_to_ms:
                    continue
                words.append(Word(a / 1000, b / 1000, w.word))
    return words


def load_ami() -> tuple[list[bytes], list[list[tuple[float, float]]], list[str]]:
    pcms = [decode_file(AMI / "sources" / f"source{n}.wav", 600) for n in range(4)]
    turns: dict[str, list[tuple[float, float]]] = {}
    for line in (AMI / "mixture.rttm").read_text().splitlines():
        p = line.split()
        turns.setdefault(p[7], []).append((float(p[3]), float(p[3]) + float(p[4])))
    levels = [features(p).level for p in pcms]
    names = sorted(turns)
    n = min(len(v) for v in levels)
    t = (np.arange(n) + 0.5) * FRAME_MS / 1000
    active = {k: np.zeros(n, dtype=bool) for k in names}
    for k in names:
        for a, b in turns[k]:
            active[k][(t >= a) & (t < b)] = True
    solo = {k: active[k] & (sum(active[o].astype(int) for o in names) == 1) for k in names}
    # each speaker with solo turns owns the headset loudest in them; the one left over
    # (MEE014 here, who says only "Mm. Yeah.") owns the headset left over
    owner: list[str | None] = [None] * len(pcms)
    for k in names:
        if solo[k].any():
            owner[int(np.argmax([float(lv[:n][solo[k]].mean()) for lv in levels]))] = k
    left = [k for k in names if k not in owner]
    owners = [o if o is not None else left.pop() for o in owner]
    refs = [
        (AMI / "text" / f"mixture.{c}.words_joined.txt").read_text().replace("_", "")
        for c in "ABCD"
    ]
    return pcms, [turns[k] for k in owners], refs


def score(
    words: list[list[Word]], turns: list[list[tuple[float, float]]], refs: list[str]
) -> dict[str, Any]:
    from bench.wer import normalise, word_errors

    total = mis = dup = 0
    for n, ws in enumerate(words):
        for w in ws:
            total += 1
            mid = (w.start + w.end) / 2
            if not any(a - COLLAR_S <= mid <= b + COLLAR_S for a, b in turns[n]):
                mis += 1
            norm = normalise(w.text)
            if any(
                normalise(o.text) == norm and o.start < w.end and w.start < o.end
                for m, os_ in enumerate(words)
                if m != n
                for o in os_
            ):
                dup += 1
    # turns spoken over someone else's turn: does the speaker's own transcript keep a word?
    over = kept = 0
    for n, ts in enumerate(turns):
        for a, b in ts:
            if any(c < b and a < d for m, os_ in enumerate(turns) if m != n for c, d in os_):
                over += 1
                mids = ((w.start + w.end) / 2 for w in words[n])
                kept += any(a - COLLAR_S <= mid <= b + COLLAR_S for mid in mids)
    wer = {}
    errs = ref_words = 0
    for n, letter in enumerate("ABCD"):
        r = normalise(refs[n])
        h = normalise(" ".join(w.text for w in words[n]))
        e = word_errors(r, h)
        wer[letter] = round(e / max(len(r), 1), 4)
        if letter != "C":
            errs += e
            ref_words += len(r)
    return {
        "words": total,
        "misattributed": round(mis / max(total, 1), 4),
        "duplicated": round(dup / max(total, 1), 4),
        "overlapped_turns_kept": f"{kept}/{over}",
        "wer": wer,
        "wer_abd": round(errs / max(ref_words, 1), 4),
    }


def run_ami(pipelines: list[str], config: CrosstalkConfig) -> dict[str, Any]:
    pcms, turns, refs = load_ami()
    model = _model()
    vad = [vad_decisions(p) for p in pcms]
    speech = [d for _, d in vad]
    mask = crosstalk_frames([features(p) for p in pcms], speech, config)
    live = live_tracks(pcms, config) if any(p.endswith("+live") for p in pipelines) else []
    results: dict[str, Any] = {}
    for name in pipelines:
        detector, suppress = name.split("+") if "+" in name else (name, "none")
        words = []
        utterances = 0
        for n, pcm in enumerate(pcms):
            if suppress == "live":  # already silenced and decided, as capture would
                utts = segment(live[n][0], "vad", live[n][1])
                utterances += len(utts)
                words.append(transcribe(model, utts))
                continue
            decisions = speech[n] & ~mask[n] if suppress == "gate" else speech[n]
            utts = segment(pcm, detector, decisions)
            if suppress in ("gate", "post"):
                utts = _silence(utts, mask[n], own=decisions if suppress == "post" else None)
            utterances += len(utts)
            words.append(transcribe(model, utts))
        results[name] = {"utterances": utterances, **score(words, turns, refs)}
        print(name, json.dumps(results[name]), flush=True)
    return results


def live_tracks(pcms: list[bytes], config: CrosstalkConfig) -> list[tuple[bytes, np.ndarray]]:
    """Each track as live capture would hand it to the segmenter: through a LiveTrack
    (Silero + the meeting's CrosstalkArbiter) in 100 ms batches, track N arriving N
    batches (N x 100 ms) after track 0, as jittery network tracks would. Returns the
    released PCM (crosstalk silenced) and speech decisions per track."""
    batch = 3200
    arb = CrosstalkArbiter(config)
    live = [LiveTrack(SileroSpeech(), arb, f"t{n}", first_frame=0) for n in range(len(pcms))]
    pcm_out = [bytearray() for _ in pcms]
    speech_out: list[list[bool]] = [[] for _ in pcms]
    steps = max(len(p) for p in pcms) // batch + 1
    for step in range(steps + len(pcms)):
        for n, p in enumerate(pcms):
            i = (step - n) * batch
            if 0 <= i < len(p):
                out, flags = live[n].feed(p[i : i + batch])
                pcm_out[n] += out
                speech_out[n] += flags
    for n in range(len(pcms)):
        out, flags = live[n].flush()
        pcm_out[n] += out
        speech_out[n] += flags
    return [(bytes(pcm_out[n]), np.array(speech_out[n], dtype=bool)) for n in range(len(pcms))]


def _silence(utts: list[Utterance], mask: np.ndarray, own: np.ndarray | None) -> list[Utterance]:
    """Crosstalk frames of each utterance silenced; with ``own`` (post mode) an utterance
    left with under 150 ms of own speech is dropped."""
    out = []
    for u in utts:
        # utterance starts are frame-aligned for the VAD segmenter (32 ms); the energy one
        # uses 30 ms frames, so map by time
        samples = np.frombuffer(u.pcm, dtype="<i2").copy()
        first = u.start_ms * 16 // FRAME_SAMPLES  # meeting frame at the utterance start
        offset = u.start_ms * 16 - first * FRAME_SAMPLES
        n = -(-(samples.size + offset) // FRAME_SAMPLES)
        m = mask[first : first + n]
        if own is not None:
            kept = own[first : first + n] & ~m
            if kept.sum() * FRAME_MS < 150:
                continue
        padded = np.concatenate([np.zeros(offset, dtype=np.int16), samples])
        pcm = silence_frames(padded.astype("<i2").tobytes(), m)[offset * 2 :]
        out.append(Utterance(u.start_ms, pcm, keep_from_ms=u.keep_from_ms, keep_to_ms=u.keep_to_ms))
    return out


# -- noise ---------------------------------------------------------------------------------


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x: np.ndarray = np.fft.irfft(spec, n)
    return x / float(np.sqrt(np.mean(x * x)))


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Music-like: chords of harmonic tones with note envelopes, a bass line, hi-hat noise."""
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    out = np.zeros_like(t)
    beat = 0.5
    for k in range(int(seconds / beat)):
        a, b = int(k * beat * sr), int((k + 1) * beat * sr)
        tt = t[a:b] - t[a]
        env = np.exp(-3 * tt)
        root = 110 * 2 ** (rng.integers(0, 12) / 12)
        for ratio in (1, 1.25, 1.5, 2):
            for h in range(1, 5):
                out[a:b] += env * np.sin(2 * np.pi * root * 2 * ratio * h * tt) / h
        out[a:b] += 0.8 * env * np.sin(2 * np.pi * root / 2 * tt)
        hat = int(0.03 * sr)
        out[a : a + hat] += 0.3 * rng.standard_normal(min(hat, b - a))
    return out / float(np.sqrt(np.mean(out * out)))


def _mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> bytes:
    s = speech.astype(np.float64)
    ps = np.mean(s * s)
    nz = noise[: s.size] * np.sqrt(ps / 10 ** (snr_db / 10))
    y = np.clip(s + nz, -32768, 32767)
    return bytes(y.astype("<i2").tobytes())


def run_noise(detectors: list[str]) -> dict[str, Any]:
    from bench.wer import normalise, word_errors

    rng = np.random.default_rng(17)
    clips = sorted((DATA / "fleurs-en").glob("*.ogg"))
    audio = [np.frombuffer(decode_file(c, 600), dtype="<i2").astype(np.float64) for c in clips]
    refs = [c.with_suffix(".txt").read_text() for c in clips]
    model = _model()
    out: dict[str, Any] = {}
    for cond in ("clean", "pink", "babble"):
        mixes = []
        for i, a in enumerate(audio):
            if cond == "clean":
                mixes.append(a.astype("<i2").tobytes())
                continue
            if cond == "pink":
                noise = pink(a.size, rng)
            else:  # babble: three other clips, looped, summed
                noise = np.zeros(a.size)
                for k in (1, 2, 3):
                    o = audio[(i + k) % len(audio)]
                    noise += np.resize(o, a.size) / np.sqrt(np.mean(o * o))
                noise /= np.sqrt(np.mean(noise * noise))
            mixes.append(_mix(a, noise, 10.0))
        for det in detectors:
            errs = words = 0
            n_utts = 0
            for pcm, ref in zip(mixes, refs, strict=True):
                dec = vad_decisions(pcm)[1] if det == "vad" else None
                utts = segment(pcm, det, dec)
                n_utts += len(utts)
                hyp = " ".join(w.text for w in transcribe(model, utts))
                r = normalise(ref)
                errs += word_errors(r, normalise(hyp))
                words += len(r)
            out[f"{cond}/{det}"] = {"wer": round(errs / words, 4), "utterances": n_utts}
            print(cond, det, json.dumps(out[f"{cond}/{det}"]), flush=True)
    # no speech: 60 s of pink noise, of music, of music over noise
    sr = 16000
    for cond in ("noise", "music", "music+noise"):
        if cond == "noise":
            x = pink(60 * sr, rng) * 0.05
        elif cond == "music":
            x = music(60, rng) * 0.1
        else:
            x = music(60, rng) * 0.1 + pink(60 * sr, rng) * 0.03
        pcm = np.clip(x * 32768, -32768, 32767).astype("<i2").tobytes()
        for det in detectors:
            dec = vad_decisions(pcm)[1] if det == "vad" else None
            utts = segment(pcm, det, dec)
            text = " ".join(w.text for w in transcribe(model, utts)).strip()
            out[f"nospeech-{cond}/{det}"] = {
                "utterances": len(utts),
                "words": len(text.split()),
            }
            print(cond, det, json.dumps(out[f"nospeech-{cond}/{det}"]), flush=True)
    return out


# -- cost ----------------------------------------------------------------------------------


def run_cost() -> dict[str, Any]:
    """CPU seconds per second of audio per track: VAD alone, and VAD + arbiter (4 tracks of
    one meeting, frame-level decisions each 100 ms batch, as capture would run them)."""
    pcms, _, _ = load_ami()
    seconds = len(pcms[0]) / 32000
    batch = 3200  # 100 ms
    res: dict[str, Any] = {}
    for gate in (None, -90.0):
        vads = [SileroVAD(gate_dbfs=gate) for _ in pcms]
        t0 = time.process_time()
        for i in range(0, len(pcms[0]), batch):
            for v, p in zip(vads, pcms, strict=True):
                v.speech_probs(p[i : i + batch])
        cpu = time.process_time() - t0
        key = "vad_gate_off" if gate is None else f"vad_gate_{gate:g}dBFS"
        res[key] = {
            "cpu_per_track_pct": round(100 * cpu / seconds / len(pcms), 3),
            "model_frames_pct": round(
                100 * sum(v.chunks_run for v in vads) / (len(pcms) * seconds * 1000 / FRAME_MS),
                1,
            ),
        }
    for every in (1, 3):  # arbiter decisions every 100 ms / 300 ms
        res[f"vad_plus_arbiter_4_tracks_every_{every * 100}ms"] = {
            "cpu_per_track_pct": round(100 * _arbitrated(pcms, every) / seconds / 4, 3)
        }
    for k, v in res.items():
        print(k, json.dumps(v))
    return res


def _arbitrated(pcms: list[bytes], every: int) -> float:
    """CPU seconds for VAD + arbiter over a meeting's tracks fed in 100 ms batches, each
    track deciding what every other track has reached, ``every`` batches."""
    batch = 3200
    detectors = [SileroSpeech() for _ in pcms]
    arb = CrosstalkArbiter()
    names = [f"t{n}" for n in range(len(pcms))]
    pushed = [0] * len(pcms)  # meeting frame each track has pushed up to
    decided = [0] * len(pcms)  # ... and decided up to
    lookahead = arb.config.half_window + 1
    t0 = time.process_time()
    for b, i in enumerate(range(0, len(pcms[0]), batch)):
        for n, p in enumerate(pcms):
            chunk = p[i : i + batch]
            flags = detectors[n].decide(chunk)
            arb.push(names[n], chunk, flags, first_frame=0 if not i else None)
            pushed[n] += len(flags)
            if b % every:
                continue
            upto = min(arb.reached(names[n]), pushed[n]) - lookahead
            if upto > decided[n]:
                arb.crosstalk(names[n], decided[n], upto - decided[n])
                decided[n] = upto
    return time.process_time() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", action="store_true", help="the noise benchmark")
    parser.add_argument("--cost", action="store_true", help="CPU per track")
    parser.add_argument(
        "--pipelines",
        default="energy,vad,vad+gate,vad+live,energy+post",
        help="AMI pipelines: detector[+none|gate|live|post], comma-separated",
    )
    parser.add_argument("--margin-db", type=float, default=CrosstalkConfig.margin_db)
    parser.add_argument("--min-corr", type=float, default=CrosstalkConfig.min_corr)
    parser.add_argument("--hold", type=int, default=CrosstalkConfig.hold)
    parser.add_argument(
        "--half-window",
        type=int,
        default=CrosstalkConfig.half_window,
        help="envelope window each side of a frame, in 32 ms frames (look-ahead: +1)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.cost:
        result = run_cost()
    elif args.noise:
        result = run_noise(["energy", "vad"])
    else:
        cfg = CrosstalkConfig(
            margin_db=args.margin_db,
            min_corr=args.min_corr,
            half_window=args.half_window,
            hold=args.hold,
        )
        result = run_ami(args.pipelines.split(","), cfg)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
