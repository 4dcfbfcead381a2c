"""Heuristic rule stages (datatrove's Gopher, C4, FineWeb rules): pass/fail scenarios with the
expected reason, datatrove's defaults, and the shared tokenisation returning exactly datatrove's."""

from __future__ import annotations

import gzip
import inspect
import json
from pathlib import Path

import pyarrow as pa
import pytest
from curate.filters import _tokens
from curate.filters.rules import C4Quality, FineWebQuality, GopherQuality, GopherRepetition
from curate.pipelines.registry import builtin_stages

DATA = Path(__file__).parent / "data" / "quality"

PROSE = (
    "The library was founded in the early years of the last century by a group of teachers who wanted "
    "the town to have a place where anyone could read without paying. At first it occupied two rooms "
    "above the bakery, and the smell of bread was said to follow the books home. Over the decades the "
    "collection grew, and in 1962 it moved into the old railway station, which had been closed after "
    "the line was abandoned.\n\n"
    "Today the building holds more than forty thousand volumes, a small archive of local newspapers and "
    "a workshop where volunteers repair damaged bindings. Visitors often remark that the reading room "
    "still has the tall windows and the wooden benches of the waiting hall. The staff organise talks "
    "for children on Saturday mornings, and in summer the garden behind the platform is used for "
    "readings by writers from the region.\n\n"
    "Funding has always been a concern. The council pays for the heating and the salaries of two "
    "librarians, but new books are bought with money raised at the annual fair. Each year the fair "
    "draws a larger crowd, and last year it raised enough to digitise the newspaper archive."
)


def run(stage_cls, texts, **params):
    stage = stage_cls(stage_cls.Params(**params))
    stage.setup()
    out = stage.process(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}))
    reasons = [r if m else None for m, r in zip(out.drops.mask, out.drops.reason if not isinstance(out.drops.reason, str) else [out.drops.reason] * len(texts))]
    return reasons, out


def test_registered():
    stages = builtin_stages()
    for name in ("gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"):
        assert name in stages


@pytest.mark.parametrize(
    "cls, dt_path",
    [
        (GopherRepetition, "datatrove.pipeline.filters.gopher_repetition_filter:GopherRepetitionFilter"),
        (GopherQuality, "datatrove.pipeline.filters.gopher_quality_filter:GopherQualityFilter"),
        (C4Quality, "datatrove.pipeline.filters.c4_filters:C4QualityFilter"),
        (FineWebQuality, "datatrove.pipeline.filters.fineweb_quality_filter:FineWebQualityFilter"),
    ],
)
def test_defaults_are_datatroves(cls, dt_path):
    import importlib

    module, _, name = dt_path.partition(":")
    sig = inspect.signature(getattr(importlib.import_module(module), name).__init__)
    ours = cls(cls.Params()).kwargs()
    for pname, value in ours.items():
        assert pname in sig.parameters, pname
        default = sig.parameters[pname].default
        if isinstance(default, tuple):
            default = tuple(tuple(x) for x in default)
        assert value == default or (value is None and default is None), (pname, value, default)


def test_prose_passes_every_rule():
    for cls in (GopherRepetition, GopherQuality, C4Quality, FineWebQuality):
        reasons, _ = run(cls, [PROSE])
        assert reasons == [None], cls.name


