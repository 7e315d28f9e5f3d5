"""Model resolution (the base model joined and checked) and per-meeting language rules."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import redis

from pipeline import services
from pipeline.asr import is_multilingual
from pipeline.errors import InvalidInput
from pipeline.runtime import Runtime
from workers.model import BASE_SHA256, resolve_model_path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_base_model_is_joined_checked_and_rebuilt_when_altered(tmp_path: Path) -> None:
    path = resolve_model_path("base", tmp_path)
    assert path == tmp_path / "models" / "base"
    assert sha(path / "model.bin") == BASE_SHA256
    assert {p.name for p in path.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    with (path / "model.bin").open("r+b") as fh:  # a flipped byte must never be loaded
        fh.seek(1000)
        fh.write(b"\x00")
    assert sha(path / "model.bin") != BASE_SHA256
    assert resolve_model_path("base", tmp_path) == path
    assert sha(path / "model.bin") == BASE_SHA256
    assert is_multilingual(str(path)) and is_multilingual("base")
    assert not is_multilingual(str(resolve_model_path("tiny.en")))


def test_unknown_model_is_explained(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"neither tiny\.en, base, nor a directory"):
        resolve_model_path(str(tmp_path / "nowhere"))


def test_language_rules(rt: Runtime, redis_client: redis.Redis) -> None:
    tenant, _ = services.create_tenant(rt, "Acme")
    before = set(redis_client.scan_iter("ss:meeting:*"))
    with pytest.raises(InvalidInput, match="ISO 639-1 code"):
        services.create_meeting(rt, tenant.id, language="French")
    with pytest.raises(InvalidInput, match="knows English only"):
        services.create_meeting(rt, tenant.id, language="fr")
    with pytest.raises(InvalidInput, match="knows English only"):
        services.create_meeting(rt, tenant.id, translate=True)
    assert set(redis_client.scan_iter("ss:meeting:*")) == before
    m = services.create_meeting(rt, tenant.id, language="en")
    assert services.get_meeting(rt, m.id).language == "en"
    assert services.get_meeting(rt, m.id).translate is False
