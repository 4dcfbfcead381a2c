"""Exact column aggregates for the publish gate, computed per part and merged: no sample.

Great Expectations judges a column aggregate expectation from one or two metrics
(``column.max``, ``column.distinct_values.count``, ...). For the expectations listed in
:data:`METRICS` curate computes those metrics exactly over every row, part by part (each part in
its own task), merges them, and lets the GE expectation's own ``_validate`` judge the merged
metrics, so the verdict and the observed value are GE's own on the whole data:

- min, max, sum, mean, standard deviation: merged per part (counts, sums, and the mean and sum of
  squared deviations by Chan's parallel algorithm); NaN counts as null, as in pandas.
- distinct values against a ``value_set``: the values outside the set (exactly, by value) and the
  set's values seen.
- medians and quantiles: exact up to ``EXACT_QUANTILE_ROWS`` rows (every value is gathered, as
  pandas would compute them); beyond, a mergeable KLL sketch (Apache DataSketches) per part, and
  the result says ``approximate`` with its normalised rank error.
- the number and share of distinct values, and the uniqueness of a column or of compound columns
  (a map expectation: rows whose value another row has too are unexpected, with ``mostly``): every
  part counts its 64-bit value hashes and writes them, partitioned by hash into buckets, to files
  beside the data; one task per bucket adds the counts up. No process ever holds every value; two
  different values share a hash with probability under ``n**2 / 2**65`` (n distinct values).
- the most common value(s): every part counts its values and writes ``(value, count)`` pairs,
  partitioned by the value's hash into buckets; one task per bucket adds them up by value and
  returns its largest count with the values that have it (ties kept, as pandas' ``mode``).
- the share of non-null values: non-null and row counts.

A ``row_condition`` is applied to every batch with GE's own pandas filter before the batch is
counted (:func:`condition_rows`), so the aggregates are those of the rows GE would keep.
"""

from __future__ import annotations

import dataclasses
import io
import math
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import fs

#: expectation type -> the GE metrics its verdict is computed from (curate computes them exactly)
NUMERIC = {
    "expect_column_max_to_be_between": "column.max",
    "expect_column_min_to_be_between": "column.min",
    "expect_column_sum_to_be_between": "column.sum",
    "expect_column_mean_to_be_between": "column.mean",
    "expect_column_stdev_to_be_between": "column.standard_deviation",
}
SETS = ("expect_column_distinct_values_to_be_in_set", "expect_column_distinct_values_to_contain_set", "expect_column_distinct_values_to_equal_set")
DISTINCT = ("expect_column_unique_value_count_to_be_between", "expect_column_proportion_of_unique_values_to_be_between")
QUANTILES = {"expect_column_median_to_be_between": "column.median", "expect_column_quantile_values_to_be_between": "column.quantile_values"}
#: up to this many rows, medians and quantiles are exact (8 bytes a value reach the driver);
#: beyond, a KLL sketch of ``KLL_K`` (normalised rank error about 0.3%)
EXACT_QUANTILE_ROWS = 10_000_000
KLL_K = 800
UNIQUE = ("expect_column_values_to_be_unique", "expect_compound_columns_to_be_unique")
MODE = "expect_column_most_common_value_to_be_in_set"
NONNULL = "expect_column_proportion_of_non_null_values_to_be_between"
METRICS = (*NUMERIC, *SETS, *DISTINCT, *UNIQUE, *QUANTILES, MODE, NONNULL)
#: rows per hash bucket (a bucket's counts are added up in one task)
BUCKET_ROWS = 4_000_000
#: repeated values a failed uniqueness expectation names (with their rows' ids)
EXAMPLES = 20


def eligible(spec: Any) -> bool:
    return spec.type in METRICS


def condition_rows(table: pa.Table, spec: Any) -> pa.Table:
    """The rows of ``table`` that the expectation's ``row_condition`` keeps (all without one),
    chosen by GE's own pandas filter (the same ``query`` GE runs on a whole frame)."""
    condition = spec.kwargs.get("row_condition")
    if not condition or not table.num_rows:
        return table
    frame = table.to_pandas()  # a fresh RangeIndex: the kept rows' index is their row number
    kept = _pandas_engine()._apply_row_condition_filter(frame, condition, dict(spec.kwargs))
    return table.take(pa.array(kept.index.to_numpy(), pa.int64()))


_ENGINE: list[Any] = []


def _pandas_engine() -> Any:
    if not _ENGINE:
        from great_expectations.execution_engine import PandasExecutionEngine

        _ENGINE.append(PandasExecutionEngine())
    return _ENGINE[0]


def buckets_for(total_rows: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(1, total_rows) / BUCKET_ROWS)))


