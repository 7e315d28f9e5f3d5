"""Word error rate, normalised the way the reference figures in shared/data/NOTICE.md were:
lower case, punctuation other than apostrophes replaced by a space."""

from __future__ import annotations

import re

__all__ = ["normalise", "word_errors"]


def normalise(text: str) -> list[str]:
    return re.sub(r"[^\w' ]+", " ", text.lower()).split()


def word_errors(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two word lists."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]
