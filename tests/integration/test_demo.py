"""``sealscribe demo`` as a user runs it (a subprocess): real Redis (or a private one it
starts), a real worker it starts, the real model, four participants over real WebRTC; it
prints live captions and the transcript and leaves nothing readable behind."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import redis

from pipeline.config import Settings
from pipeline.net import free_port


def run_demo(env: dict[str, str], *args: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out: dict[str, object] = json.loads(result.stdout)
    return out


def test_demo_runs_end_to_end(settings: Settings, redis_client: redis.Redis) -> None:
    env = {
        **os.environ,
        "SEALSCRIBE_REDIS_URL": settings.redis_url,
        "SEALSCRIBE_HOME": str(settings.home),
    }
    out = run_demo(env, "--seconds", "15")
    transcript = str(out["transcript"])
    speakers = {line.split("] ")[1].split(":")[0] for line in transcript.splitlines()}
    assert len(speakers) >= 3 and speakers <= {f"Speaker {x}" for x in "ABCD"}
    assert out["captions"] == out["segments"]  # every segment arrived as a live caption
    assert int(str(out["segments"])) >= len(transcript.splitlines())
    assert out["audio_left"] == 0 and out["plaintext_found"] == 0
    assert out["audit_intact"] is True and out["readable_after_delete"] is False
    assert not list(redis_client.scan_iter(f"ss:*{out['meeting_id']}*"))
    assert out["primary_version"] == 3  # rotated once, then again by the crypto-shred


def test_demo_starts_a_private_redis_when_none_answers(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SEALSCRIBE_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "SEALSCRIBE_HOME": str(tmp_path / "home"),
    }
    # As a person runs it: the human output, which says what it started and shows captions.
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", "--seconds", "6"],
        env={**env, "COLUMNS": "400"},  # no wrapped lines to match across
        capture_output=True,
        text=True,
        timeout=600,
    )
    # exit 0 also means: audit chain intact, no audio left, no plaintext found
    assert result.returncode == 0, result.stdout + result.stderr
    assert "started a private redis-server" in result.stdout
    captions = re.findall(r"^ +\[ *[0-9.]+ s\] Speaker [ABCD]:(.*)$", result.stdout, re.M)
    assert captions, result.stdout
    assert all(text.strip() for text in captions), "the demo printed an empty caption"
    leftover = subprocess.run(["pgrep", "-f", "sealscribe-redis-"], capture_output=True)
    assert leftover.returncode == 1, "the private redis-server was left running"
