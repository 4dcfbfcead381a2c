"""One word tokenisation per document, shared by the datatrove rule stages.

datatrove's Gopher and FineWeb filters call ``datatrove.utils.text.split_into_words(text,
language)`` (a spaCy tokenizer, then whitespace tokens removed) and its C4 filter calls
``split_into_sentences(line, language)`` once per kept line. Tokenising is most of their cost, and
in curate the rule stages see a whole batch one stage after another, so datatrove's own
``lru_cache(5)`` never hits across stages. This module replaces those two functions *in the
datatrove filter modules* (see :func:`install`) by memoised versions that return exactly what
datatrove's functions return:

- **Words** (``split_into_words``): spaCy's rule-based ``Tokenizer`` tokenises each maximal run of
  non-whitespace characters independently (whitespace only separates runs or becomes whitespace
  tokens, which datatrove strips away). So a document's words are the concatenation of the tokens
  of its runs, and the tokens of a run (``"Python's"``, ``"(see"``) are memoised per process in
  a bounded dict. Runs not seen yet are tokenised together: joined by single spaces into one
  string, one spaCy call per batch, split back at the tokens that carry a trailing space.
  The document's word list is memoised too (keyed by the text, bounded), so the next rule stage in
  the same process gets it for a dict lookup.
- **Sentences** (``split_into_sentences``): computed by the same spaCy pipeline datatrove builds
  (``spacy.blank(lang)`` + ``sentencizer``) and memoised per line text; one spaCy memory zone per
  batch instead of one per call, so lexemes are created once per batch, not once per line.

Languages whose datatrove tokenizer is not a plain spaCy tokenizer (Chinese, Japanese, Thai,
Stanza- or NLTK-based ones) go to datatrove's functions unchanged (still memoised per document).
Nothing here imports spaCy or datatrove at module import time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import Any

#: most distinct non-whitespace runs kept per process (each holds a tuple of token strings)
MAX_CHUNKS = 400_000
#: most documents whose word lists are kept per process (about two batches)
MAX_DOCS = 20_000
#: most lines whose sentence splits are kept per process
MAX_LINES = 200_000

_lock = threading.RLock()
_installed = False
_orig: dict[str, Any] = {}
_fast: dict[str, Any] = {}  # language -> _Fast, or None where datatrove's own functions are used
_docs: dict[tuple[str, str], list[str]] = {}  # (language, text) -> words
_lines: dict[tuple[str, str], list[str]] = {}  # (language, line) -> sentences
_zone: list[Any] = []  # open spaCy memory zones (one per language) during a batch
#: a spaCy symbol name: tokenising it breaks spaCy's vocabulary (datatrove has its own workaround),
#: so texts containing it always go to datatrove's own functions
POISON = "IS_ALPHA"
stats = {"fallback_docs": 0, "whole_docs": 0, "doc_hits": 0, "doc_misses": 0, "chunk_misses": 0, "line_hits": 0, "line_misses": 0}


def _datatrove_text() -> Any:
    from datatrove.utils import text

    return text


def _fast_for(language: str) -> "_Fast | None":
    """The fast path for a language (its spaCy pipeline as datatrove builds it), or None."""
    if language in _fast:
        return _fast[language]
    fast = None
    try:
        from datatrove.utils.word_tokenizers import SpaCyTokenizer, load_word_tokenizer

        tok = load_word_tokenizer(language)
        if type(tok) is SpaCyTokenizer and tok.config is None:
            fast = _Fast(tok.language)
            if not fast.usable:
                fast = None
    except Exception:  # unknown language, missing optional dependency: datatrove's own path decides
        fast = None
    _fast[language] = fast
    return fast


def _evict(d: dict[Any, Any], limit: int) -> None:
    if len(d) > limit:
        for key in list(d)[: len(d) - limit // 2]:
            del d[key]


def _boundary_splits(nlp: Any) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """Where a multi-token special-case pattern could straddle two whitespace-separated runs.

    spaCy's tokenizer applies special cases (``":)"``, ``"a.m."``) with a phrase matcher over the
    whole document's tokens, whitespace ignored. A match that straddles two runs is discarded,
    but it can still suppress an overlapping match inside a run, so such documents must be
    tokenised whole, as datatrove does. For each pattern (its tokens before special cases) and
    each cut between two of its tokens ``x | y`` this returns ``(x, y) -> (left, right)``: the
    pattern text before and after the cut. A straddling match at a run boundary needs the left
    run to end with its tokens up to ``x`` and the right run to start with ``y``.
    """
    import spacy

    plain: Any = spacy.blank(nlp.lang)
    plain.vocab.lex_attr_getters = {}
    plain.tokenizer.rules = {}
    splits: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for special in nlp.tokenizer.rules:
        toks = [t.text for t in plain.tokenizer(special)]
        for k in range(1, len(toks)):
            splits.setdefault((toks[k - 1], toks[k]), []).append(("".join(toks[:k]), "".join(toks[k:])))
    return splits


class _Fast:
    """Per-language state of the fast path."""

    def __init__(self, spacy_lang: str) -> None:
        import spacy
        from spacy.tokenizer import Tokenizer

        # Sentences: exactly datatrove's pipeline (the sentencizer reads lexeme attributes).
        self.sent_nlp = spacy.blank(spacy_lang)
        self.sent_nlp.add_pipe("sentencizer")
        # Words: the same tokenizer in a vocabulary without lexeme attribute getters (tokens never
        # depend on them; computing them for every new string is most of spaCy's cost here).
        nlp: Any = spacy.blank(spacy_lang)
        nlp.vocab.lex_attr_getters = {}
        self.nlp = nlp
        t: Any = nlp.tokenizer
        self.usable = type(t) is Tokenizer
        # The same tokenizer without special cases, sharing the vocabulary: gives the tokens the
        # special-case matcher sees at a run's edges.
        self.plain = Tokenizer(
            t.vocab,
            rules={},
            prefix_search=t.prefix_search,
            suffix_search=t.suffix_search,
            infix_finditer=t.infix_finditer,
            token_match=t.token_match,
            url_match=t.url_match,
            faster_heuristics=t.faster_heuristics,
        )
        self.splits = _boundary_splits(self.nlp)
        self.tails = frozenset(x for x, _ in self.splits)
        self.heads = frozenset(y for _, y in self.splits)
        self.max_tail = max(map(len, self.tails), default=0)
        self.max_head = max(map(len, self.heads), default=0)
        self._special: dict[str, bool] = {}
        self.rules = frozenset(t.rules)
        #: run -> (tokens, tokens of special-case patterns it may start / end with, or None)
        self.runs: dict[str, tuple[tuple[str, ...], frozenset[str] | None, frozenset[str] | None]] = {}

    def zone(self) -> Any:
        if _zone:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(self.nlp.memory_zone())
        return stack

    def tokenise_runs(self, runs: list[str]) -> None:
        """Tokenise whitespace-free runs, each on its own, with one spaCy call for all of them.

        The runs are joined by newlines: a newline is a token of its own that no special-case
        pattern contains, so no run's tokens interact with its neighbours'. A purely alphabetic
        run that is not itself a special case is always one token (no prefix, suffix or infix rule
        applies to letters alone), so those skip spaCy.
        """
        from spacy.attrs import IDX, LENGTH

        rules = self.rules
        hard = [r for r in runs if not r.isalpha() or r in rules]
        toks_of: dict[str, tuple[str, ...]] = {}
        if hard:
            joined = "\n".join(hard)
            with self.zone():
                arr = self.nlp.tokenizer(joined).to_array([IDX, LENGTH]).reshape(-1, 2)
            it = iter(hard)
            current: list[str] = []
            for i, n in zip(arr[:, 0].tolist(), arr[:, 1].tolist()):
                if n == 1 and joined[i] == "\n":
                    toks_of[next(it)] = tuple(current)
                    current = []
                else:
                    current.append(joined[i : i + n])
            toks_of[next(it)] = tuple(current)
            if next(it, None) is not None:  # pragma: no cover - would mean a run was split at whitespace
                raise RuntimeError("run tokenisation out of step")
        heads, tails = self.heads, self.tails
        max_head, max_tail = self.max_head, self.max_tail
        for run in runs:
            toks = toks_of.get(run)
            if toks is None:
                toks = (run,)
            # every token the special-case matcher can see at the run's edges is a prefix/suffix
            n = len(run)
            firsts = [run[:k] for k in range(1, min(n, max_head) + 1) if run[:k] in heads]
            lasts = [run[-k:] for k in range(1, min(n, max_tail) + 1) if run[-k:] in tails]
            self.runs[run] = (toks, frozenset(firsts) or None, frozenset(lasts) or None)

    def special(self, run: str) -> bool:
        """Whether special cases change the run's tokens (tokens differ from affix rules alone)."""
        flag = self._special.get(run)
        if flag is None:
            with self.zone():
                plain = [t.text for t in self.plain(run)]
            flag = self._special[run] = list(self.runs[run][0]) != plain
            _evict(self._special, MAX_CHUNKS)
        return flag

    def words(self, text: str) -> list[str] | None:
        """The document's words from its runs, or None where the document must be tokenised whole."""
        words: list[str] = []
        runs = self.runs
        splits = self.splits
        prev_lasts: frozenset[str] | None = None
        prev = ""
        for run in text.split():
            toks, firsts, lasts = runs[run]
            if prev_lasts is not None and firsts is not None:
                for x in prev_lasts:
                    for y in firsts:
                        if (x, y) in splits and self._at_risk(prev, run, x, y):
                            return None
            words.extend(toks)
            prev_lasts = lasts
            prev = run
        return words

    def _at_risk(self, left_run: str, right_run: str, x: str, y: str) -> bool:
        """Could a straddling match at this boundary change the tokens of a run next to it?

        It can only suppress a special-case match inside a run, so within these two runs it needs
        one of them to have tokens changed by special cases; a pattern that may reach into a third
        run is always treated as a risk.
        """
        for left, right in self.splits[(x, y)]:
            left_ok = left_run.endswith(left)
            right_ok = right_run.startswith(right)
            if (left_ok or left.endswith(left_run)) and (right_ok or right.startswith(right_run)):
                if not (left_ok and right_ok) or self.special(left_run) or self.special(right_run):
                    return True
        return False

    def whole(self, texts: list[str]) -> list[list[str]]:
        """datatrove's tokenisation of whole documents (its tokens, whitespace tokens dropped)."""
        from spacy.attrs import IDX, LENGTH

        out = []
        with self.zone():
            for text, doc in zip(texts, self.nlp.tokenizer.pipe(texts)):
                arr = doc.to_array([IDX, LENGTH]).reshape(-1, 2)
                words = [text[i : i + n] for i, n in zip(arr[:, 0].tolist(), arr[:, 1].tolist())]
                # datatrove keeps token.text.strip() when non-empty; a spaCy token is either all
                # whitespace or has none
                out.append([w for w in words if not w.isspace()])
        return out


