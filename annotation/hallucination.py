"""Checks of a transcript for the usual Whisper hallucinations: small pure functions.

Whisper, given silence, noise or music, tends to write text that was never spoken: a phrase
repeated over and over ("you you you"), the closing lines of subtitled videos it was trained on
("Thank you for watching", "Subtitles by the Amara.org community"), or more text than anyone can
say in the time. It also sometimes writes nothing for a clip full of speech. Each check returns
``None`` (looks fine) or a short reason; :func:`check_transcript` runs them all and returns
``(flag, reason)`` pairs. The flag names are stable (they land in ``transcript_flags``):

``repeated_ngram``
    a word n-gram (1 to ``max_ngram`` words, 10) repeated back to back at least ``min_repeats`` times, or one
    3-gram making up a large share of a long transcript
``filler_phrase``
    a phrase Whisper is known to invent (see :data:`FILLER_PATTERNS`)
``too_fast``
    more characters per second of speech than people speak (``max_chars_per_second``)
``empty_transcript``
    no text although the clip holds at least ``min_speech_s`` seconds of speech
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

#: phrases of subtitle credits and video endings that Whisper writes over silence or music
FILLER_PATTERNS: tuple[str, ...] = (
    r"\bthank(?:s| you) (?:so much |very much )?for watching\b",
    r"\bthanks? for listening\b",
    r"\b(?:please )?(?:like and )?subscribe to (?:my|our|the) channel\b",
    r"\bdon'?t forget to (?:like|subscribe)\b",
    r"\bsubtitles? (?:by|made by|created by)\b",
    r"\bsubtitled by\b",
    r"\bcaptions? by\b",
    r"\bcaptioning (?:by|provided by)\b",
    r"\btranscri(?:bed|ption) by\b",
    r"\bamara\.org\b",
    r"\bwww\.[a-z0-9-]+\.(?:com|org|net)\b",
)
_FILLER = [re.compile(p, re.IGNORECASE) for p in FILLER_PATTERNS]
_WORD = re.compile(r"[\w']+", re.UNICODE)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Thresholds of the checks (the ``transcribe`` stage's params set them)."""

    #: back-to-back repeats of one n-gram that count as a loop ("you you you": 3)
    min_repeats: int = 3
    #: the longest phrase (in words) looked for as a loop
    max_ngram: int = 10
    #: a single 3-gram making up at least this share of the 3-grams of a transcript ...
    max_trigram_share: float = 0.2
    #: ... of at least this many words
    min_words_for_share: int = 12
    #: characters (without spaces) per second of speech above which the text cannot have been said
    max_chars_per_second: float = 25.0
    #: seconds of speech (VAD) above which an empty transcript is suspicious
    min_speech_s: float = 1.0


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (letters, digits, apostrophes)."""
    return [w.lower() for w in _WORD.findall(text)]


def repeated_ngram(text: str, limits: Limits = Limits()) -> str | None:
    """A phrase looping: an n-gram (n = 1..max_ngram) repeated back to back ``min_repeats`` times, or one
    3-gram that is ``max_trigram_share`` of all 3-grams of a long transcript."""
    ws = words(text)
    for n in range(1, limits.max_ngram + 1):
        need = n * limits.min_repeats
        for i in range(len(ws) - need + 1):
            gram = ws[i : i + n]
            if all(ws[i + k * n : i + (k + 1) * n] == gram for k in range(1, limits.min_repeats)):
                return f"{' '.join(gram)!r} repeated {limits.min_repeats}+ times in a row"
    if len(ws) >= limits.min_words_for_share:
        grams = Counter(tuple(ws[i : i + 3]) for i in range(len(ws) - 2))
        top, count = grams.most_common(1)[0]
        share = count / (len(ws) - 2)
        if count > 1 and share >= limits.max_trigram_share:
            return f"{' '.join(top)!r} is {share:.0%} of the transcript's 3-grams"
    return None


def filler_phrase(text: str) -> str | None:
    """A known invented phrase ("Thank you for watching", "Subtitles by ...")."""
    for pattern in _FILLER:
        m = pattern.search(text)
        if m:
            return f"known filler phrase {m.group(0)!r}"
    return None


def too_fast(text: str, speech_s: float | None, limits: Limits = Limits()) -> str | None:
    """More characters (spaces excluded) per second of speech than anyone speaks (~15 is fast
    speech). ``speech_s`` is the speech time (VAD), or the clip's length; None or 0: not checked."""
    if not speech_s or speech_s <= 0:
        return None
    chars = sum(1 for c in text if not c.isspace())
    rate = chars / speech_s
    if rate > limits.max_chars_per_second:
        return f"{rate:.1f} characters per second of speech (more than {limits.max_chars_per_second:g})"
    return None


def empty_transcript(text: str, speech_s: float | None, limits: Limits = Limits()) -> str | None:
    """No words although the clip holds at least ``min_speech_s`` seconds of speech."""
    if words(text) or speech_s is None or speech_s < limits.min_speech_s:
        return None
    return f"no words transcribed from {speech_s:.1f} s of speech"


def check_transcript(text: str, speech_s: float | None, limits: Limits = Limits()) -> list[tuple[str, str]]:
    """Every check's ``(flag, reason)`` for one transcript; empty when it looks fine."""
    found = [
        ("repeated_ngram", repeated_ngram(text, limits)),
        ("filler_phrase", filler_phrase(text)),
        ("too_fast", too_fast(text, speech_s, limits)),
        ("empty_transcript", empty_transcript(text, speech_s, limits)),
    ]
    return [(flag, reason) for flag, reason in found if reason is not None]


__all__ = ["FILLER_PATTERNS", "Limits", "check_transcript", "empty_transcript", "filler_phrase", "repeated_ngram", "too_fast", "words"]
