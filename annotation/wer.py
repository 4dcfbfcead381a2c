"""Word error rate: a small normalising word-level edit distance (for tests and benchmarks).

Normalisation: lower case, hyphens and slashes become spaces, every other character that is not a
letter, a digit, an apostrophe or a space is removed, and runs of spaces collapse. Numbers are
not spelled out: "1465" against a reference "fourteen sixty-five" counts as errors.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_SEPARATORS = re.compile(r"[-/\u2010-\u2015]")
_DROP = re.compile(r"[^\w' ]", re.UNICODE)


def normalise(text: str) -> list[str]:
    """The words of ``text`` after normalisation (see the module)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = _DROP.sub(" ", _SEPARATORS.sub(" ", text)).replace("_", " ")
    return [w.strip("'") for w in text.split() if w.strip("'")]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word substitutions + deletions + insertions turning ``ref`` into ``hyp`` (Levenshtein)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(refs: Iterable[str], hyps: Iterable[str]) -> float:
    """Corpus WER: total edits over total reference words (normalised)."""
    edits = words = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        r = normalise(ref)
        edits += edit_distance(r, normalise(hyp))
        words += len(r)
    if words == 0:
        raise ValueError("the references hold no words")
    return edits / words


__all__ = ["edit_distance", "normalise", "wer"]
