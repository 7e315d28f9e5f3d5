"""No log line carries content, tokens or keys, even from a third-party exception message:
provoked with canary content through a real handler."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from pipeline.errors import NotFound
from pipeline.logs import RedactingFilter

CANARY = "Flintwick"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old)


def test_third_party_exception_messages_are_dropped(captured: io.StringIO) -> None:
    try:
        int(f"the {CANARY} protocol is ready")
    except ValueError:
        logging.getLogger("workers.tasks").exception("transcription failed for %s", "m_1")
    out = captured.getvalue()
    assert CANARY not in out
    assert "transcription failed for m_1" in out
    assert "ValueError: <message redacted>" in out and "test_log_redaction.py" in out


def test_our_exception_messages_are_kept(captured: io.StringIO) -> None:
    try:
        raise NotFound("no meeting m_9")
    except NotFound:
        logging.getLogger("pipeline.capture").exception("lookup failed")
    assert "NotFound: no meeting m_9" in captured.getvalue()


def test_unknown_libraries_and_content_arguments(captured: io.StringIO) -> None:
    logging.getLogger("somelib.parser").warning("could not parse %r", f"{CANARY} text")
    logging.getLogger("pipeline.x").info(
        "got %s and %s", f"{CANARY}".encode() * 40, ValueError(CANARY)
    )
    logging.getLogger("pipeline.x").info(
        "token %s key %s wrapped %s", "sst_" + "A" * 43, "ab" * 32, "local:v2:" + "Zm9vYmFy" * 8
    )
    # Celery reports a failed task's exception as a repr string named "exc".
    logging.getLogger("celery.app.trace").error(
        "Task %(name)s[%(id)s] raised unexpected: %(exc)s",
        {"name": "sealscribe.transcribe", "id": "42", "exc": f"ValueError('{CANARY}')"},
    )
    out = captured.getvalue()
    assert CANARY not in out and CANARY.lower() not in out
    assert "<message from logger somelib.parser redacted>" in out
    assert "<360 bytes>" in out and "ValueError(<message redacted>)" in out
    assert "sst_" not in out and "ab" * 32 not in out and "Zm9vYmFy" not in out
    assert "Task sealscribe.transcribe[42] raised unexpected: ValueError(<message redacted>)" in out
