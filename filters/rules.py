"""Heuristic rule stages: Gopher repetition, Gopher quality, C4 quality, FineWeb quality.

Each stage wraps datatrove's filter object (``datatrove.pipeline.filters``): the rules, their
order and their reason strings are datatrove's; the params are its constructor arguments, with
its defaults. A dropped row records the rule that fired as both ``rule`` and ``reason`` (the
reason string datatrove returns, e.g. ``top_2_gram``, ``gopher_short_doc``, ``curly_bracket``).

Tokenisation is shared: every stage first tokenises the whole batch once (see
:mod:`curate.filters._tokens`), and datatrove's word/sentence splitting in the filter modules is
pointed at that memo, so consecutive rule stages in one worker process (Ray fuses them into
one task) tokenise each document once. Decisions are datatrove's own: the memo returns exactly
what datatrove's ``split_into_words``/``split_into_sentences`` return.

``c4_quality`` also rewrites the text of kept documents as C4 does (drops lines without terminal
punctuation, with "javascript", cookie-policy lines, ...); set ``rewrite_text: false`` to only
filter. datatrove's C4 line statistics are returned as counters (``line-filter-javascript``...).
"""

from __future__ import annotations

import collections
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from curate.pipelines.errors import ConfigError
from curate.pipelines.stage import Filter, Params, StageOutput
from pydantic import Field

from . import _tokens

Frac = float | None


class _RuleParams(Params):
    language: str = Field(
        "eng",
        description="language of the text for datatrove's word tokenizer (datatrove's codes: eng, deu, fra or en, de...) (spaCy blank tokenizers work offline; "
        "a few languages need extra packages or NLTK/Stanza data)",
    )


class _DatatroveRule(Filter[Any]):
    """Runs one datatrove filter object over each document of a batch."""

    #: ``module:Class`` of the datatrove filter
    datatrove_filter: ClassVar[str] = ""
    #: the filter splits documents into words (so the batch is tokenised up front)
    uses_words: ClassVar[bool] = True
    batch_size = 2048

    def check(self, base_dir: Any) -> None:
        language = self.params.language
        if language in ("en", "eng"):
            return
        try:
            from datatrove.utils.word_tokenizers import load_word_tokenizer

            load_word_tokenizer(language)
        except ImportError as exc:
            raise ConfigError(f"language: {exc}", hint="install curate[quality]") from None
        except ValueError:
            raise ConfigError(
                f"language: datatrove has no word tokenizer for {language!r}",
                hint="use an ISO 639-1 code such as en, de, fr",
            ) from None

    def kwargs(self) -> dict[str, Any]:
        return self.params.model_dump()

    def setup(self) -> None:
        import importlib

        _tokens.install()
        module_name, _, cls_name = self.datatrove_filter.partition(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        self._filter = cls(**self.kwargs())
        self._line_stats: collections.Counter[str] = collections.Counter()
        counter = self._line_stats

        def stat_update(*labels: str, value: int = 1, unit: str | None = None) -> None:
            for label in labels:
                counter[label] += value

        # datatrove's per-line statistics bookkeeping, replaced by a plain counter (same calls)
        self._filter.stat_update = stat_update

    def _run(self, batch: pa.Table) -> tuple[np.ndarray, list[str | None], list[str]]:
        from datatrove.data import Document

        if not hasattr(self, "_filter"):
            self.setup()
        language = self.params.language
        texts = batch.column("text").to_pylist()
        ids = batch.column("id").to_pylist() if "id" in batch.schema.names else [str(i) for i in range(len(texts))]
        keep = np.ones(len(texts), dtype=bool)
        reasons: list[str | None] = [None] * len(texts)
        out_texts: list[str] = list(texts)
        fn = self._filter.filter
        with _tokens.batch_zone(language):
            if self.uses_words:
                _tokens.prepare(texts, language)
            for i, text in enumerate(texts):
                doc = Document(text=text, id=str(ids[i]))
                verdict = fn(doc)
                if isinstance(verdict, tuple):
                    ok, reason = verdict
                else:
                    ok, reason = verdict, None
                if not ok:
                    keep[i] = False
                    reasons[i] = reason or self.name
                elif doc.text is not text:
                    out_texts[i] = doc.text
        return keep, reasons, out_texts

    def keep_batch(self, batch: pa.Table) -> tuple[np.ndarray, list[str | None], list[str | None]]:
        keep, reasons, _ = self._run(batch)
        return keep, reasons, reasons

    def process(self, batch: pa.Table) -> StageOutput:
        out = super().process(batch)
        out.counters = self._take_counters()
        return out

    def _take_counters(self) -> dict[str, int]:
        stats = getattr(self, "_line_stats", None)
        if not stats:
            return {}
        counters = {k: int(v) for k, v in stats.items() if k.startswith("line-")}
        stats.clear()
        return counters


# ---------------------------------------------------------------- Gopher repetition


class GopherRepetitionParams(_RuleParams):
    dup_line_frac: Frac = Field(0.3, description="max fraction of lines that duplicate an earlier line")
    dup_para_frac: Frac = Field(0.3, description="max fraction of paragraphs that duplicate an earlier one")
    dup_line_char_frac: Frac = Field(0.2, description="max fraction of characters in duplicated lines")
    dup_para_char_frac: Frac = Field(0.2, description="max fraction of characters in duplicated paragraphs")
    top_n_grams: list[tuple[int, float]] = Field(
        [(2, 0.2), (3, 0.18), (4, 0.16)],
        description="[n, max fraction of characters covered by the most frequent word n-gram]",
    )
    dup_n_grams: list[tuple[int, float]] = Field(
        [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)],
        description="[n, max fraction of characters in duplicated word n-grams]",
    )


