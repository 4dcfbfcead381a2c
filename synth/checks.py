"""``synth_checks``: length and format checks of generated texts, before deduplication.

Rules (each can be turned off): ``truncated`` (the engine stopped at ``max_tokens``,
``finish_reason == "length"``), ``too_short`` (fewer than ``min_words`` words), ``prompt_echo``
(the completion repeats a long piece of its prompt), ``repetition`` (a large share of the
text's word n-grams are repeats: the loops small models fall into).
"""

from __future__ import annotations

from typing import Any

from curate.pipelines.stage import DropRow, Filter, Params
from pydantic import Field


class ChecksParams(Params):
    drop_truncated: bool = Field(True, description="drop generations cut off at max_tokens")
    min_words: int = Field(20, ge=0, description="drop generations with fewer words")
    echo_chars: int = Field(80, ge=0, description="drop a text containing this many consecutive characters of its prompt's end (0: off)")
    ngram: int = Field(4, ge=1, description="word n-gram size of the repetition check")
    max_repeated_ngrams: float = Field(0.3, ge=0, le=1, description="drop when this share of n-grams are repeats (1: off)")


def repeated_fraction(words: list[str], n: int) -> float:
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


class SynthChecks(Filter[ChecksParams]):
    """Checks of generated texts: truncated, too short, prompt echo, repetition."""

    name = "synth_checks"
    Params = ChecksParams
    reads = ("text", "finish_reason", "prompt")
    batch_size = 1024

    def keep(self, row: dict[str, Any]) -> bool:
        """Keep, or raise :class:`DropRow` with the rule and the figure that broke it."""
        p = self.params
        text = row["text"] or ""
        if p.drop_truncated and row.get("finish_reason") == "length":
            raise DropRow("truncated", f"the engine stopped at max_tokens (finish_reason length) after {len(text.split())} words")
        words = text.split()
        if len(words) < p.min_words:
            raise DropRow("too_short", f"{len(words)} words, fewer than min_words {p.min_words}")
        prompt = (row.get("prompt") or "").strip()
        if p.echo_chars and len(prompt) >= p.echo_chars:
            for part, piece in (("end", prompt[-p.echo_chars :]), ("start", prompt[: p.echo_chars])):
                if piece in text:
                    raise DropRow("prompt_echo", f"the text repeats the {p.echo_chars} characters at the {part} of its prompt: {piece[:60]!r}...")
        if p.max_repeated_ngrams < 1:
            share = repeated_fraction([w.lower() for w in words], p.ngram)
            if share > p.max_repeated_ngrams:
                raise DropRow("repetition", f"{share:.0%} of its word {p.ngram}-grams are repeats (max_repeated_ngrams {p.max_repeated_ngrams:g})")
        return True
