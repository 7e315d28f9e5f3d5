"""``sealscribe demo`` as a user runs it (a subprocess): real Redis, a real worker it starts,
the real model; it prints the transcript and leaves nothing readable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis

from pipeline.config import Settings


def test_demo_runs_end_to_end(settings: Settings, redis_client: redis.Redis) -> None:
    env = {**os.environ, "SEALSCRIBE_REDIS_URL": settings.redis_url,
           "SEALSCRIBE_HOME": str(settings.home)}
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--json"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert "ask not what your country can do for you" in out["transcript"].lower()
    assert out["plaintext_found"] == 0 and out["audit_intact"] is True
    assert out["readable_after_delete"] is False
    assert not list(redis_client.scan_iter(f"ss:*{out['meeting_id']}*"))
    assert out["primary_version"] == 3  # rotated once, then again by the crypto-shred
