"""``curate.testing.run``: every kind of stage on a table in this process (no Ray), with the
engine's own code, giving what a real run gives."""

from __future__ import annotations

import pyarrow as pa
from curate.filters.minhash_dedup import MinHashDedup
from curate.pipelines.stage import Expand, Params
from curate.pipelines.stages.exact_dedup import ExactDedup
from curate.pipelines.stages.length_filter import LengthFilter

from curate.testing import run


class Halves(Expand[Params]):
    def expand(self, row: dict) -> list[dict]:
        text = row["text"]
        return [{"text": text[: len(text) // 2]}, {"text": text[len(text) // 2:]}]


def test_map_filter_expand_and_global_stages_without_ray() -> None:
    words = [f"word{i}" for i in range(80)]
    doc = " ".join(words)
    edited = " ".join(words[:79] + ["changed"])  # one word of 80 changed: Jaccard about 0.94
    texts = ["short", doc, doc, edited, " ".join(f"other{i}" for i in range(40))]
    table = pa.table({"id": [f"d{i}" for i in range(len(texts))], "text": texts, "source": ["s"] * len(texts)})
    stages = [LengthFilter(LengthFilter.Params(min_chars=20)), ExactDedup(ExactDedup.Params()),
              MinHashDedup(MinHashDedup.Params(threshold=0.7)), Halves(Params())]
    kept, dropped = run(stages, table)
    why = {r["id"]: (r["stage"], r["rule"], r["duplicate_of"]) for r in dropped.to_pylist()}
    assert why["d0"] == ("length_filter", "too_short", None)
    assert why["d2"] == ("exact_dedup", "exact_duplicate", "d1")  # the first in input order is kept
    assert why["d3"] == ("minhash_dedup", "near_duplicate", "d1")
    # the kept documents were split in two by the Expand stage: ids and inherited columns as in a run
    assert kept.column("id").to_pylist() == ["d1/0", "d1/1", "d4/0", "d4/1"]
    assert set(kept.column("source").to_pylist()) == {"s"} and "parent_id" in kept.schema.names
    assert "".join(kept.column("text").to_pylist()[:2]) == texts[1]
