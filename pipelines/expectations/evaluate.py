"""Evaluating expectations on Parquet shards, part by part, without pulling a dataset into one
process.

The shards are split into parts (:func:`split`, about ``TASK_ROWS`` rows each); each part is
evaluated by :func:`evaluate_part` (in a Ray task during ``curate run``, in-process for ``curate
check``), which streams its shards in batches of ``BATCH_ROWS`` rows, converts each batch to
pandas (GE rejects Arrow and polars frames) and returns only small aggregates
(:class:`Partial`); :func:`merge` adds them up and :func:`finish` turns the total into one Great
Expectations validation result. How each expectation is evaluated (its ``method``):

- ``exact`` (GE's map expectations, e.g. ``expect_column_values_to_not_be_null``,
  ``..._to_be_in_set``, ``..._to_match_regex``, ``..._value_lengths_to_be_between``): GE
  validates every batch; the per-batch counts (rows, missing, unexpected) are added up and success
  is decided on the totals with GE's rule (``mostly``: (non-null - unexpected) / non-null >=
  mostly; vacuously true without non-null rows). ``partial_unexpected_list`` holds the first 20
  unexpected values found, ``partial_unexpected_ids`` their rows' ``id``.
- ``exact`` (ordering: ``expect_column_values_to_be_increasing`` / ``_decreasing``): as the map
  expectations, and where two batches (or parts) meet, the first non-null value of the later one
  is compared with the last of the earlier one (GE gives only the very first row a bye). The
  order is the version's shard order, as a reader of the table sees it.
- ``exact`` (row counts: ``expect_table_row_count_to_be_between`` / ``_to_equal``): the exact
  total row count, judged by the GE expectation's own ``_validate``.
- ``exact`` (curate's checks, ``checks.py``): exact aggregates of every row (allowed-language
  counts; the duplicate rate from 64-bit hash counts added up per hash bucket, as the
  aggregates below: no process holds every value).
- ``exact`` (``aggregate``: min, max, sum, mean, standard deviation, distinct values against a
  set, the number and share of distinct and of non-null values, the most common value,
  uniqueness of a column or of compound columns; with or without a ``row_condition``): exact
  metrics merged from every part, judged by the GE expectation itself (:mod:`.aggregates`).
- ``exact`` (``schema``: the table's columns: ``expect_column_to_exist``,
  ``expect_table_columns_to_match_set`` / ``_ordered_list``, ``expect_table_column_count_*``):
  GE judges an empty frame with the version's schema.
- ``exact`` (type checks, ``expect_column_values_to_be_of_type`` / ``_in_type_list``,
  ``expect_column_type_to_be``): GE judges a typed column (not object) by its dtype alone; any
  batch failing that way fails the expectation.
- ``exact`` or ``approximate`` (medians and quantiles: exact up to a size, beyond it from a
  merged sketch with its rank error; :mod:`.aggregates`).
- ``whole`` (what needs statistics of the whole column before judging a row: z-scores,
  outliers, KL divergence): GE validates every row of the columns they read, gathered in one
  process, when the data has at most ``EXACT_ROWS`` rows and those columns about
  ``EXACT_BYTES`` bytes: exact. Beyond that, curate never samples on its own: such an
  expectation is "not evaluated" (a failure) unless it asks for a sample itself with
  ``meta: {sample_rows: N}``; then GE judges a uniform random sample of N rows (seeded by shard
  name, so reproducible), and the result says "sample of N rows".
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from .. import fs
from . import aggregates
from .spec import ExpectationSpec, ge_environment, instantiate

#: rows per pandas batch handed to Great Expectations, and about the most bytes (uncompressed)
BATCH_ROWS = 100_000
BATCH_BYTES = 128 * 1024**2
#: rows of shards per part (one Ray task each)
TASK_ROWS = 1_000_000
#: the most rows (``CURATE_EXPECTATIONS_EXACT_ROWS`` overrides) and about the most bytes
#: (uncompressed, of the columns they read) the ``whole`` expectations are judged on exactly
EXACT_ROWS = 10_000_000
EXACT_BYTES = 512 * 1024**2
#: map expectations whose verdict depends on statistics of the whole column: the ``whole`` method
NOT_PER_BATCH = {
    "expect_column_value_z_scores_to_be_less_than",
    "expect_column_values_to_not_be_outliers",
}
#: map expectations comparing each value with the one before: per batch, and where batches meet
ORDERED = {"expect_column_values_to_be_increasing": 1, "expect_column_values_to_be_decreasing": -1}
#: judged by GE per batch on the column's dtype (a result without rows): as the map expectations
COLUMN_TYPE = {"expect_column_type_to_be"}
ROW_COUNT_TYPES = {"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"}
#: expectations on the table's columns alone (not its rows): judged by GE on the schema, exactly
SCHEMA_TYPES = {
    "expect_column_to_exist", "expect_table_columns_to_match_set", "expect_table_columns_to_match_ordered_list",
    "expect_table_column_count_to_equal", "expect_table_column_count_to_be_between",
}
PARTIAL_VALUES = 20


def exact_rows() -> int:
    return int(os.environ.get("CURATE_EXPECTATIONS_EXACT_ROWS") or EXACT_ROWS)


def requested_sample(spec: ExpectationSpec) -> int | None:
    """The sample an expectation asked for itself (``meta: {sample_rows: N}``), if any."""
    meta = spec.kwargs.get("meta") or {}
    n = meta.get("sample_rows") if isinstance(meta, dict) else None
    return int(n) if n else None


@dataclasses.dataclass(frozen=True)
class GatePlan:
    """The expectations, how each is evaluated, and the total rows (from the shards' metadata)."""

    specs: tuple[ExpectationSpec, ...]
    methods: tuple[str, ...]  # "map" | "rows" | "curate" | "aggregate" | "schema" | "whole"
    total_rows: int
    #: the rows the ``whole`` expectations see: every row, or the largest sample one asked for
    sample_rows: int
    key: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)
    #: where parts write their hash counts (aggregates.spill_counts), and how many buckets
    spill_uri: str = ""
    buckets: int = 1
    storage_options: dict[str, str] = dataclasses.field(default_factory=dict)
    #: hashes of repeated values to find the rows of (a failed uniqueness expectation), by expectation
    targets: dict[int, list[int]] = dataclasses.field(default_factory=dict)

    def indices(self, method: str) -> list[int]:
        return [i for i, m in enumerate(self.methods) if m == method]

    def columns(self, methods: tuple[str, ...] = ("map", "curate", "aggregate", "whole")) -> list[str] | None:
        """The columns the expectations of ``methods`` read (None: every column: a table-level
        expectation, or a ``row_condition``, which may name any column)."""
        cols: list[str] = []
        for i, method in enumerate(self.methods):
            if method not in methods or self.specs[i].type in ROW_COUNT_TYPES or self.specs[i].type == "curate_row_count_change":
                continue
            named = _named_columns(self.specs[i])
            if named is None:
                return None
            cols += named
        return list(dict.fromkeys(cols))


