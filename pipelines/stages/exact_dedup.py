"""``exact_dedup``: drop documents whose text is identical to an earlier one, across the whole input.

Distributed by hash partition: each row emits a 128-bit content hash (two xxh3-64 with different
seeds, computed natively) and its
position; rows with the same hash meet in the same ``reduce`` call wherever they were read; the
first occurrence in input order (smallest ``_curate_pos``) is kept. Only hashes, positions and
ids move between workers, never the text.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from .._textops import hash_column
from ..rows import POS
from ..stage import DROP_RESULT_SCHEMA, GlobalStage, Params


class ExactDedupParams(Params):
    field: str = Field("text", description="column whose exact value defines a duplicate")
    lowercase: bool = Field(False, description="compare lowercased text")


class ExactDedup(GlobalStage[ExactDedupParams]):
    """Drop exact duplicates, keeping the first occurrence in input order."""

    name = "exact_dedup"
    Params = ExactDedupParams
    batch_size = 16384

    def input_columns(self) -> tuple[str, ...]:
        return (self.params.field,)

    def keys(self, batch: pa.Table) -> pa.Table:
        values = batch.column(self.params.field)
        if self.params.lowercase:
            values = pc.utf8_lower(values)
        # two independent 64-bit xxh3 hashes (native, straight from the Arrow buffers): 128 bits
        hi = hash_column(values, seed=0)
        lo = hash_column(values, seed=0x9E3779B97F4A7C15)
        return pa.table({"key": hi, "key2": lo, POS: batch.column(POS), "id": batch.column("id")})

    def reduce(self, rows: pa.Table) -> pa.Table:
        rows = rows.sort_by([("key", "ascending"), ("key2", "ascending"), (POS, "ascending")])
        k = rows.column("key").to_numpy()
        k2 = rows.column("key2").to_numpy()
        n = rows.num_rows
        same = np.zeros(n, dtype=bool)
        same[1:] = (k[1:] == k[:-1]) & (k2[1:] == k2[:-1])
        idx = np.arange(n)
        keeper = np.maximum.accumulate(np.where(same, 0, idx))
        dup = np.flatnonzero(same)
        keeper_ids = rows.column("id").take(pa.array(keeper[dup]))
        return pa.table(
            {
                POS: rows.column(POS).take(pa.array(dup)),
                "rule": pa.array(["exact_duplicate"] * len(dup), pa.string()),
                "reason": pc.binary_join_element_wise("same text as ", keeper_ids, ""),
                "duplicate_of": keeper_ids,
            },
            schema=DROP_RESULT_SCHEMA,
        )

    def resolve(self, reduced: pa.Table) -> pa.Table:
        return reduced