@dataclasses.dataclass
class Agg:
    """One expectation's aggregates over some rows."""

    rows: int = 0  # rows seen (element_count)
    n: int = 0  # non-null (and non-NaN) values, or compound rows not ignored
    lo: Any = None
    hi: Any = None
    total: Any = 0
    mean: float = 0.0
    m2: float = 0.0
    outside: set[Any] = dataclasses.field(default_factory=set)  # distinct values not in value_set
    seen: set[Any] = dataclasses.field(default_factory=set)  # values of value_set that occur
    spills: list[str] = dataclasses.field(default_factory=list)  # hash-count files, bucket in name
    values: list[np.ndarray] = dataclasses.field(default_factory=list)  # for exact quantiles
    sketch: bytes | None = None  # a serialised KLL sketch, for approximate ones


def merge_agg(a: Agg, b: Agg) -> Agg:
    out = Agg(rows=a.rows + b.rows, n=a.n + b.n, outside=a.outside | b.outside, seen=a.seen | b.seen, spills=a.spills + b.spills,
              values=a.values + b.values, sketch=_merge_sketches(a.sketch, b.sketch))
    out.lo = b.lo if a.lo is None else a.lo if b.lo is None else min(a.lo, b.lo)
    out.hi = b.hi if a.hi is None else a.hi if b.hi is None else max(a.hi, b.hi)
    out.total = a.total + b.total
    if a.n and b.n:  # Chan et al.: the mean and squared deviations of the union
        delta = b.mean - a.mean
        out.mean = a.mean + delta * b.n / out.n
        out.m2 = a.m2 + b.m2 + delta * delta * a.n * b.n / out.n
    else:
        out.mean, out.m2 = (a.mean, a.m2) if a.n else (b.mean, b.m2)
    return out


def _merge_sketches(a: bytes | None, b: bytes | None) -> bytes | None:
    if a is None or b is None:
        return a if b is None else b
    from datasketches import kll_doubles_sketch

    sketch = kll_doubles_sketch.deserialize(a)
    sketch.merge(kll_doubles_sketch.deserialize(b))
    return bytes(sketch.serialize())


def sketch_part(agg: Agg) -> None:
    """Turn one part's gathered values into a KLL sketch (when quantiles are approximate)."""
    from datasketches import kll_doubles_sketch

    sketch = kll_doubles_sketch(KLL_K)
    for v in agg.values:
        sketch.update(v.astype(np.float64))
    agg.values, agg.sketch = [], _merge_sketches(agg.sketch, bytes(sketch.serialize()))


def rank_error() -> float:
    from datasketches import kll_doubles_sketch

    return float(kll_doubles_sketch(KLL_K).normalized_rank_error(False))


def non_null(table: pa.Table, column: str) -> pa.Array:
    """The column's non-null values, NaN counted as null (as pandas does)."""
    arr = table.column(column).combine_chunks()
    if pa.types.is_floating(arr.type):
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, arr.type), arr)
    return pc.drop_null(arr)


