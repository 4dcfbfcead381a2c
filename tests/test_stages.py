"""The built-in stages on their own (no Ray): exact behaviour on crafted and real text."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from curate.pipelines.execution.apply import run_on_table
from curate.pipelines.stage import DROP_COLUMNS, DROP_REASON, DROP_RULE, DROP_STAGE, POS
from curate.pipelines.stages.exact_dedup import ExactDedup, ExactDedupParams
from curate.pipelines.stages.length_filter import LengthFilter, LengthFilterParams
from curate.pipelines.stages.normalize import Normalize, NormalizeParams


def batch(texts: list[str], ids: list[str] | None = None) -> pa.Table:
    n = len(texts)
    cols = {
        "id": pa.array(ids or [f"d{i}" for i in range(n)], pa.string()),
        "text": pa.array(texts, pa.string()),
        POS: pa.array(range(n), pa.int64()),
    }
    for c in DROP_COLUMNS:
        cols[c] = pa.nulls(n, pa.string())
    return pa.table(cols)


def test_normalize() -> None:
    decomposed = "Cafe\u0301"  # e + combining acute
    texts = [
        f"  {decomposed} \t  au\u00a0lait\r\nline two   \n\n\n\n\nend\x00\x07 ",
        "already clean",
    ]
    out = Normalize(NormalizeParams()).process(batch(texts))
    assert out.table.column("text").to_pylist() == ["Caf\u00e9 au lait\nline two\n\nend", "already clean"]
    assert out.counters == {"changed": 1}
    nfkc = Normalize(NormalizeParams(form="NFKC", max_newlines=1)).process(batch(["\ufb01ne\n\n\nx"]))
    assert nfkc.table.column("text").to_pylist() == ["fine\nx"]


def test_length_filter_rules_and_reasons() -> None:
    stage = LengthFilter(LengthFilterParams(min_chars=5, max_chars=20, min_words=2))
    out = run_on_table(stage, batch(["tiny", "two words", "x" * 30, "oneword", "fine doc here"]))
    assert out.column(DROP_RULE).to_pylist() == ["too_short", None, "too_long", "too_few_words", None]
    assert out.column(DROP_REASON).to_pylist()[0] == "4 chars < min_chars 5"
    assert out.column(DROP_STAGE).to_pylist() == ["length_filter", None, "length_filter", "length_filter", None]


def test_rows_already_dropped_are_not_reprocessed() -> None:
    b = batch(["tiny", "long enough text"])
    first = run_on_table(LengthFilter(LengthFilterParams(min_chars=5)), b, "lf")
    second = run_on_table(Normalize(NormalizeParams(form="NFKC")), first)
    rows = {r["id"]: r for r in second.to_pylist()}
    assert rows["d0"][DROP_STAGE] == "lf" and rows["d1"][DROP_STAGE] is None


def test_exact_dedup_keys_reduce_keep_first_position() -> None:
    stage = ExactDedup(ExactDedupParams())
    texts = ["same", "other", "same", "SAME", "same"]
    keys = stage.keys(batch(texts, ids=["a", "b", "c", "d", "e"]))
    shuffled = keys.take(pa.array(np.random.default_rng(0).permutation(keys.num_rows)))
    drops = stage.resolve(stage.reduce(shuffled)).sort_by(POS)
    assert drops.column(POS).to_pylist() == [2, 4]
    assert drops.column("duplicate_of").to_pylist() == ["a", "a"]
    assert drops.column("reason").to_pylist() == ["same text as a", "same text as a"]
    lower = ExactDedup(ExactDedupParams(lowercase=True))
    drops = lower.resolve(lower.reduce(lower.keys(batch(texts))))
    assert sorted(drops.column(POS).to_pylist()) == [2, 3, 4]


from hypothesis import given, settings
from hypothesis import strategies as st

NASTY = st.text(alphabet=st.sampled_from(list(" \t\r\n\x0b\x0c\x00\x01\x1b\x7f\x85\xa0\u2003\u3000\ufeff\u0301e\u00e9\ufb01a")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(NASTY, min_size=1, max_size=8))
def test_normalize_is_idempotent(texts: list[str]) -> None:
    stage = Normalize(NormalizeParams())
    once = stage.process(batch(texts)).table
    twice = stage.process(once)
    assert twice.table.column("text").to_pylist() == once.column("text").to_pylist()
    assert twice.counters == {"changed": 0}