def _reference_words(text: str, language: str) -> list[str]:
    fn = _orig.get("split_into_words") or _datatrove_text().split_into_words
    return list(fn(text, language))


def prepare(texts: Iterable[str], language: str = "en") -> None:
    """Tokenise the documents of a batch into words, in one pass, and memoise them."""
    fast = _fast_for(language)
    if fast is None:
        return
    with _lock:
        todo: list[str] = []
        slow: list[str] = []
        missing: dict[str, None] = {}
        seen: set[str] = set()
        for text in texts:
            if (language, text) in _docs or text in seen:
                continue
            seen.add(text)
            if POISON in text:
                slow.append(text)
                continue
            todo.append(text)
            for run in text.split():
                if run not in fast.runs:
                    missing[run] = None
        try:
            if missing:
                runs = list(missing)
                stats["chunk_misses"] += len(runs)
                for start in range(0, len(runs), 50_000):
                    fast.tokenise_runs(runs[start : start + 50_000])
            whole: list[str] = []
            for text in todo:
                words = fast.words(text)
                if words is None:
                    whole.append(text)
                else:
                    _docs[(language, text)] = words
            if whole:
                stats["whole_docs"] += len(whole)
                for text, words in zip(whole, fast.whole(whole)):
                    _docs[(language, text)] = words
        except Exception:  # spaCy refused something in this batch: datatrove's own function, per document
            stats["fallback_docs"] += len(todo)
            slow += [t for t in todo if (language, t) not in _docs]
        for text in slow:
            _docs[(language, text)] = _reference_words(text, language)
        _evict(_docs, MAX_DOCS)
        _evict(fast.runs, MAX_CHUNKS)


