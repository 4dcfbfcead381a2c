"""``length_filter``: keep documents whose length in characters (and optionally words) is in range."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from ..stage import Filter, Params


class LengthFilterParams(Params):
    min_chars: int = Field(0, ge=0, description="drop documents with fewer characters")
    max_chars: int | None = Field(None, ge=1, description="drop documents with more characters")
    min_words: int = Field(0, ge=0, description="drop documents with fewer whitespace-separated words")
    max_words: int | None = Field(None, ge=1, description="drop documents with more words")

    @model_validator(mode="after")
    def _ranges(self) -> "LengthFilterParams":
        if self.max_chars is not None and self.max_chars < self.min_chars:
            raise ValueError(f"max_chars ({self.max_chars}) is below min_chars ({self.min_chars})")
        if self.max_words is not None and self.max_words < self.min_words:
            raise ValueError(f"max_words ({self.max_words}) is below min_words ({self.min_words})")
        return self


class LengthFilter(Filter[LengthFilterParams]):
    """Drop documents that are too short or too long."""

    name = "length_filter"
    Params = LengthFilterParams
    batch_size = 8192

    def keep_batch(self, batch: pa.Table) -> tuple[np.ndarray, list[str | None], list[str | None]]:
        p = self.params
        chars = pc.utf8_length(batch.column("text")).to_numpy(zero_copy_only=False)
        rules: list[str | None] = [None] * batch.num_rows
        reasons: list[str | None] = [None] * batch.num_rows
        keep = np.ones(batch.num_rows, dtype=bool)

        def mark(bad: np.ndarray, rule: str, fmt: str, values: np.ndarray) -> None:
            for i in np.flatnonzero(bad & keep):
                rules[i] = rule
                reasons[i] = fmt.format(int(values[i]))
            keep[bad] = False

        mark(chars < p.min_chars, "too_short", f"{{}} chars < min_chars {p.min_chars}", chars)
        if p.max_chars is not None:
            mark(chars > p.max_chars, "too_long", f"{{}} chars > max_chars {p.max_chars}", chars)
        if p.min_words or p.max_words is not None:
            words = pc.count_substring_regex(batch.column("text"), r"\S+").to_numpy(zero_copy_only=False)
            if p.min_words:
                mark(words < p.min_words, "too_few_words", f"{{}} words < min_words {p.min_words}", words)
            if p.max_words is not None:
                mark(words > p.max_words, "too_many_words", f"{{}} words > max_words {p.max_words}", words)
        return keep, rules, reasons
