"""How the CLI speaks: Rich for people, ``--json`` for programs, and one error mapping.

Errors are ours (``keys.errors``) by the time they get here; each maps to an exit code:

====  ==========================================
code  meaning
====  ==========================================
1     other error, or ``audit verify`` found tampering
2     invalid input (also Typer's usage errors)
3     not found
4     Redis unreachable
5     keyring on disk refused (corrupt or open permissions)
6     key revoked or unavailable
7     authentication failed
8     conflict with the current state
====  ==========================================
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from pipeline.config import get_settings
from pipeline.errors import OURS, kind_of
from pipeline.runtime import Runtime, default_actor

P = ParamSpec("P")
R = TypeVar("R")

console = Console()
err_console = Console(stderr=True)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


def runtime() -> Runtime:
    return Runtime.from_settings(get_settings(), default_actor("cli"))


def to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.repr
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    if isinstance(value, Path):
        return str(value)
    return value


def emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    if as_json:
        print(json.dumps(to_jsonable(data), indent=2, sort_keys=True))
    else:
        human()


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into a message (or JSON) and an exit code; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OURS as exc:
            message = str(exc) or "the sealed data could not be opened"
            if kwargs.get("as_json"):
                print(json.dumps({"error": {"type": type(exc).__name__, "message": message}}))
            else:
                err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(kind_of(exc).exit_code) from None

    return wrapper