def _named_columns(spec: ExpectationSpec) -> list[str] | None:
    """The columns one expectation reads; None when it may read any (no column named, or a row_condition)."""
    from .spec import DEFAULT_COLUMNS

    kw = spec.kwargs
    if kw.get("row_condition"):
        return None
    cols = [kw[k] for k in ("column", "column_A", "column_B") if isinstance(kw.get(k), str)]
    cols += [c for c in kw.get("column_list") or [] if isinstance(c, str)]
    if spec.type in DEFAULT_COLUMNS and "column" not in kw:
        cols.append(DEFAULT_COLUMNS[spec.type])
    return cols or None


def method_of(spec: ExpectationSpec) -> str:
    from great_expectations.expectations.expectation import ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation

    from .checks import CURATE_CHECKS

    if spec.type in CURATE_CHECKS:
        return "curate"
    if spec.type in ROW_COUNT_TYPES:
        return "rows"
    if aggregates.eligible(spec):
        return "aggregate"
    if spec.type in SCHEMA_TYPES:
        return "schema"
    impl = type(instantiate(spec))
    if spec.type in COLUMN_TYPE or (
            issubclass(impl, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)) and spec.type not in NOT_PER_BATCH):
        return "map"
    return "whole"


def make_plan(specs: list[ExpectationSpec], total_rows: int, spill_uri: str = "", storage_options: dict[str, str] | None = None) -> GatePlan:
    methods = tuple(method_of(s) for s in specs)
    asked = [requested_sample(s) or 0 for s, m in zip(specs, methods) if m == "whole"]
    sample = int(total_rows) if total_rows <= exact_rows() else max(asked, default=0)
    return GatePlan(tuple(specs), methods, int(total_rows), sample,
                    spill_uri=spill_uri, buckets=aggregates.buckets_for(total_rows), storage_options=dict(storage_options or {}))


