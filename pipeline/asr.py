"""What the rest of sealscribe knows about a speech model without loading it.

Loading and running the model happens only inside a worker (``workers.model``)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["is_multilingual"]

#: the vocabulary size of multilingual Whisper models (English-only ones have 51864)
MULTILINGUAL_VOCAB = 51865


def is_multilingual(name: str) -> bool:
    """Whether model ``name`` knows languages other than English, without loading it."""
    if name == "tiny.en":
        return False
    if name == "base":
        return True
    vocab = Path(name).expanduser() / "vocabulary.txt"
    try:
        with vocab.open("rb") as fh:
            return sum(1 for _ in fh) >= MULTILINGUAL_VOCAB
    except OSError:
        return not name.endswith(".en")
