"""The transcription worker as a real Celery subprocess against real Redis and the real
tiny.en model: accuracy, off means off, revocation, redelivery after SIGKILL, and no
plaintext anywhere (a spoken canary)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.wer import normalise, word_errors
from keys.types import KeyUse, Purpose
from pipeline import queue, services
from pipeline.audio.decode import decode_file
from pipeline.audio.segmenter import Segmenter, SegmenterConfig
from pipeline.cli import app as cli_app
from pipeline.config import Settings, get_settings
from pipeline.errors import NotFound
from pipeline.models import AudioSegment, Meeting
from pipeline.runtime import Runtime
from pipeline.scan import scan
from pipeline.sealing import seal_audio
from pipeline.services.retention import set_retention
from pipeline.services.transcripts import read_transcript, submit_file, wait_for
from tests.conftest import shared_data
from tests.harness.processes import WorkerProcess, wait_until
from workers.packing import Item, plan


@pytest.fixture
def rt(env: dict[str, str]) -> Runtime:
    return Runtime.from_settings(Settings.from_env(env), actor="test")


@pytest.fixture
def tenant(rt: Runtime) -> str:
    return services.create_tenant(rt, "Acme")[0].id


def transcribe_file(rt: Runtime, path: Path, tenant: str, timeout: float = 120) -> list[str]:
    job = submit_file(rt, path, tenant)
    wait_for(rt, job, lambda *_: None, timeout)
    return [s.text for s in read_transcript(rt, job.meeting.id)]


def test_jfk_gives_the_known_sentence(rt: Runtime, tenant: str, worker: WorkerProcess) -> None:
    texts = transcribe_file(rt, shared_data("jfk", "jfk.flac"), tenant)
    assert normalise(" ".join(texts)) == normalise(
        "And so my fellow Americans, ask not what your country can do for you, ask what you "
        "can do for your country."
    )


def test_fleurs_wer_within_target(rt: Runtime, tenant: str, worker: WorkerProcess) -> None:
    folder = shared_data("fleurs-en")
    errors = words = 0
    for audio in sorted(folder.glob("*.ogg")):
        ref = normalise(audio.with_suffix(".txt").read_text())
        hyp = normalise(" ".join(transcribe_file(rt, audio, tenant)))
        errors += word_errors(ref, hyp)
        words += len(ref)
    assert words > 200
    assert errors / words <= 0.081, f"WER {errors / words:.3f}"


def _paused_submit(rt: Runtime, tenant: str, path: Path) -> tuple[str, int]:
    """Submit a file while no worker consumes, so its segments sit in the queue."""
    queue.client().control.cancel_consumer("sealscribe", reply=True, timeout=5)
    job = submit_file(rt, path, tenant)
    assert job.segments >= 1 and rt.store.segments.pending_count(job.meeting.id) == job.segments
    return job.meeting.id, job.segments


def _resume() -> None:
    queue.client().control.add_consumer("sealscribe", reply=True, timeout=5)


def test_switching_off_purges_queued_segments(
    rt: Runtime, tenant: str, worker: WorkerProcess
) -> None:
    meeting_id, n = _paused_submit(rt, tenant, shared_data("jfk", "jfk.flac"))
    try:
        services.set_transcription(rt, meeting_id, False)
    finally:
        _resume()
    wait_until(lambda: rt.store.segments.pending_count(meeting_id) == 0, 60, "purged")
    assert rt.store.segments.transcript_count(meeting_id) == 0
    purges = [e for e in services.audit_show(rt, tenant, limit=1000) if e.action == "purge"]
    assert [e.outcome for e in purges] == ["transcription-off"] * n
    assert not [
        e
        for e in services.audit_show(rt, tenant, limit=1000)
        if e.action == "unwrap"
        and e.purpose == "transcribe"
        and e.meeting == meeting_id
        and e.seq > purges[0].seq - n
    ]


def test_revoking_purges_queued_segments(rt: Runtime, tenant: str, worker: WorkerProcess) -> None:
    meeting_id, n = _paused_submit(rt, tenant, shared_data("jfk", "jfk.flac"))
    try:
        services.revoke_keys(rt, tenant)
    finally:
        _resume()
    wait_until(lambda: rt.store.segments.pending_count(meeting_id) == 0, 60, "purged")
    assert rt.store.segments.transcript_count(meeting_id) == 0
    entries = services.audit_show(rt, tenant, limit=1000)
    revoked_at = next(e.seq for e in entries if e.action == "revoke")
    after = [(e.action, e.outcome) for e in entries if e.seq > revoked_at]
    # The worker sees the tenant's revocation before it asks for any key: no key use at all.
    assert after == [("purge", "key-revoked")] * n


def test_audio_that_expired_in_the_queue_is_reported_lost(
    rt: Runtime, tenant: str, worker: WorkerProcess
) -> None:
    set_retention(rt, tenant, audio_ttl=1)  # sealed audio may wait one second
    meeting_id, n = _paused_submit(rt, tenant, shared_data("jfk", "jfk.flac"))
    time.sleep(1.5)  # ... and waited longer: Redis expired it
    _resume()
    wait_until(lambda: rt.store.segments.pending_count(meeting_id) == 0, 60, "purged")
    assert rt.store.segments.transcript_count(meeting_id) == 0
    purges = [e for e in services.audit_show(rt, tenant, limit=1000) if e.action == "purge"]
    assert [e.outcome for e in purges] == ["audio-expired"] * n  # audited, not "already done"
    assert b"expired untranscribed" in worker.log.read_bytes()


def test_sigkill_mid_task_then_restart_transcribes_each_once(
    env: dict[str, str], rt: Runtime, tenant: str, tmp_path: Path, worker: WorkerProcess
) -> None:
    worker.stop()  # this test runs its own worker with a short redelivery time
    home = Path(env["SEALSCRIBE_HOME"])
    log = tmp_path / "kill.log"
    victim = WorkerProcess(home, log, SEALSCRIBE_VISIBILITY="3")
    survivor = None
    try:
        files = sorted(shared_data("fleurs-en").glob("*.ogg"))[:4]
        jobs = [submit_file(rt, f, tenant) for f in files]
        first = jobs[0].meeting.id

        def busy() -> bool:  # the first segment's key was unwrapped: transcription under way
            return any(
                e.action == "unwrap" and e.purpose == "transcribe" and e.meeting == first
                for e in services.audit_show(rt, tenant, limit=1000)
            )

        wait_until(busy, 60, "the first segment under way", interval=0.02)
        victim.kill()
        # The worker goes from one task to the next until all four files are done, so work
        # left means it died in a task. The first file alone can be done before the kill
        # lands when this process gets little CPU (seen in CI): count what is left of all.
        left = sum(rt.store.segments.pending_count(j.meeting.id) for j in jobs)
        assert left >= 1, "the worker finished everything before it was killed"
        survivor = WorkerProcess(home, log, SEALSCRIBE_VISIBILITY="3")
        for job in jobs:
            wait_for(rt, job, lambda *_: None, timeout=120)
    finally:
        victim.kill()
        if survivor is not None:
            survivor.stop()
        worker.start()  # restore the module's worker
    for job in jobs:
        segments = read_transcript(rt, job.meeting.id)
        assert len(segments) == job.segments
        assert len({(s.participant_id, s.seq) for s in segments}) == job.segments
        assert all(s.text for s in segments)


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng (Debian package) is needed to speak the canary; scripts/setup installs it",
)
def test_spoken_canary_is_readable_only_through_the_transcript(
    env: dict[str, str], rt: Runtime, tenant: str, tmp_path: Path, worker: WorkerProcess
) -> None:
    wav = tmp_path / "canary.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "en-us",
            "-s",
            "160",
            "-w",
            str(wav),
            "The Flintwick protocol is ready",
        ],
        check=True,
    )
    texts = transcribe_file(rt, wav, tenant)
    assert "flintwick" in normalise(" ".join(texts))
    wav.unlink()  # the test's own input, not something sealscribe wrote
    home = Path(env["SEALSCRIBE_HOME"])
    temp = Path(env["TMPDIR"])
    assert scan(rt.store.redis, "Flintwick", home, [worker.log.parent], temp_dir=temp) == []
    # The scan finds a planted copy in a log file and in Redis.
    (home / "logs").mkdir(exist_ok=True)
    (home / "logs" / "leak.log").write_text("transcript: the flintwick protocol\n")
    rt.store.redis.set("ss:leak", "THE FLINTWICK PROTOCOL".encode("utf-16-le"))
    try:
        found = scan(rt.store.redis, "Flintwick", home, temp_dir=temp)
        assert {(f.where, Path(f.name).name) for f in found} == {
            ("file", "leak.log"),
            ("redis", "ss:leak"),
        }
        result = CliRunner().invoke(cli_app, ["scan", "--canary", "Flintwick", "--json"])
        assert result.exit_code == 1
        assert {"where": "redis", "name": "ss:leak"} in json.loads(result.output)["found"]
    finally:
        (home / "logs" / "leak.log").unlink()
        rt.store.redis.delete("ss:leak")


def test_transcript_export_formats(rt: Runtime, tenant: str, worker: WorkerProcess) -> None:
    job = submit_file(rt, shared_data("jfk", "jfk.flac"), tenant)
    wait_for(rt, job, lambda *_: None, 120)
    runner = CliRunner()
    out = {
        fmt: runner.invoke(cli_app, ["meeting", "transcript", job.meeting.id, "-f", fmt])
        for fmt in ("txt", "srt", "vtt", "json")
    }
    assert all(r.exit_code == 0 for r in out.values()), {k: r.output for k, r in out.items()}
    assert out["vtt"].stdout.startswith("WEBVTT\n\n00:00:00.")
    assert "<v file>And so" in out["vtt"].stdout
    assert re.search(r"^1\n00:00:0\d,\d{3} --> 00:00:1\d,\d{3}\nfile: And so", out["srt"].stdout)
    assert out["txt"].stdout.startswith("[00:00:00] file: And so")
    doc = json.loads(out["json"].stdout)
    assert doc[0]["speaker"] == "file" and doc[0]["words"][0]["word"].strip() == "And"
    # stderr says whether the transcript is complete (the meeting's manifest)
    assert all("transcript complete" in r.stderr for r in out.values())
    # Delivery is audited with its purpose, and so is the manifest check (no content opened).
    unwraps = [e for e in services.audit_show(rt, tenant, limit=1000) if e.action == "unwrap"]
    assert [(e.purpose, e.participant) for e in unwraps[-2:]] == [
        (Purpose.DELIVER.value, "file"),
        (Purpose.VERIFY.value, "file"),
    ]
    key_use = services.data_key(rt, job.meeting, KeyUse.TRANSCRIPT, Purpose.DELIVER)
    assert key_use is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"this is not audio at all" * 100, "is not a readable audio or video file"),
    ],
)
def test_bad_files_leave_nothing_behind(
    rt: Runtime, tenant: str, tmp_path: Path, content: bytes, message: str, worker: WorkerProcess
) -> None:
    bad = tmp_path / "input.wav"
    bad.write_bytes(content)
    before = set(rt.store.redis.scan_iter("ss:*"))
    result = CliRunner().invoke(cli_app, ["transcribe", str(bad), "--tenant", tenant])
    assert result.exit_code == 2 and message in result.output, result.output
    assert set(rt.store.redis.scan_iter("ss:*")) == before


def test_transcribe_json_gives_the_text(tenant: str, worker: WorkerProcess) -> None:
    result = CliRunner().invoke(
        cli_app, ["transcribe", str(shared_data("jfk", "jfk.flac")), "--tenant", tenant, "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert "your country" in " ".join(s["text"] for s in out["transcript"]).lower()
    assert out["transcript"][0]["speaker"]


def test_too_long_and_unknown_meeting(
    rt: Runtime, tenant: str, worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = set(rt.store.redis.scan_iter("ss:*"))
    result = CliRunner().invoke(
        cli_app,
        [
            "transcribe",
            str(shared_data("jfk", "jfk.flac")),
            "--tenant",
            tenant,
            "--meeting",
            "m_nope",
        ],
    )
    assert result.exit_code == 3 and "no meeting m_nope" in result.output
    monkeypatch.setenv("SEALSCRIBE_MAX_FILE_SECONDS", "5")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli_app, ["transcribe", str(shared_data("jfk", "jfk.flac")), "--tenant", tenant]
        )
    finally:
        monkeypatch.delenv("SEALSCRIBE_MAX_FILE_SECONDS")
        get_settings.cache_clear()
    assert result.exit_code == 2 and "longer than the limit of 5 s" in result.output
    assert set(rt.store.redis.scan_iter("ss:*")) == before


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng (Debian package) is needed to speak French; scripts/setup installs it",
)
def test_base_model_detects_french_and_translates(
    env: dict[str, str], rt: Runtime, tenant: str, tmp_path: Path, worker: WorkerProcess
) -> None:
    home = Path(env["SEALSCRIBE_HOME"])
    wav = tmp_path / "fr.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "fr",
            "-s",
            "150",
            "-w",
            str(wav),
            "Bonjour à tous. La réunion commence maintenant. Nous parlons du budget de "
            "l'année prochaine.",
        ],
        check=True,
    )
    worker.stop()  # the queue must reach the base-model worker only
    base = WorkerProcess(home, tmp_path / "base.log", SEALSCRIBE_MODEL="base")
    try:
        rt_base = Runtime.from_settings(
            Settings.from_env({**env, "SEALSCRIBE_MODEL": "base"}), actor="test"
        )
        detected = services.create_meeting(rt_base, tenant, transcription=True)
        translated = services.create_meeting(
            rt_base, tenant, transcription=True, language="fr", translate=True
        )
        out = {}
        for meeting in (detected, translated):
            job = submit_file(rt_base, wav, tenant, meeting.id)
            wait_for(rt_base, job, lambda *_: None, timeout=120)
            out[meeting.id] = read_transcript(rt_base, meeting.id)
    finally:
        base.stop()
        worker.start()
    # espeak-ng's French is crude: Whisper falls back to sampling on it, so its words vary
    # from run to run. Judge what is stable: the language found, and which task ran.
    assert [(s.language, s.translated) for s in out[detected.id]] == [("fr", False)]
    assert [(s.language, s.translated) for s in out[translated.id]] == [("fr", True)]
    said = set(normalise(out[detected.id][0].text))
    assert said & {"pour", "tous", "la", "le", "les", "nous", "du", "de", "des", "et"}
    assert out[translated.id][0].text != out[detected.id][0].text


def test_batches_across_meetings_keep_each_transcript_right(
    env: dict[str, str], rt: Runtime, tenant: str, tmp_path: Path, worker: WorkerProcess
) -> None:
    home = Path(env["SEALSCRIBE_HOME"])
    worker.stop()
    log = tmp_path / "batch.log"
    batcher = WorkerProcess(home, log, SEALSCRIBE_BATCH="4")
    try:
        queue.client().control.cancel_consumer("sealscribe", reply=True, timeout=5)
        files = [
            shared_data("jfk", "jfk.flac"),
            *sorted(shared_data("fleurs-en").glob("*.ogg"))[:5],
        ]
        jobs = [submit_file(rt, f, tenant) for f in files]  # six meetings
        queue.client().control.add_consumer("sealscribe", reply=True, timeout=5)
        for job in jobs:
            wait_for(rt, job, lambda *_: None, timeout=180)
    finally:
        batcher.stop()
        worker.start()
    assert b"transcribed a batch of 4 segments" in log.read_bytes()
    texts = [" ".join(s.text for s in read_transcript(rt, j.meeting.id)) for j in jobs]
    assert normalise(texts[0]) == normalise(
        "And so my fellow Americans, ask not what your country can do for you, ask what you "
        "can do for your country."
    )
    errors = words = 0
    for f, text in zip(files[1:], texts[1:], strict=True):
        ref = normalise(f.with_suffix(".txt").read_text())
        errors += word_errors(ref, normalise(text))
        words += len(ref)
    assert errors / words <= 0.15, f"WER {errors / words:.3f}"
    for job in jobs:  # each segment once, in order, nothing left pending
        segments = read_transcript(rt, job.meeting.id)
        assert [s.seq for s in segments] == list(range(job.segments))
        assert rt.store.segments.pending_count(job.meeting.id) == 0
    assert rt.store.redis.zcard("ss:pending") == 0


def make_video(audio: Path, out: Path) -> None:
    """An MP4 with a video track and ``audio`` as AAC, made with PyAV."""
    import av
    import numpy as np

    from pipeline.audio.decode import decode_file

    samples = np.frombuffer(decode_file(audio, 60), "<i2").astype(np.float32) / 32768
    with av.open(str(out), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = container.add_stream("aac", rate=16000)
        sound.layout = "mono"
        for i in range(len(samples) // 1600):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), i % 255, np.uint8), format="rgb24"
            )
            for packet in video.encode(frame):
                container.mux(packet)
        for start in range(0, len(samples), 1024):
            chunk = np.zeros((1, 1024), np.float32)
            piece = samples[start : start + 1024]
            chunk[0, : len(piece)] = piece
            aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            aframe.sample_rate = 16000
            for packet in sound.encode(aframe):
                container.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode(None):
                container.mux(packet)


def test_cli_transcribes_a_video_file(
    rt: Runtime, tenant: str, tmp_path: Path, worker: WorkerProcess
) -> None:
    clip = tmp_path / "talk.mp4"
    make_video(shared_data("jfk", "jfk.flac"), clip)
    result = CliRunner().invoke(
        cli_app, ["transcribe", str(clip), "--tenant", tenant, "--format", "txt"]
    )
    assert result.exit_code == 0, result.output
    assert "[00:00:00] file: And so" in result.output
    assert "ask not what your country can do for you" in " ".join(normalise(result.output))
    assert "1 segments, 11.1 s of audio" in result.output


def test_beat_purges_meetings_past_retention(
    env: dict[str, str], rt: Runtime, tenant: str, tmp_path: Path, worker: WorkerProcess
) -> None:
    home = Path(env["SEALSCRIBE_HOME"])
    set_retention(rt, tenant, transcript_ttl=3)
    worker.stop()
    beat = WorkerProcess(
        home, tmp_path / "beat.log", args=("--beat",), SEALSCRIBE_PURGE_INTERVAL="1"
    )
    try:
        job = submit_file(rt, shared_data("jfk", "jfk.flac"), tenant)
        wait_for(rt, job, lambda *_: None, timeout=120)
        assert rt.store.segments.transcript_count(job.meeting.id) == 1

        def gone() -> bool:
            try:
                services.get_meeting(rt, job.meeting.id)
            except NotFound:
                return True
            return False

        wait_until(gone, 30, "the meeting purged", interval=0.5)
    finally:
        beat.stop()
        worker.start()
    assert not list(rt.store.redis.scan_iter(f"ss:*{job.meeting.id}*"))


def _cut_at_pauses(clip: Path) -> list[tuple[int, bytes]]:
    """A fleurs clip cut in the middle of each pause the segmenter finds (a short one: a
    150 ms end silence), as (offset ms, PCM): live-sized utterances, no audio left out."""
    pcm = decode_file(clip, 60)
    seg = Segmenter(SegmenterConfig(end_silence_ms=150, pad_ms=120))
    utts = [*seg.feed(pcm), *seg.flush()]
    cuts = [0]
    for a, b in itertools.pairwise(utts):
        cuts.append((a.start_ms + len(a.pcm) // 32 + b.start_ms) // 20 * 10)
    cuts.append(len(pcm) // 32)
    return [(s, pcm[s * 32 : e * 32]) for s, e in itertools.pairwise(cuts) if e - s >= 300]


def _speak(
    rt: Runtime, meeting: Meeting, participant: str, clips: list[str]
) -> tuple[list[AudioSegment], list[str]]:
    """Store and queue ``clips`` (one a minute) as ``participant``'s utterances; returns the
    segments and the reference words."""
    key = services.data_key(rt, meeting, KeyUse.AUDIO, Purpose.TRANSCRIBE)
    segments: list[AudioSegment] = []
    reference: list[str] = []
    for k, name in enumerate(clips):
        clip = shared_data("fleurs-en", f"{name}.ogg")
        for offset, pcm in _cut_at_pauses(clip):
            segments.append(
                AudioSegment(participant, len(segments), k * 60_000 + offset, 16000, pcm)
            )
        reference += normalise(clip.with_suffix(".txt").read_text())
    for seg in segments:
        sid = rt.store.segments.put_audio(seal_audio(key, meeting.tenant_id, meeting.id, seg))
        queue.enqueue_transcribe(meeting.id, sid)
    return segments, reference


def test_a_speakers_waiting_segments_share_a_window_and_keep_their_own_words(
    rt: Runtime, tenant: str, worker: WorkerProcess
) -> None:
    """Live-sized utterances (fleurs clips cut at their pauses) waiting together: each
    speaker's go through the model in shared 28 s windows, and every segment still gets its
    own words, never another speaker's, meeting's or segment's."""
    one = services.create_meeting(rt, tenant, transcription=True)
    two = services.create_meeting(rt, tenant, transcription=True)
    logged = worker.log.stat().st_size
    queue.client().control.cancel_consumer("sealscribe", reply=True, timeout=5)
    try:
        alice, ref_a = _speak(rt, one, "alice", ["fleurs-en-000", "fleurs-en-002", "fleurs-en-003"])
        bob, ref_b = _speak(rt, one, "bob", ["fleurs-en-006", "fleurs-en-007"])
        # the same participant id in another meeting, saying bob's sentences at the same time
        other, _ = _speak(rt, two, "alice", ["fleurs-en-006", "fleurs-en-007"])
    finally:
        _resume()
    assert len(alice) >= 10 and len(bob) >= 5
    n = {one.id: len(alice) + len(bob), two.id: len(other)}

    def done() -> bool:
        return all(rt.store.segments.transcript_count(m) == k for m, k in n.items())

    wait_until(done, 180, "every segment transcribed")
    assert rt.store.segments.pending_count(one.id) == rt.store.segments.pending_count(two.id) == 0
    batches = re.findall(
        rb"transcribed a batch of (\d+) segments in (\d+) windows",
        worker.log.read_bytes()[logged:],
    )
    # One batch took them all, in as many windows as speakers need: alice's segments in two
    # meetings (same participant id) never share one, nor alice's and bob's.
    speakers = [(m.id, a) for m, segs in ((one, alice), (one, bob), (two, other)) for a in segs]
    windows = plan([Item((m, a.participant_id), a.duration_ms, a.start_ms) for m, a in speakers])
    assert len(windows) == 4
    assert (str(len(speakers)).encode(), b"4") in batches, batches

    said = {
        (m.id, s.participant_id, s.seq): s for m in (one, two) for s in read_transcript(rt, m.id)
    }
    for m, segments in ((one, alice), (one, bob), (two, other)):
        for audio in segments:  # each its own transcript, its words within its own audio
            t = said[(m.id, audio.participant_id, audio.seq)]
            assert t.start_ms == audio.start_ms
            # (one heard alone again, as unpacked, may run a little late: Whisper's timestamps
            # at the end of a short input)
            assert all(audio.start_ms <= w.start_ms <= audio.end_ms + 500 for w in t.words)

    def text(m: Meeting, segments: list[AudioSegment]) -> list[str]:
        return [said[(m.id, a.participant_id, a.seq)].text for a in segments]

    # Unpacked (each segment alone, one 30 s window each) tiny.en gets WER 0.22 on alice's
    # and 0.125 on bob's; packed it does as well or better: it hears whole sentences again.
    for m, segments, ref, most in (
        (one, alice, ref_a, 0.12),
        (one, bob, ref_b, 0.15),
        (two, other, ref_b, 0.15),
    ):
        wer = word_errors(ref, normalise(" ".join(text(m, segments)))) / len(ref)
        assert wer <= most, f"WER {wer:.3f}"
    # The words at the cuts stay with their own segment: the first of a clip's pieces, and
    # the last word of a sentence (Whisper stretches its end over the pause that follows).
    a, b = text(one, alice), text(one, bob)
    assert normalise(a[0]) == ["however"]
    assert normalise(a[5])[-1] == "years" and normalise(a[9])[-1] == "byron"
    assert normalise(b[0])[-1] == "nation", (a, b, text(two, other))
    assert normalise(text(two, other)[0])[-1] == "nation"
    # Never a word of one speaker in another's transcript.
    only_a = {w for w in set(ref_a) - set(ref_b) if len(w) >= 5}
    only_b = {w for w in set(ref_b) - set(ref_a) if len(w) >= 5}
    assert only_a and only_b
    assert not only_a & set(normalise(" ".join(b + text(two, other))))
    assert not only_b & set(normalise(" ".join(a)))