def split(files: list[tuple[str, int]], task_rows: int | None = None) -> list[list[tuple[str, int]]]:
    """Shards ``(uri, rows)`` in parts of about ``task_rows`` (default ``TASK_ROWS``) rows (a
    shard is never split)."""
    task_rows = task_rows or TASK_ROWS
    parts: list[list[tuple[str, int]]] = []
    current: list[tuple[str, int]] = []
    rows = 0
    for f in files:
        if current and rows + f[1] > task_rows:
            parts.append(current)
            current, rows = [], 0
        current.append(f)
        rows += f[1]
    if current:
        parts.append(current)
    return parts


@dataclasses.dataclass
class Partial:
    """What one part of the data contributes: small aggregates only (no rows but those of the
    ``whole`` expectations)."""

    rows: int = 0
    maps: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    allowed: dict[int, int] = dataclasses.field(default_factory=dict)
    errors: dict[int, str] = dataclasses.field(default_factory=dict)
    aggs: dict[int, aggregates.Agg] = dataclasses.field(default_factory=dict)
    sample: pa.Table | None = None
    schema: pa.Schema | None = None
    #: each ordering expectation's column: first and last non-null value, direction, strictly
    edges: dict[int, tuple[Any, Any, int, bool]] = dataclasses.field(default_factory=dict)


def merge(a: Partial, b: Partial) -> Partial:
    """The aggregates of both parts together (exact: counts add, extremes compare, value sets
    unite; hash counts stay in their bucket files, added up by :func:`reduce_part`)."""
    out = Partial(rows=a.rows + b.rows, errors={**b.errors, **a.errors}, schema=a.schema or b.schema)
    for i in {*a.maps, *b.maps}:
        x, y = a.maps.get(i), b.maps.get(i)
        if x is None or y is None:
            out.maps[i] = dict(x or y or {})
            continue
        out.maps[i] = {k: x[k] + y[k] for k in ("element_count", "nonnull_count", "unexpected_count")}
        out.maps[i]["partial"] = (x["partial"] + y["partial"])[:PARTIAL_VALUES]
        out.maps[i]["ids"] = (x.get("ids", []) + y.get("ids", []))[:PARTIAL_VALUES]
        for key in ("column_failure", "column_observed"):
            if x.get(key) is not None or y.get(key) is not None:
                out.maps[i][key] = x.get(key) if x.get(key) is not None else y.get(key)
    for i in {*a.allowed, *b.allowed}:
        out.allowed[i] = a.allowed.get(i, 0) + b.allowed.get(i, 0)
    for i in {*a.edges, *b.edges}:
        out.edges[i] = _join_edges(out.maps.get(i), a.edges.get(i), b.edges.get(i))
    for i in {*a.aggs, *b.aggs}:
        out.aggs[i] = aggregates.merge_agg(a.aggs.get(i) or aggregates.Agg(), b.aggs.get(i) or aggregates.Agg())
    samples = [t for t in (a.sample, b.sample) if t is not None and t.num_rows]
    out.sample = pa.concat_tables(samples, promote_options="permissive") if len(samples) > 1 else (samples[0] if samples else a.sample or b.sample)
    return out


class Validator:
    """One ephemeral GE context per process and plan: a pandas data source whose batches are
    validated against a suite of the plan's expectations of one method."""

    _cache: dict[tuple[str, str], Validator] = {}

    def __init__(self, plan: GatePlan, method: str) -> None:
        with ge_environment():
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            self.context = gx.get_context(mode="ephemeral")  # in memory: no gx/ folder
        self.context.enable_analytics(False)
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        source = self.context.data_sources.add_pandas(f"curate-{method}")
        self.batch_definition = source.add_dataframe_asset("staged").add_batch_definition_whole_dataframe("batch")
        self.indices = plan.indices(method)
        suite = gx.ExpectationSuite(name=f"curate-{method}-{plan.key}")
        for i in self.indices:
            suite.add_expectation(instantiate(plan.specs[i]))
        self.suite = self.context.suites.add(suite)
        self.ids = [e.id for e in self.suite.expectations]

    @classmethod
    def get(cls, plan: GatePlan, method: str) -> Validator:
        key = (plan.key, method)
        if key not in cls._cache:
            for old in [k for k in cls._cache if k[0] != plan.key]:  # one plan at a time per process
                del cls._cache[old]
            cls._cache[key] = cls(plan, method)
        return cls._cache[key]

    def validate(self, frame: Any) -> dict[int, Any]:
        """The result of each of the plan's expectations (by index) on one pandas frame."""
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(self.suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_VALUES})
        by_id = {r.expectation_config.id: r for r in result.results if r.expectation_config is not None}
        return {i: by_id[eid] for i, eid in zip(self.indices, self.ids)}