def value_hashes(spec: Any, table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The 64-bit hash of each counted value of a uniqueness or distinct-count expectation, and
    the row (in ``table``) it is from: a column's non-null (non-NaN) values, or, for compound
    columns, every row with at least one value (GE ignores a row whose values are all missing;
    a null hashes apart from every value)."""
    from .._textops import hash_column

    if spec.type == "expect_compound_columns_to_be_unique":
        cols = spec.kwargs["column_list"]
        any_valid = pc.is_valid(table.column(cols[0]))
        for c in cols[1:]:
            any_valid = pc.or_(any_valid, pc.is_valid(table.column(c)))
        rows = np.flatnonzero(any_valid.to_numpy(zero_copy_only=False))
        kept = table.take(pa.array(rows))
        h = np.zeros(kept.num_rows, np.uint64)
        for k, c in enumerate(cols):
            col = kept.column(c)
            hv = hash_column(col, seed=k + 1) ^ np.where(pc.is_null(col).to_numpy(zero_copy_only=False), np.uint64(0x9E3779B97F4A7C15), np.uint64(0))
            h = (h * np.uint64(0x100000001B3)) ^ hv
        return h, rows
    arr = table.column(spec.kwargs["column"]).combine_chunks()
    valid = pc.is_valid(arr)
    if pa.types.is_floating(arr.type):
        valid = pc.and_(valid, pc.invert(pc.is_nan(arr)))
    rows = np.flatnonzero(pc.fill_null(valid, False).to_numpy(zero_copy_only=False))
    return hash_column(arr.take(pa.array(rows))), rows


def add_batch(agg: Agg, spec: Any, table: pa.Table, spill: Any) -> None:
    """Add one batch's rows to ``agg``; ``spill(hashes, counts)`` keeps hash counts aside."""
    kw = spec.kwargs
    agg.rows += table.num_rows
    if spec.type in UNIQUE or spec.type in DISTINCT:
        h, rows = value_hashes(spec, table)
        agg.n += len(rows)
        if len(rows):
            spill(*np.unique(h, return_counts=True))
        return
    values = non_null(table, kw["column"])
    agg.n += len(values)
    if not len(values) or spec.type == NONNULL:
        return
    if spec.type == MODE:  # this batch's (value, count) pairs, added up per part and spilled by value
        counts = pc.value_counts(values)
        spill(pa.table({"value": counts.field("values"), "count": counts.field("counts")}))
        return
    if spec.type in NUMERIC:
        mm = pc.min_max(values)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        agg.lo = lo if agg.lo is None else min(agg.lo, lo)
        agg.hi = hi if agg.hi is None else max(agg.hi, hi)
        if spec.type in ("expect_column_sum_to_be_between", "expect_column_mean_to_be_between", "expect_column_stdev_to_be_between"):
            nums = values.to_numpy(zero_copy_only=False)
            total = int(nums.sum()) if np.issubdtype(nums.dtype, np.integer) else float(nums.astype(np.float64).sum())
            part = Agg(n=len(nums), total=total, mean=float(nums.astype(np.float64).mean()),
                       m2=float(((nums.astype(np.float64) - nums.astype(np.float64).mean()) ** 2).sum()))
            before = Agg(n=agg.n - len(nums), total=agg.total, mean=agg.mean, m2=agg.m2)
            merged = merge_agg(before, part)
            agg.total, agg.mean, agg.m2 = merged.total, merged.mean, merged.m2
        return
    if spec.type in QUANTILES:
        agg.values.append(values.to_numpy(zero_copy_only=False))
        return
    if spec.type in SETS:
        wanted = list(kw.get("value_set") or [])
        distinct = pc.unique(values).to_pylist()
        allowed = set(wanted)
        agg.seen |= {v for v in distinct if v in allowed}
        agg.outside |= {v for v in distinct if v not in allowed}


def spill_counts(root: str, i: int, buckets: int, hashes: np.ndarray, counts: np.ndarray, so: dict[str, str]) -> list[str]:
    """Write one part's (hash, count) pairs of expectation ``i`` into bucket files under ``root``."""
    out = []
    bucket = (hashes >> np.uint64(40)) % np.uint64(buckets) if buckets > 1 else np.zeros(len(hashes), np.uint64)
    for b in range(buckets):
        sel = bucket == b
        if not sel.any():
            continue
        buf = io.BytesIO()
        np.savez(buf, h=hashes[sel], c=counts[sel].astype(np.int64))
        uri = fs.join(root, f"e{i}", f"b{b}", f"{uuid.uuid4().hex}.npz")
        fs.write_bytes(uri, buf.getvalue(), so)
        out.append(uri)
    return out


def add_values(tables: list[pa.Table]) -> pa.Table:
    """``(value, count)`` tables added up by value."""
    table = pa.concat_tables(tables, promote_options="permissive")
    summed = table.group_by("value").aggregate([("count", "sum")])
    return summed.rename_columns(["value", "count"])


def spill_values(root: str, i: int, buckets: int, table: pa.Table, so: dict[str, str]) -> list[str]:
    """Write one part's ``(value, count)`` pairs of expectation ``i`` into bucket files (by the
    value's hash) under ``root``."""
    from .._textops import hash_column

    out = []
    hashes = hash_column(table.column("value"))
    bucket = (hashes >> np.uint64(40)) % np.uint64(buckets) if buckets > 1 else np.zeros(len(hashes), np.uint64)
    for b in range(buckets):
        sel = np.flatnonzero(bucket == b)
        if not len(sel):
            continue
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table.take(pa.array(sel)))
        uri = fs.join(root, f"e{i}", f"b{b}", f"{uuid.uuid4().hex}.arrow")
        fs.write_bytes(uri, sink.getvalue().to_pybytes(), so)
        out.append(uri)
    return out


def _reduce_values(files: list[str], so: dict[str, str]) -> tuple[int, int, tuple[int, list[Any]]]:
    tables = [pa.ipc.open_file(pa.BufferReader(fs.read_bytes(uri, so))).read_all() for uri in files]
    summed = add_values(tables)
    if not summed.num_rows:
        return 0, 0, (0, [])
    top = int(pc.max(summed.column("count")).as_py())
    modes = summed.filter(pc.equal(summed.column("count"), top)).column("value").to_pylist()
    return summed.num_rows, 0, (top, modes)


