"""Logging that cannot carry content: a redaction filter on every handler.

What the filter does to each record, before any handler formats it:

* An exception (``exc_info``) keeps its type and traceback frames, but its message is
  dropped unless it is one of ours (``keys.errors``: ours never hold content). A
  third-party message such as ``invalid literal for int(): '<transcript words>'`` would
  otherwise print content.
* Arguments: exceptions become their type name; ``bytes`` become ``<N bytes>`` (audio never
  reaches a log); strings lose anything shaped like an API token, a key, a wrapped key or a
  long base64 / hex blob.
* Records from loggers outside the allow-list (our packages and the libraries we use whose
  log calls carry ids and timings only) keep their logger name and level, but their message
  is replaced: an unknown library's message is not trusted.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.handlers
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from pipeline import faults
from pipeline.errors import OURS

__all__ = ["GuardedFileHandler", "RedactingFilter", "configure_logging", "redact_text"]

ALLOWED_LOGGERS = (
    "keys",
    "pipeline",
    "workers",
    "celery",
    "kombu",
    "faster_whisper",
    "redis",
    "hvac",
    "urllib3",
    "py.warnings",
    "root",
)

_SECRETS = [
    re.compile(r"sst_[A-Za-z0-9_-]{8,}"),  # our API tokens
    re.compile(r"(?:vault|local|transit):v\d+:[A-Za-z0-9+/=_-]+"),  # wrapped keys
    re.compile(r"(?:hv|hvs|s)\.[A-Za-z0-9]{16,}"),  # Vault / OpenBao tokens
    re.compile(r"\b[A-Fa-f0-9]{32,}\b"),  # hex key material
    re.compile(r"[A-Za-z0-9+/]{32,}={0,2}"),  # base64 blobs (keys, ciphertext)
]


_EXC_REPR = re.compile(r"^(\w+)\(.*", re.S)


def redact_text(text: str) -> str:
    for pattern in _SECRETS:
        text = pattern.sub("<redacted>", text)
    return text


def _safe_arg(value: Any) -> Any:
    if isinstance(value, OURS):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, BaseException):
        return f"{type(value).__name__}(<message redacted>)"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact_text(repr(value))


def _exception_text(exc_info: Any) -> str:
    exc_type, exc, tb = exc_info
    frames = "".join(traceback.format_list(traceback.extract_tb(tb)))
    message = str(exc) if isinstance(exc, OURS) else "<message redacted>"
    return f"Traceback (most recent call last):\n{frames}{exc_type.__name__}: {message}"


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_sealscribe_redacted", False):
            return True
        name = record.name
        trusted = any(name == p or name.startswith(p + ".") for p in ALLOWED_LOGGERS)
        if not trusted:
            record.msg = f"<message from logger {name} redacted>"
            record.args = None
        else:
            if isinstance(record.args, dict):
                # Celery passes a failed task's exception as the string "exc" (its repr).
                record.args = {
                    k: _EXC_REPR.sub(r"\1(<message redacted>)", v)
                    if k == "exc" and isinstance(v, str)
                    else _safe_arg(v)
                    for k, v in record.args.items()
                }
            elif record.args:
                record.args = tuple(_safe_arg(a) for a in record.args)
            record.msg = (
                _safe_arg(record.msg)
                if not isinstance(record.msg, str)
                else redact_text(record.msg)
            )
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = _exception_text(record.exc_info)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = None
        record._sealscribe_redacted = True
        return True


class GuardedFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that a full or failing disk cannot turn into a problem.

    A record that cannot be written (``OSError``: no space, quota, read-only, I/O error) is
    dropped and counted; the first drop of an outage prints one line to stderr naming the
    file and the error (never a record), instead of the standard handler's traceback and
    record dump for every record. The next record tries the file again, and the first one
    that lands is preceded by a line saying how many were dropped. Nothing falls back to
    another file."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.dropped:
            lost = self.dropped
            super().emit(
                logging.LogRecord(
                    __name__,
                    logging.WARNING,
                    __file__,
                    0,
                    "log file writable again; %d records were dropped while it was not",
                    (lost,),
                    None,
                )
            )
            if self.dropped == lost:  # the note landed: the outage is over
                self.dropped = 0
            else:
                self.dropped = lost  # the note is not a record; still out
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        if self.stream is not None:  # reopen on the next record: space may have come back
            with contextlib.suppress(OSError, ValueError):
                self.stream.close()
            self.stream = None
        if not self.dropped:
            reason = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            sys.stderr.write(
                f"sealscribe: cannot write the log file {self.baseFilename} "
                f"({reason}); dropping log records until it can\n"
            )
        self.dropped += 1


def configure_logging(
    log_dir: Path | None, level: int = logging.INFO, name: str = "sealscribe"
) -> None:
    """Root logging to stderr and, given ``log_dir``, to ``log_dir/NAME.log`` (rotated),
    with the redaction filter on every handler that exists once it returns."""
    root = logging.getLogger()
    root.setLevel(level)
    for old in [h for h in root.handlers if getattr(h, "_sealscribe", False)]:
        root.removeHandler(old)  # configured again (the worker after the CLI): replace
        old.close()
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        file_handler = (
            logging.handlers.RotatingFileHandler
            if faults.on("logs-unguarded")
            else GuardedFileHandler
        )
        handlers.append(
            file_handler(log_dir / f"{name}.log", maxBytes=10 << 20, backupCount=5, delay=True)
        )
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(fmt)
        handler._sealscribe = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    protect_all_handlers()


def protect_all_handlers() -> None:
    """Put the redaction filter on every handler of every logger that exists now."""
    loggers = [
        logging.getLogger(),
        *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict)),
    ]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