def test_gopher_repetition_reasons():
    para = "Click here to subscribe to our newsletter for the latest deals and offers on shoes."
    line = "Free shipping on all orders over fifty dollars"
    unique = " ".join(f"word{i}" for i in range(60))
    sentence = " ".join(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango"])
    texts = [
        "\n\n".join([para, para, para, PROSE.split("\n\n")[0]]),  # 2 of 4 paragraphs repeat
        "\n".join([line, line, line, "Contact us for more."]),  # one paragraph, 2 of 4 lines repeat
        "buy now " * 20 + unique,
        " ".join([sentence, "and then", sentence, unique]),
        "",
    ]
    reasons, _ = run(GopherRepetition, texts)
    assert reasons == ["dup_para_frac", "dup_line_frac", "top_2_gram", "duplicated_5_n_grams", "empty"]


def test_gopher_repetition_params_are_used():
    para = "Click here to subscribe to our newsletter for the latest deals and offers on shoes."
    text = "\n\n".join([para, para, PROSE])
    assert run(GopherRepetition, [text])[0] == [None]
    assert run(GopherRepetition, [text], dup_para_frac=0.1)[0] == ["dup_para_frac"]


def test_gopher_quality_reasons():
    words = PROSE.split()
    texts = {
        "gopher_short_doc": "Too short to be a real document, only a handful of words here.",
        "gopher_below_avg_threshold": " ".join(["a an the of to is it on at by"] * 8),
        "gopher_above_avg_threshold": " ".join(["internationalisation counterrevolutionary electroencephalography"] * 20),
        "gopher_too_many_hashes": PROSE + " " + "#tag " * 60,
        "gopher_too_many_ellipsis": PROSE + " " + "and so on ... " * 40,
        "gopher_too_many_bullets": "\n".join(f"- item {w} with the and of" for w in words[:80]),
        "gopher_too_many_end_ellipsis": "\n".join(" ".join(words[i : i + 14]) + " ..." for i in range(0, 280, 14)),
        "gopher_below_alpha_threshold": " ".join(str(i * 7919 % 10007) for i in range(120)) + " the and of",
        "gopher_enough_stop_words": " ".join(["apples oranges bananas cherries grapes melons lemons"] * 12),
    }
    reasons, _ = run(GopherQuality, list(texts.values()))
    assert reasons == list(texts.keys())
    # a param changes the outcome: with max_doc_words below the document's length
    assert run(GopherQuality, [PROSE], max_doc_words=100)[0] == ["gopher_long_doc"]


def test_c4_reasons_and_line_filtering():
    ok = PROSE + "\nPlease enable JavaScript to view the comments below.\nMenu"
    texts = [
        ok,
        PROSE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
        PROSE + "\nThe function is defined as f(x) { return x; }.",
        "One sentence only, with terminal punctuation.\nAnd a second one.",
    ]
    reasons, out = run(C4Quality, texts)
    assert reasons == [None, "lorem_ipsum", "curly_bracket", "too_few_sentences"]
    kept = out.table.column("text")[0].as_py()
    assert "JavaScript" not in kept and "Menu" not in kept and "railway station" in kept
    assert out.counters["line-filter-javascript"] == 1
    # rewrite_text: false only filters
    _, out = run(C4Quality, [ok], rewrite_text=False)
    assert out.table.column("text")[0].as_py() == ok


def test_fineweb_reasons():
    long_words = [f"Extraordinarilylongword{i} anotherveryextraordinarilylongword{i}." for i in range(40)]
    texts = [
        "\n".join(f"a heading without punctuation number {i}" for i in range(20)),
        "\n".join(f"Short line {i}." for i in range(20)),
        PROSE + "\n" + "\n".join(["This line appears several times in the page footer."] * 4),
        "\n".join(long_words),
        "   \n  ",
    ]
    reasons, _ = run(FineWebQuality, texts)
    assert reasons == ["line_punct_ratio", "short_line_ratio", "char_dup_ratio", "list_ratio", "empty"]


def _real_texts() -> list[str]:
    with gzip.open(DATA / "pydocs_labelled.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def test_shared_tokenisation_is_datatroves():
    from datatrove.utils.text import split_into_parts

    texts = _real_texts()[:300]
    texts += [
        "don't can't U.S.A. e.g. :) <3 C++ a.m. 10km $5.00 hello-world http://x.org/a?b=1 (see `f()`).",
        "Files: Document (o.O) :-) ;) foo: )bar ):  x\u00a0y\u2009z\u3000w\x1cv",
        "",
        "   ",
        "cannot gonna Cannot ñandú café naïve Straße",
    ]
    _tokens.install()
    with _tokens.batch_zone("en"):
        _tokens.prepare(texts + ["IS_ALPHA test"], "en")
    # "IS_ALPHA" (a spaCy symbol name) breaks spaCy: such documents go to datatrove's own function,
    # whose answer depends on its history; what matters is that the rest of the batch is unharmed
    assert "test" in _tokens.split_into_words("IS_ALPHA test", "en")
    for t in texts:
        assert _tokens.split_into_words(t, "en") == list(split_into_parts.__wrapped__(t, "WORDS", "en")), t[:80]
    # documents at risk of a straddling special case are tokenised whole: that path too
    whole = _tokens._fast_for("en").whole(texts)
    for t, words in zip(texts, whole):
        assert words == list(split_into_parts.__wrapped__(t, "WORDS", "en")), t[:80]
    for t in texts[:50]:
        for line in t.splitlines()[:20]:
            line = line.strip()
            if line:
                assert _tokens.split_into_sentences(line, "en") == list(split_into_parts.__wrapped__(line, "SENTENCE", "en"))


def test_rule_chain_tokenises_each_document_once():
    texts = _real_texts()[:200]
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    stages = [cls(cls.Params()) for cls in (GopherRepetition, GopherQuality, FineWebQuality)]
    for s in stages:
        s.setup()
    _tokens._docs.clear()
    before = dict(_tokens.stats)
    for s in stages:
        s.process(table)
    # the first stage tokenises the batch; the others find every document in the memo
    assert _tokens.stats["doc_misses"] == before["doc_misses"]
    assert _tokens.stats["doc_hits"] - before["doc_hits"] >= len(texts)


def test_unknown_language_is_a_config_error():
    from curate.pipelines.errors import ConfigError

    stage = GopherQuality(GopherQuality.Params(language="xx-not-a-language"))
    with pytest.raises(ConfigError, match="no word tokenizer"):
        stage.check(None)