def merge_top(a: tuple[int, list[Any]] | None, b: tuple[int, list[Any]] | None) -> tuple[int, list[Any]] | None:
    """The largest count and its values, of two buckets."""
    if a is None or b is None:
        return a if b is None else b
    if a[0] != b[0]:
        return a if a[0] > b[0] else b
    return a[0], a[1] + b[1]


def reduce_bucket(files: list[str], so: dict[str, str]) -> tuple[int, int, Any]:
    """(distinct values, rows whose value another row has too, and for value counts the largest
    count with its values, for hash counts up to ``EXAMPLES`` hashes of repeated values) of one
    bucket's files."""
    if files and files[0].endswith(".arrow"):
        return _reduce_values(files, so)
    hs, cs = [], []
    for uri in files:
        with np.load(io.BytesIO(fs.read_bytes(uri, so))) as z:
            hs.append(z["h"])
            cs.append(z["c"])
    if not hs:
        return 0, 0, []
    h, c = np.concatenate(hs), np.concatenate(cs)
    order = np.argsort(h, kind="stable")
    h, c = h[order], c[order]
    starts = np.flatnonzero(np.concatenate([[True], h[1:] != h[:-1]]))
    per_value = np.add.reduceat(c, starts)
    repeated = h[starts][per_value > 1][:EXAMPLES]
    return len(per_value), int(per_value[per_value > 1].sum()), [int(x) for x in repeated]


def bucket_groups(agg_spills: dict[int, list[str]]) -> list[tuple[int, list[str]]]:
    """The reduce work: (expectation, files of one bucket) pairs."""
    out = []
    for i, files in agg_spills.items():
        by_bucket: dict[str, list[str]] = {}
        for uri in files:
            by_bucket.setdefault(uri.rsplit("/", 2)[-2], []).append(uri)
        out += [(i, group) for _, group in sorted(by_bucket.items())]
    return out


def metrics(spec: Any, agg: Agg, distinct: int, dup_rows: int, top: tuple[int, list[Any]] | None = None) -> dict[str, Any]:
    """The GE metrics of ``spec`` from the merged aggregates (and the reduced hash or value counts)."""
    if spec.type == NONNULL:
        return {"column.non_null_proportion": agg.n / agg.rows if agg.rows else 0}
    if spec.type == MODE:  # sorted, as pandas' mode
        return {"column.most_common_value": sorted(top[1]) if top else []}
    if spec.type in NUMERIC:
        value: Any
        name = NUMERIC[spec.type]
        if agg.n == 0:
            value = None
        elif name == "column.max":
            value = agg.hi
        elif name == "column.min":
            value = agg.lo
        elif name == "column.sum":
            value = agg.total
        elif name == "column.mean":
            value = agg.mean
        else:
            value = math.sqrt(agg.m2 / (agg.n - 1)) if agg.n > 1 else float("nan")
        return {name: value}
    if spec.type in SETS:
        wanted = list(spec.kwargs.get("value_set") or [])
        outside = sorted(agg.outside, key=repr)
        missing = [v for v in wanted if v not in agg.seen]
        return {
            "column.distinct_values.not_in_set": outside, "column.distinct_values.not_in_set.count": len(outside),
            "column.distinct_values.missing_from_column": missing, "column.distinct_values.missing_from_column.count": len(missing),
        }
    if spec.type in QUANTILES:
        return {QUANTILES[spec.type]: _quantile_metric(spec, agg)}
    if spec.type == "expect_column_unique_value_count_to_be_between":
        return {"column.distinct_values.count": distinct}
    if spec.type == "expect_column_proportion_of_unique_values_to_be_between":
        return {"column.unique_proportion": distinct / agg.n if agg.n else 0.0}
    return {}


def _quantile_metric(spec: Any, agg: Agg) -> Any:
    """The median, or the quantiles of ``quantile_ranges``, as pandas computes them (exact), or
    from the merged sketch (approximate)."""
    median = spec.type == "expect_column_median_to_be_between"
    qs = [0.5] if median else list((spec.kwargs.get("quantile_ranges") or {}).get("quantiles") or [])
    if agg.sketch is not None:
        from datasketches import kll_doubles_sketch

        sketch = kll_doubles_sketch.deserialize(agg.sketch)
        got = [float(sketch.get_quantile(q)) for q in qs]
        return got[0] if median else got
    if not agg.values or agg.n == 0:
        return None if median else [None] * len(qs)
    values = np.concatenate(agg.values)
    if median:
        return float(np.median(values))
    method: Any = spec.kwargs.get("allow_relative_error") or "nearest"
    return [v.item() if hasattr(v, "item") else v for v in np.quantile(values, qs, method=method)]
