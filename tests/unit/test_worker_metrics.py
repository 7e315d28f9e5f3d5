"""Worker metrics: labels stay within their fixed sets, and serving refuses to run without
multiprocess mode (it would serve the main process's zeros, not the pool's counts)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from keys.types import Purpose
from workers import metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_label_outside_its_set_is_counted_as_other() -> None:
    before = sample("sealscribe_segments_purged_total", reason="other")
    metrics.count_purge("m_4f2a9c")  # an id must never become a label
    metrics.count_task("Alice")
    assert sample("sealscribe_segments_purged_total", reason="other") == before + 1
    assert sample("sealscribe_segments_purged_total", reason="m_4f2a9c") == 0
    assert sample("sealscribe_transcribe_tasks_total", outcome="Alice") == 0


def test_known_labels_and_real_time_factor() -> None:
    before = sample("sealscribe_key_unwraps_total", purpose="transcribe")
    metrics.count_unwrap(Purpose.TRANSCRIBE)
    metrics.count_purge("opted-out")
    assert sample("sealscribe_key_unwraps_total", purpose="transcribe") == before + 1
    assert sample("sealscribe_segments_purged_total", reason="opted-out") >= 1
    count = sample("sealscribe_transcription_rtf_count")
    with metrics.timed_model_call(10.0):
        pass
    with metrics.timed_model_call(0.0):  # nothing to transcribe: nothing observed
        pass
    assert sample("sealscribe_transcription_rtf_count") == count + 1
    assert sample("sealscribe_transcription_rtf_bucket", le="0.01") >= 1


def test_serving_needs_multiprocess_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(RuntimeError, match="PROMETHEUS_MULTIPROC_DIR"):
        metrics.serve(0)