def split_into_words(text: str, language: str = "en") -> list[str]:
    """datatrove's ``split_into_words``, memoised (same result)."""
    key = (language, text)
    words = _docs.get(key)
    if words is not None:
        stats["doc_hits"] += 1
        return words
    stats["doc_misses"] += 1
    if _fast_for(language) is not None:
        prepare([text], language)
        words = _docs.get(key)
        if words is not None:
            return words
    words = _orig["split_into_words"](text, language)
    with _lock:
        _docs[key] = words
        _evict(_docs, MAX_DOCS)
    return words


def split_into_sentences(text: str, language: str = "en") -> list[str]:
    """datatrove's ``split_into_sentences``, memoised per text (same result)."""
    key = (language, text)
    sents = _lines.get(key)
    if sents is not None:
        stats["line_hits"] += 1
        return sents
    stats["line_misses"] += 1
    fast = _fast_for(language)
    sents = None
    if fast is not None and POISON not in text:
        nlp = fast.sent_nlp
        # what datatrove's SpaCyTokenizer.span_tokenize + split_into_parts(SENTENCE) compute
        nlp.max_length = len(text) + 10
        ctx = nlp.memory_zone() if not _zone else contextlib.nullcontext()
        try:
            with ctx:
                ends = [s.end_char for s in nlp(text, disable=["parser", "tagger", "ner"]).sents]
            sents = [text[a:b] for a, b in zip([0] + ends[:-1], ends[:-1] + [len(text)])]
        except Exception:  # spaCy refused the text: datatrove's own function decides
            sents = None
    if sents is None:
        fn = _orig.get("split_into_sentences") or _datatrove_text().split_into_sentences
        sents = list(fn(text, language))
    with _lock:
        _lines[key] = sents
        _evict(_lines, MAX_LINES)
    return sents


