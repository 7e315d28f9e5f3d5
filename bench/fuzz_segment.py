"""Coverage-guided fuzzing (atheris / libFuzzer) of the sealed-segment parser.

The property: ``keys.segment.open`` either returns the plaintext or raises
:class:`keys.errors.InvalidSeal`; any other exception, or a crash, is a finding. Inputs are
opened under a fixed key and context, both as they are and behind the correct 8-byte header
(so mutations reach the Cobblestone parser instead of stopping at the header check). A valid
blob, when the fuzzer rebuilds one, must open to exactly what was sealed. ``keys.segment``
and ``keys._primitives`` are instrumented for coverage.

Run (atheris is in the ``dev`` extra; it ships manylinux wheels)::

    .venv/bin/python -m bench.fuzz_segment                       # until a finding or Ctrl-C
    .venv/bin/python -m bench.fuzz_segment -atheris_runs=200000  # a bounded run
    .venv/bin/python -m bench.fuzz_segment -max_total_time=60 CORPUS_DIR

Any libFuzzer flag is passed through. With no directory argument a seed corpus (valid blobs
across the 16 KiB chunk boundary, plus truncated and empty ones) is generated in a temporary
directory; give a directory to keep the corpus between runs. A crashing input is written to
``crash-*`` in the working directory and can be replayed by passing that file's path.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

KEY_MATERIAL = bytes(range(32))
CHUNK = 16 * 1024
SEED_SIZES = (0, 1, 15, 16, 17, 100, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7)
MAX_LEN = 3 * CHUNK  # room for three chunks


def _load_atheris() -> Any:
    try:
        return importlib.import_module("atheris")
    except ImportError:
        sys.exit(
            "atheris is not installed: .venv/bin/pip install atheris (or install the dev extra)"
        )


def _payload(size: int) -> bytes:
    return bytes((i * 31 + 7) % 251 for i in range(size))


def write_seed_corpus(directory: Path) -> None:
    """Seeds for the three modes of ``one_input`` (selector byte % 3): every valid blob as
    is (0) and without its header (1), and short edit scripts on each valid blob (2)."""
    from keys import segment

    for n, (_, _, blob) in enumerate(_sealed()):
        as_is, body = 3 * n, 3 * n + 1  # selector // 3 picks this blob
        if body < 256:
            (directory / f"as_is_{n}").write_bytes(bytes([as_is]) + blob)
            (directory / f"body_{n}").write_bytes(bytes([body]) + blob[segment.HEADER_SIZE :])
        for k, script in enumerate(
            (b"", b"\x00\x80\x00\x01", b"\x01\xff\x00\x00", b"\x03\x00\x10\x41\x02\x40\x00\x00")
        ):
            (directory / f"edit_{n}_{k}").write_bytes(bytes([2, n]) + script)
    (directory / "empty").write_bytes(b"")


@functools.cache
def _sealed() -> list[tuple[Any, bytes, bytes]]:
    """(context, payload, sealed blob) for every seed size and kind, sealed once per process:
    sealing draws a random salt, so the seed corpus must hold these very blobs."""
    from keys import segment
    from keys.types import DataKey

    key = DataKey(KEY_MATERIAL)
    return [
        (ctx, _payload(size), segment.seal(key, ctx, _payload(size)))
        for ctx in _contexts()
        for size in SEED_SIZES
    ]


def _contexts() -> list[Any]:
    from keys.segment import SegmentContext, SegmentKind

    return [
        SegmentContext("t_fuzz", "m_fuzz", "alice", 7, SegmentKind.AUDIO),
        SegmentContext("t_fuzz", "m_fuzz", "alice", 7, SegmentKind.TRANSCRIPT),
    ]


def _edit(blob: bytes, ops: bytes) -> bytes:
    """Apply the fuzzer's edit script to a valid blob: 4 bytes per edit (op, position, value),
    so libFuzzer's mutations of the script become flips, truncations, rewrites and
    extensions deep inside a well-formed message, where the AEAD checks run."""
    out = bytearray(blob)
    for i in range(0, len(ops) - 3, 4):
        op, pos, value = ops[i] % 4, int.from_bytes(ops[i + 1 : i + 3], "big"), ops[i + 3]
        if not out:
            out.append(value)
            continue
        at = pos * len(out) >> 16
        if op == 0:
            out[at] ^= 1 << (value % 8)
        elif op == 1:
            del out[at:]
        elif op == 2:
            out[at] = value
        else:
            out[at:at] = bytes([value])
    return bytes(out)


def make_target() -> Any:
    from keys import segment
    from keys.errors import InvalidSeal
    from keys.types import DataKey

    key = DataKey(KEY_MATERIAL)
    sealed = _sealed()
    payloads = {payload for _, payload, _ in sealed}

    def one_input(data: bytes) -> None:
        if not data:
            return
        selector, rest = data[0], data[1:]
        mode = selector % 3
        if mode == 2:  # an edit script applied to one of the valid blobs
            if not rest:
                return
            ctx, payload, original = sealed[rest[0] % len(sealed)]
            blob = _edit(original, rest[1:])
        else:  # raw bytes, as they are (0) or behind the correct header (1)
            ctx, payload, original = sealed[(selector // 3) % len(sealed)]
            blob = ctx.header() + rest if mode == 1 else rest
        try:
            plaintext = segment.open(key, ctx, blob)
        except InvalidSeal as exc:
            if str(exc):
                raise AssertionError("InvalidSeal carries a message") from None
            if blob == original:
                raise AssertionError("a valid blob failed to open") from None
            return
        # it opened: then it was sealed by this harness (now, or in the run that wrote a
        # kept corpus; sealing is randomized), so it holds one of the seed payloads
        if plaintext not in payloads or (blob == original and plaintext != payload):
            raise AssertionError(f"opened a blob that was not sealed ({len(blob)} bytes)")

    return one_input


def main(argv: list[str] | None = None) -> None:
    atheris = _load_atheris()
    args = list(sys.argv if argv is None else argv)
    if "keys.segment" in sys.modules:  # imported before instrumenting: no coverage feedback
        print(
            "warning: keys.segment was imported before atheris could instrument it", file=sys.stderr
        )
    with atheris.instrument_imports(include=["keys"]):
        import keys._primitives
        import keys.segment  # noqa: F401
    global _edit
    _edit = atheris.instrument_func(_edit)  # the harness's branches guide the fuzzer too
    target = atheris.instrument_func(make_target())
    if not any(a.startswith("-max_len") for a in args[1:]):
        args.append(f"-max_len={MAX_LEN}")
    temp: tempfile.TemporaryDirectory[str] | None = None
    positional = [a for a in args[1:] if not a.startswith("-")]
    if not positional:
        temp = tempfile.TemporaryDirectory(prefix="fuzz_segment_")
        write_seed_corpus(Path(temp.name))
        args.append(temp.name)
    elif len(positional) == 1 and os.path.isdir(positional[0]) and not os.listdir(positional[0]):
        write_seed_corpus(Path(positional[0]))
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