def _bytes_per_row(pf: pq.ParquetFile, columns: list[str] | None) -> float:
    """Uncompressed bytes per row of ``columns`` (None: all) of a Parquet file, from its metadata."""
    md = pf.metadata
    total = 0
    for g in range(md.num_row_groups):
        group = md.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            if columns is None or chunk.path_in_schema.split(".")[0] in columns:
                total += chunk.total_uncompressed_size
    return max(1.0, total / max(1, md.num_rows))


def _file_sample(uri: str, rows: int, plan: GatePlan, row_bytes: float) -> np.ndarray | None:
    """Row numbers of this shard the ``whole`` expectations see: None for all (the whole data fits
    in ``plan.sample_rows`` rows and ``EXACT_BYTES`` bytes), else its share of the sample."""
    share = rows / max(1, plan.total_rows)
    k = min(rows, int(round(plan.sample_rows * share)), int(EXACT_BYTES * share / row_bytes))
    if k >= rows and plan.total_rows <= plan.sample_rows:
        return None
    rng = np.random.default_rng(xxhash.xxh3_64_intdigest(uri.rsplit("/", 1)[-1].encode()))
    return np.sort(rng.choice(rows, size=k, replace=False)) if k else np.empty(0, np.int64)


def evaluate_part(plan: GatePlan, files: list[tuple[str, int]], storage_options: dict[str, str] | None = None) -> Partial:
    """The aggregates of ``files`` (shard URIs with their row counts), streamed batch by batch."""
    from .._textops import hash_column

    part = Partial()
    wanted = plan.columns()
    sample_columns = plan.columns(("whole",))
    maps = Validator.get(plan, "map") if plan.indices("map") else None
    samples: list[pa.Table] = []
    # hash counts of the aggregate expectations and of the duplicate rate, spilled into buckets
    counted: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {
        i: [] for i in plan.indices("aggregate") + [j for j in plan.indices("curate") if plan.specs[j].type == "curate_duplicate_rate"]}
    for uri, rows in files:
        filesystem, path = fs.filesystem(uri, storage_options)
        pf = pq.ParquetFile(path, filesystem=filesystem)
        names = pf.schema_arrow.names
        part.schema = part.schema or pf.schema_arrow
        columns = None if wanted is None else [c for c in wanted if c in names]
        if columns is not None and maps is not None and "id" in names and "id" not in columns:
            columns.append("id")  # the report names the rows that failed by their id
        keep = None if sample_columns is None else [c for c in sample_columns if c in names]
        picks = (_file_sample(uri, pf.metadata.num_rows, plan, _bytes_per_row(pf, keep)) if plan.indices("whole")
                 else np.empty(0, np.int64))
        offset = 0
        batch_rows = max(1, min(BATCH_ROWS, int(BATCH_BYTES / _bytes_per_row(pf, columns))))
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            table = pa.Table.from_batches([batch])
            n = table.num_rows
            part.rows += n
            if picks is None or len(picks):
                chosen = table if keep is None else table.select(keep)
                if picks is not None:
                    local = picks[(picks >= offset) & (picks < offset + n)] - offset
                    chosen = chosen.take(pa.array(local)) if len(local) else None
                if chosen is not None:
                    samples.append(chosen)
            offset += n
            if maps is not None:
                ids = table.column("id") if "id" in table.schema.names else None
                _add_map_results(part, maps.validate(table.to_pandas()), ids)
                _batch_edges(part, plan, table)
            _add_aggregates(part, plan, table, counted, names)
            for i in plan.indices("curate"):
                spec = plan.specs[i]
                column = spec.kwargs.get("column", "language" if spec.type == "curate_language_share" else "text")
                if spec.type == "curate_row_count_change":
                    continue
                if column not in table.schema.names:
                    part.errors[i] = f"column {column!r} is not in the data (columns: {', '.join(names)})"
                    continue
                values = table.column(column)
                if spec.type == "curate_language_share":
                    allowed = pa.array([str(a) for a in spec.kwargs.get("allowed", [])], pa.string())
                    hit = pc.is_in(values.cast(pa.string()), value_set=allowed)
                    part.allowed[i] = part.allowed.get(i, 0) + int(pc.sum(hit).as_py() or 0)
                else:
                    h = hash_column(aggregates.non_null(table, column))  # NaN is null here too, as in GE's checks
                    part.aggs.setdefault(i, aggregates.Agg()).n += len(h)
                    counted[i].append(np.unique(h, return_counts=True))
    if samples:
        part.sample = pa.concat_tables(samples, promote_options="permissive")
    if plan.total_rows > aggregates.EXACT_QUANTILE_ROWS:  # too many values to gather: a sketch per part
        for i in plan.indices("aggregate"):
            if plan.specs[i].type in aggregates.QUANTILES and i in part.aggs:
                aggregates.sketch_part(part.aggs[i])
    for i, pairs in counted.items():  # this part's hash counts, once per value, into bucket files
        if pairs and i not in part.errors and plan.specs[i].type == aggregates.MODE:  # value counts, by value
            summed = aggregates.add_values([p[0] for p in pairs])
            part.aggs[i].spills += aggregates.spill_values(plan.spill_uri, i, plan.buckets, summed, plan.storage_options)
        elif pairs and i not in part.errors:
            h, c = np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
            values, inverse = np.unique(h, return_inverse=True)
            part.aggs.setdefault(i, aggregates.Agg()).spills += aggregates.spill_counts(plan.spill_uri, i, plan.buckets, values, np.bincount(inverse, weights=c).astype(np.int64),
                                                           plan.storage_options)
    return part


