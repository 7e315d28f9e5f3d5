"""``sealscribe demo`` runs end to end against real Redis and leaves nothing readable."""

from __future__ import annotations

import json

import redis
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import Settings


def test_demo_runs_end_to_end(settings: Settings, redis_client: redis.Redis) -> None:
    result = CliRunner().invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["segments"] == 5 and out["audit_intact"] is True
    assert out["readable_after_delete"] is False
    assert not list(redis_client.scan_iter(f"*{out['meeting_id']}*"))
    assert out["primary_version"] == 3  # rotated once, then again by the crypto-shred