class GopherRepetition(_DatatroveRule):
    """Gopher repetition rules (datatrove GopherRepetitionFilter): duplicated lines, paragraphs, n-grams."""

    name = "gopher_repetition"
    Params = GopherRepetitionParams
    datatrove_filter = "datatrove.pipeline.filters.gopher_repetition_filter:GopherRepetitionFilter"

    def kwargs(self) -> dict[str, Any]:
        kw = self.params.model_dump()
        kw["top_n_grams"] = tuple(tuple(x) for x in kw["top_n_grams"])
        kw["dup_n_grams"] = tuple(tuple(x) for x in kw["dup_n_grams"])
        return kw


# ---------------------------------------------------------------- Gopher quality


class GopherQualityParams(_RuleParams):
    min_doc_words: int | None = Field(50, description="min words (tokens with a non-punctuation character)")
    max_doc_words: int | None = Field(100_000, description="max words")
    min_avg_word_length: float | None = Field(3, description="min mean word length in characters")
    max_avg_word_length: float | None = Field(10, description="max mean word length in characters")
    max_symbol_word_ratio: float | None = Field(0.1, description="max ratio of '#' or ellipses to words")
    max_bullet_lines_ratio: float | None = Field(0.9, description="max fraction of lines starting with a bullet")
    max_ellipsis_lines_ratio: float | None = Field(0.3, description="max fraction of lines ending with an ellipsis")
    max_non_alpha_words_ratio: float | None = Field(
        0.8, description="min fraction of words with an alphabetic character (datatrove's name for it)"
    )
    min_stop_words: int | None = Field(2, description="min number of distinct stop words present")
    stop_words: list[str] | None = Field(
        None, description="stop words (default: the, be, to, of, and, that, have, with)"
    )


class GopherQuality(_DatatroveRule):
    """Gopher quality rules (datatrove GopherQualityFilter): length, word length, symbols, bullets, stop words."""

    name = "gopher_quality"
    Params = GopherQualityParams
    datatrove_filter = "datatrove.pipeline.filters.gopher_quality_filter:GopherQualityFilter"


# ---------------------------------------------------------------- C4


class C4QualityParams(_RuleParams):
    split_paragraph: bool = Field(True, description="apply line rules to lines (true, as C4) or to sentences")
    remove_citations: bool = Field(True, description="remove Wikipedia-style citations like [1] [edit]")
    filter_no_terminal_punct: bool = Field(True, description="drop lines without terminal punctuation")
    min_num_sentences: int = Field(5, description="drop documents with fewer sentences in kept lines (-1: off)")
    min_words_per_line: int = Field(3, description="drop lines with fewer words (-1: off)")
    max_word_length: int = Field(1000, description="drop lines with a longer word (-1: off)")
    filter_lorem_ipsum: bool = Field(True, description="drop documents containing 'lorem ipsum'")
    filter_javascript: bool = Field(True, description="drop lines mentioning javascript")
    filter_curly_bracket: bool = Field(True, description="drop documents containing '{'")
    filter_policy: bool = Field(True, description="drop lines with terms-of-use / cookie-policy phrases")
    rewrite_text: bool = Field(True, description="kept documents keep only their kept lines, as in C4")


class C4Quality(_DatatroveRule):
    """C4 quality rules (datatrove C4QualityFilter): line filtering, sentences, lorem ipsum, curly brackets."""

    name = "c4_quality"
    Params = C4QualityParams
    datatrove_filter = "datatrove.pipeline.filters.c4_filters:C4QualityFilter"
    uses_words = False

    def kwargs(self) -> dict[str, Any]:
        kw = self.params.model_dump()
        kw.pop("rewrite_text")
        return kw

    def process(self, batch: pa.Table) -> StageOutput:
        keep, reasons, texts = self._run(batch)
        from curate.pipelines.stage import Drops

        if self.params.rewrite_text:
            batch = batch.set_column(batch.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
        counters = self._take_counters()
        return StageOutput(batch, Drops(mask=~keep, rule=reasons, reason=reasons), counters=counters)


# ---------------------------------------------------------------- FineWeb


class FineWebQualityParams(_RuleParams):
    line_punct_thr: float = Field(0.12, description="min fraction of lines ending with terminal punctuation")
    line_punct_exclude_zero: bool = Field(False, description="do not drop documents where that fraction is 0")
    stop_chars: list[str] | None = Field(None, description="line-ending characters (default: datatrove's terminal punctuation)")
    short_line_thr: float = Field(0.67, description="max fraction of short lines")
    short_line_length: int = Field(30, description="a line this long or shorter is short")
    char_duplicates_ratio: float = Field(0.01, description="max fraction of characters in duplicated lines")
    new_line_ratio: float = Field(0.3, description="max ratio of newlines to words")


class FineWebQuality(_DatatroveRule):
    """FineWeb quality rules (datatrove FineWebQualityFilter): punctuation, short lines, duplicates, lists."""

    name = "fineweb_quality"
    Params = FineWebQualityParams
    datatrove_filter = "datatrove.pipeline.filters.fineweb_quality_filter:FineWebQualityFilter"

    def kwargs(self) -> dict[str, Any]:
        kw = self.params.model_dump()
        if kw["stop_chars"] is not None:
            kw["stop_chars"] = tuple(kw["stop_chars"])
        return kw


__all__ = ["GopherRepetition", "GopherQuality", "C4Quality", "FineWebQuality"]