def _add_aggregates(part: Partial, plan: GatePlan, table: pa.Table, counted: dict[int, list[tuple[np.ndarray, np.ndarray]]], names: list[str]) -> None:
    for i in plan.indices("aggregate"):
        spec = plan.specs[i]
        cols = spec.kwargs.get("column_list") or [spec.kwargs.get("column")]
        missing = [c for c in cols if c not in table.schema.names]
        if missing:
            part.errors[i] = f"column {missing[0]!r} is not in the data (columns: {', '.join(names)})"
            continue
        if i in part.errors:
            continue
        agg = part.aggs.setdefault(i, aggregates.Agg())
        try:
            aggregates.add_batch(agg, spec, aggregates.condition_rows(table, spec), lambda *counts, i=i: counted[i].append(counts))
        except (pa.ArrowException, TypeError, ValueError) as exc:  # e.g. a mean of a text column: as GE, not evaluated
            part.errors[i] = f"{type(exc).__name__}: {exc}"
            counted[i] = []


def reduce_part(plan: GatePlan, group: tuple[int, list[str]], storage_options: dict[str, str]) -> tuple[int, int, int, Any]:
    """Task: one bucket of one expectation's hash (or value) counts -> (expectation, distinct
    values, rows whose value another row has too, the largest value count with its values)."""
    i, files = group
    distinct, dups, top = aggregates.reduce_bucket(files, storage_options)
    return i, distinct, dups, top


def find_part(plan: GatePlan, files: list[tuple[str, int]], storage_options: dict[str, str] | None = None) -> dict[int, list[tuple[Any, Any]]]:
    """Task: the rows of ``files`` whose value hashes to one of ``plan.targets`` (repeated values
    of a failed uniqueness expectation): ``(id, value)`` pairs, at most ``EXAMPLES`` per expectation."""
    found: dict[int, list[tuple[Any, Any]]] = {i: [] for i in plan.targets}
    for uri, _ in files:
        filesystem, path = fs.filesystem(uri, storage_options)
        pf = pq.ParquetFile(path, filesystem=filesystem)
        names = pf.schema_arrow.names
        for i, hashes in plan.targets.items():
            spec = plan.specs[i]
            cols = _named_columns(spec) or names
            wanted = [c for c in dict.fromkeys([*cols, *(["id"] if "id" in names else [])]) if c in names]
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
                table = aggregates.condition_rows(pa.Table.from_batches([batch]), spec)
                h, rows = aggregates.value_hashes(spec, table)
                hit = rows[np.isin(h, np.asarray(hashes, dtype=np.uint64))]
                for r in hit[: aggregates.EXAMPLES - len(found[i])]:
                    row = table.slice(int(r), 1).to_pylist()[0]
                    value = row[spec.kwargs["column"]] if "column" in spec.kwargs else {c: row.get(c) for c in spec.kwargs["column_list"]}
                    found[i].append((row.get("id"), value))
                if len(found[i]) >= aggregates.EXAMPLES:
                    break
    return found