@contextlib.contextmanager
def batch_zone(language: str = "en") -> Iterator[None]:
    """One spaCy memory zone around a whole batch (lexemes made once per batch, then freed)."""
    fast = _fast_for(language)
    if fast is None or _zone:
        yield
        return
    with fast.nlp.memory_zone(), fast.sent_nlp.memory_zone():
        _zone.append(fast)
        try:
            yield
        finally:
            _zone.pop()


def install() -> None:
    """Point datatrove's Gopher, C4 and FineWeb filter modules at the memoised functions."""
    global _installed
    with _lock:
        if _installed:
            return
        text = _datatrove_text()
        _orig["split_into_words"] = text.split_into_words
        _orig["split_into_sentences"] = text.split_into_sentences
        from datatrove.pipeline.filters import (
            c4_filters,
            fineweb_quality_filter,
            gopher_quality_filter,
            gopher_repetition_filter,
        )

        for module in (gopher_repetition_filter, gopher_quality_filter, fineweb_quality_filter, c4_filters):
            if hasattr(module, "split_into_words"):
                module.split_into_words = split_into_words  # type: ignore[attr-defined]
            if hasattr(module, "split_into_sentences"):
                module.split_into_sentences = split_into_sentences  # type: ignore[attr-defined]
        _installed = True