def _join_edges(counts: dict[str, Any] | None, before: tuple[Any, Any, int, bool] | None,
                after: tuple[Any, Any, int, bool] | None) -> tuple[Any, Any, int, bool]:
    """The edges of two runs of rows one after the other; where they meet, the later run's first
    value is unexpected (added to ``counts``) when it is out of order with the earlier run's last."""
    if before is None or after is None:
        return before or after  # type: ignore[return-value]
    last, first, sign, strictly = before[1], after[0], after[2], after[3]
    step = (first > last) if sign > 0 else (first < last)
    in_order = step if strictly else (step or first == last)
    if not in_order and counts is not None:
        counts["unexpected_count"] += 1
        if len(counts["partial"]) < PARTIAL_VALUES:
            counts["partial"].append(first)
    return before[0], after[1], sign, strictly


def _batch_edges(part: Partial, plan: GatePlan, table: pa.Table) -> None:
    """Add one batch's first and last values of every ordering expectation to the part's."""
    for i in plan.indices("map"):
        spec = plan.specs[i]
        if spec.type not in ORDERED or spec.kwargs.get("column") not in table.schema.names or i in part.errors:
            continue
        values = aggregates.non_null(aggregates.condition_rows(table, spec), spec.kwargs["column"])
        if len(values):
            edges = (values[0].as_py(), values[-1].as_py(), ORDERED[spec.type], bool(spec.kwargs.get("strictly")))
            part.edges[i] = _join_edges(part.maps.get(i), part.edges.get(i), edges)


def _add_map_results(part: Partial, results: dict[int, Any], ids: pa.ChunkedArray | None = None) -> None:
    for i, r in results.items():
        raised = exception_message(r)
        if raised is not None:
            part.errors.setdefault(i, raised)
            continue
        res = r.result or {}
        if "element_count" not in res and "observed_value" in res:  # judged on the column as a whole (a type check of a typed column)
            entry = part.maps.setdefault(i, {"element_count": 0, "nonnull_count": 0, "unexpected_count": 0, "partial": []})
            entry.setdefault("column_observed", _clean_observed(res.get("observed_value")))
            if not r.success:
                entry.setdefault("column_failure", entry["column_observed"])
            continue
        element = int(res.get("element_count") or 0)
        missing = res.get("missing_count")
        entry = part.maps.setdefault(i, {"element_count": 0, "nonnull_count": 0, "unexpected_count": 0, "partial": []})
        entry["element_count"] += element
        entry["nonnull_count"] += element - int(missing or 0)
        entry["unexpected_count"] += int(res.get("unexpected_count") or 0)
        if len(entry["partial"]) < PARTIAL_VALUES:
            entry["partial"] = (entry["partial"] + list(res.get("partial_unexpected_list") or []))[:PARTIAL_VALUES]
        at = [int(x) for x in res.get("partial_unexpected_index_list") or [] if isinstance(x, (int, np.integer))]
        if ids is not None and at and len(entry.setdefault("ids", [])) < PARTIAL_VALUES:
            entry["ids"] = (entry["ids"] + [str(v) for v in ids.take(pa.array(at)).to_pylist()])[:PARTIAL_VALUES]


def _clean_observed(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def exception_message(result: Any) -> str | None:
    """The message of an exception GE caught while evaluating an expectation (None if none);
    ``exception_info`` is one record, or one per metric."""
    info = result.exception_info or {}
    records = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for rec in records:
        if rec.get("raised_exception"):
            return str(rec.get("exception_message") or "the expectation raised an exception")
    return None
