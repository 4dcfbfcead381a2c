"""Applying one stage to one batch: pure Arrow, no Ray (unit-testable on its own).

Dropped rows stay in the batch, marked in the ``_drop_*`` columns, and pass through later stages
untouched. A stage sees only the live rows, with the row's own columns and ``_curate_pos``; the
engine's columns (task, weight, drop marks) are put back here.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import StageError
from ..rows import (
    BORN,
    DROP_COLUMNS,
    DROP_REASON,
    DROP_RETRY,
    DROP_RULE,
    DROP_STAGE,
    DUPLICATE_OF,
    ENGINE_COLUMNS,
    EXPANDED,
    PARENT_ID,
    POS,
    RESUME_AT,
    TASK,
    WEIGHT,
)
from ..stage import Drops, Expand, ExpandOutput, RowError, Stage, StageOutput


@dataclasses.dataclass
class BatchReport:
    """What one stage did to one batch (sent to the live stats)."""

    rows_in: int = 0
    dropped: int = 0
    rows_out: int = 0
    seconds: float = 0.0
    counters: dict[str, int] = dataclasses.field(default_factory=dict)


def ensure_setup(stage: Stage[Any]) -> None:
    if not getattr(stage, "_curate_ready", False):
        stage.setup()
        stage._curate_ready = True  # type: ignore[attr-defined]


def is_live(batch: pa.Table) -> pa.Array:
    return pc.is_null(batch.column(DROP_STAGE))


def _ready_for(batch: pa.Table, label: str) -> tuple[pa.Table, pa.Array]:
    """The rows stage ``label`` works on (live, and not a pending row waiting for a later stage),
    and the batch with the resume mark of the rows that resume at this stage cleared."""
    live = is_live(batch)
    if RESUME_AT not in batch.schema.names or batch.column(RESUME_AT).null_count == batch.num_rows:
        return batch, live
    at = batch.column(RESUME_AT)
    here = pc.fill_null(pc.equal(at, pa.scalar(label)), False)
    waiting = pc.and_(pc.is_valid(at), pc.invert(here))
    cleared = pc.if_else(here, pa.nulls(batch.num_rows, pa.string()), at)
    batch = batch.set_column(batch.schema.get_field_index(RESUME_AT), RESUME_AT, cleared)
    return batch, pc.and_(live, pc.invert(waiting))


def waiting_rows(batch: pa.Table) -> pa.Array:
    """Pending rows fed back into a run that have not yet reached the stage they resume at."""
    if RESUME_AT not in batch.schema.names:
        return pa.array([False] * batch.num_rows)
    return pc.is_valid(batch.column(RESUME_AT))


def _concat(parts: list[pa.Table]) -> pa.Table:
    parts = [p for p in parts if p.num_rows]
    if not parts:
        return pa.table({})
    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables(parts, promote_options="permissive")


def _stage_view(batch: pa.Table) -> pa.Table:
    return batch.drop_columns([c for c in ENGINE_COLUMNS if c in batch.schema.names])


def _last_of_each_name(table: pa.Table) -> pa.Table:
    """A stage that appends a column the batch already has (rows fed back after it ran on them
    carry it; a batch mixing them with new rows has it as nulls there) makes two columns of one
    name: the stage's own, the last, is kept."""
    names = table.schema.names
    if len(set(names)) == len(names):
        return table
    keep = [i for i, n in enumerate(names) if n not in names[i + 1 :]]
    return pa.Table.from_arrays([table.column(i) for i in keep], schema=pa.schema([table.schema.field(i) for i in keep]))


def _fail(label: str, batch: pa.Table, exc: BaseException) -> StageError:
    if isinstance(exc, RowError):
        return StageError(f"stage {label} failed on row {exc.row_id!r}: {exc.cause_text}")
    ids = batch.column("id").to_pylist() if "id" in batch.schema.names and batch.num_rows else []
    where = f"row {ids[0]!r}" if len(ids) == 1 else (f"a batch of {len(ids)} rows (ids {ids[0]!r} .. {ids[-1]!r})" if ids else "a batch")
    return StageError(f"stage {label} failed on {where}: {type(exc).__name__}: {exc}")


def mark_drops(table: pa.Table, drops: Drops | None, stage_label: str) -> tuple[pa.Table, dict[str, int]]:
    """Set the drop columns of ``table`` for the rows ``drops`` marks; returns counts by rule."""
    if drops is None:
        return table, {}
    mask = np.asarray(drops.mask, dtype=bool)
    if not mask.any():
        return table, {}
    n = table.num_rows
    amask = pa.array(mask)

    def per_row(value: Any) -> pa.Array:
        if value is None:
            return pa.nulls(n, pa.string())
        if isinstance(value, str):
            return pc.if_else(amask, pa.scalar(value), pa.nulls(n, pa.string()))
        arr = value if isinstance(value, pa.Array) else pa.array(list(value), pa.string())
        return pc.if_else(amask, arr, pa.nulls(n, pa.string()))

    marks = {
        DROP_STAGE: pc.if_else(amask, pa.scalar(stage_label), pa.nulls(n, pa.string())),
        DROP_RULE: per_row(drops.rule),
        DROP_REASON: per_row(drops.reason if drops.reason is not None else drops.rule),
        DUPLICATE_OF: per_row(drops.duplicate_of),
    }
    transient = drops.transient
    if isinstance(transient, (bool, np.bool_)):
        retry = pa.array([True if m else None for m in mask] if transient else [None] * n, pa.bool_())
    else:
        flags = np.asarray(transient, dtype=bool) & mask
        retry = pa.array([True if f else None for f in flags], pa.bool_())
    # a rule left empty for a dropped row falls back to the stage's label
    marks[DROP_RULE] = pc.if_else(amask, pc.fill_null(marks[DROP_RULE], stage_label), marks[DROP_RULE])
    marks[DROP_RETRY] = retry
    for name, arr in marks.items():
        if name in table.schema.names:
            table = table.set_column(table.schema.get_field_index(name), name, arr)
        else:
            table = table.append_column(name, arr)
    rules = pc.value_counts(pc.filter(marks[DROP_RULE], amask))
    return table, {str(r["values"]): int(r["counts"]) for r in rules.to_pylist()}


def _live_part(stage: Stage[Any], label: str, batch: pa.Table) -> tuple[pa.Table, pa.Array, int, pa.Table, pa.Table] | None:
    """The live rows a stage works on (None when there are none): the batch (pending rows that
    resume at this stage unmarked), the mask, their count, the rows with the engine's columns,
    and the stage's view of them."""
    ensure_setup(stage)
    if batch.num_rows == 0:
        return None
    batch, live_mask = _ready_for(batch, label)
    n_live = pc.sum(live_mask).as_py() or 0
    if n_live == 0:
        return None
    live = batch if n_live == batch.num_rows else batch.filter(live_mask)
    return batch, live_mask, n_live, live, _stage_view(live)


def apply_stage(stage: Stage[Any], label: str, batch: pa.Table) -> tuple[pa.Table, BatchReport]:
    """Apply a one-to-one Stage or Filter to the live rows of ``batch``."""
    split = _live_part(stage, label, batch)
    if split is None:
        return batch, BatchReport()
    batch, live_mask, n_live, live, view = split
    t0 = time.perf_counter()
    try:
        result = stage.process(view)
    except Exception as exc:
        raise _fail(label, view, exc) from exc
    seconds = time.perf_counter() - t0
    out = result if isinstance(result, StageOutput) else StageOutput(result)
    if out.table.num_rows != live.num_rows:
        raise StageError(
            f"stage {label} returned {out.table.num_rows} rows for {live.num_rows}: a Stage returns one row per "
            "row (mark drops with StageOutput(drops=...)); use an Expand stage to make more or fewer rows"
        )
    table = _last_of_each_name(out.table)
    if POS not in table.schema.names:
        table = table.append_column(POS, live.column(POS))
    for col in ENGINE_COLUMNS:
        table = table.append_column(live.schema.field(col), live.column(col))
    table, dropped = mark_drops(table, out.drops, label)
    report = BatchReport(live.num_rows, sum(dropped.values()), live.num_rows, seconds, dict(out.counters))
    if n_live == batch.num_rows:
        return table, report
    dead = batch.filter(pc.invert(live_mask))
    return _concat([table, dead]), report


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def child_positions(parent_pos: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Positions of children: a function of (parent position, child number) only, in
    [2**62, 2**63), a range input positions (file index << 40 | offset) never reach."""
    with np.errstate(over="ignore"):
        h = _mix64(parent_pos.astype(np.uint64) ^ _mix64(k.astype(np.uint64) + np.uint64(1)))
    return ((h >> np.uint64(2)) | np.uint64(1 << 62)).astype(np.int64)


def child_weights(parent_w: np.ndarray, k: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Split each parent's weight exactly among its ``n`` children (integer shares)."""
    base = parent_w // n
    return base + (k < (parent_w - base * n)).astype(np.int64)


def apply_expand(stage: Expand[Any], label: str, batch: pa.Table) -> tuple[pa.Table, BatchReport]:
    """Apply an Expand stage: live parents become their children; dropped rows pass through."""
    split = _live_part(stage, label, batch)
    if split is None:
        return batch, BatchReport()
    batch, live_mask, n_live, live, view = split
    t0 = time.perf_counter()
    try:
        out: ExpandOutput = stage.expand_batch(view)
    except Exception as exc:
        raise _fail(label, view, exc) from exc
    seconds = time.perf_counter() - t0
    pidx = np.asarray(out.parent_index, dtype=np.int64)
    counts = _check_expand_output(label, out, pidx, live.num_rows)
    marked, dropped = _dropped_parents(label, out, live, counts)
    child_table = _children(label, out.children, live, pidx, counts) if len(pidx) else pa.table({})
    markers = _expanded_markers(label, live, counts > 0)
    report = BatchReport(live.num_rows, sum(dropped.values()), int(len(pidx)), seconds, dict(out.counters))
    dead = batch.filter(pc.invert(live_mask)) if n_live < batch.num_rows else pa.table({})
    # missing columns on either side (children's new columns, a parent's lack of parent_id) are nulls
    return _concat([child_table, marked, markers, dead]), report


def _check_expand_output(label: str, out: ExpandOutput, pidx: np.ndarray, parents: int) -> np.ndarray:
    """Each parent's number of children, once the output is checked to be well formed."""
    if out.children.num_rows != len(pidx):
        raise StageError(f"stage {label}: expand_batch returned {out.children.num_rows} children but {len(pidx)} parent indexes")
    if len(pidx) and (pidx.min() < 0 or pidx.max() >= parents or np.any(np.diff(pidx) < 0)):
        raise StageError(f"stage {label}: parent_index must be non-decreasing indexes into the batch")
    counts = np.bincount(pidx, minlength=parents)
    if out.drops is not None and (counts[np.asarray(out.drops.mask, dtype=bool)] > 0).any():
        raise StageError(f"stage {label}: a parent was both dropped and expanded")
    if PARENT_ID in out.children.schema.names:
        raise StageError(f"stage {label}: children must not set {PARENT_ID!r} (the engine sets it)")
    return counts


def _dropped_parents(label: str, out: ExpandOutput, live: pa.Table, counts: np.ndarray) -> tuple[pa.Table, dict[str, int]]:
    """The parents dropped (by the stage, or for having no children: rule ``no_output``), marked."""
    drop_mask = np.zeros(live.num_rows, dtype=bool) if out.drops is None else np.asarray(out.drops.mask, dtype=bool)
    childless = (counts == 0) & ~drop_mask
    rules: Any = out.drops.rule if out.drops is not None else None
    reasons: Any = out.drops.reason if out.drops is not None else None
    if childless.any():
        rules = _per_row(rules, live.num_rows)
        reasons = _per_row(reasons, live.num_rows)
        for i in np.flatnonzero(childless):
            rules[i], reasons[i] = "no_output", f"{label} produced no rows"
    parents_dropped = drop_mask | childless
    if not parents_dropped.any():
        return live.filter(pa.array(parents_dropped)), {}
    transient: Any = False
    if out.drops is not None and not isinstance(out.drops.transient, (bool, np.bool_)):
        transient = np.asarray(out.drops.transient, dtype=bool) & drop_mask
    elif out.drops is not None and out.drops.transient:
        transient = drop_mask
    marked, dropped = mark_drops(live, Drops(mask=parents_dropped, rule=rules, reason=reasons, transient=transient), label)
    return marked.filter(pa.array(parents_dropped)), dropped


def _children(label: str, children: pa.Table, live: pa.Table, pidx: np.ndarray, counts: np.ndarray) -> pa.Table:
    """The children with the engine's columns: ids ``<parent id>/<k>``, ``parent_id``, positions
    and weights derived from the parent's, the parent's columns they do not set."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = np.arange(len(pidx), dtype=np.int64) - starts[pidx]  # child k: its rank among its parent's children
    parent_cols = live.take(pa.array(pidx))
    parent_ids = parent_cols.column("id").cast(pa.string())
    cols: dict[str, Any] = {}
    reserved = {"id", PARENT_ID, *ENGINE_COLUMNS, POS}
    for name in parent_cols.schema.names:
        if name not in reserved:
            cols[name] = children.column(name) if name in children.schema.names else parent_cols.column(name)
    for name in children.schema.names:
        if name not in cols and name not in reserved:
            cols[name] = children.column(name)
    n = len(pidx)
    return pa.table({
        "id": pc.binary_join_element_wise(parent_ids, pa.array(k).cast(pa.string()), "/"),
        **cols,
        PARENT_ID: parent_ids,
        POS: pa.array(child_positions(parent_cols.column(POS).to_numpy(), k), pa.int64()),
        TASK: parent_cols.column(TASK),
        WEIGHT: pa.array(child_weights(parent_cols.column(WEIGHT).to_numpy(), k, counts[pidx]), pa.int64()),
        BORN: pa.array([label] * n, pa.string()),
        **{c: pa.nulls(n, pa.string()) for c in DROP_COLUMNS},
        DROP_RETRY: pa.nulls(n, pa.bool_()),
        RESUME_AT: pa.nulls(n, pa.string()),
    })


def _expanded_markers(label: str, live: pa.Table, expanded: np.ndarray) -> pa.Table:
    """A marker row per expanded parent (its id, position and lineage only; its weight moved to
    its children): the writer counts it for this stage and writes it nowhere."""
    if not expanded.any():
        return pa.table({})
    src = live.filter(pa.array(expanded))
    m = src.num_rows
    return pa.table({
        "id": src.column("id"),
        POS: src.column(POS),
        TASK: src.column(TASK),
        WEIGHT: pa.array(np.zeros(m, dtype=np.int64)),
        BORN: src.column(BORN),
        DROP_STAGE: pa.array([label] * m, pa.string()),
        DROP_RULE: pa.array([EXPANDED] * m, pa.string()),
        DROP_REASON: pa.nulls(m, pa.string()),
        DUPLICATE_OF: pa.nulls(m, pa.string()),
        DROP_RETRY: pa.nulls(m, pa.bool_()),
        RESUME_AT: pa.nulls(m, pa.string()),
    })


def _per_row(value: Any, n: int) -> list[Any]:
    if value is None or isinstance(value, str):
        return [value] * n
    return list(value)


def fix_null_types(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, pa.field(field.name, pa.string()), table.column(i).cast(pa.string()))
    return table


def with_engine_columns(table: pa.Table, task: int = 0) -> pa.Table:
    """Add the engine's columns a reader's rows start with (task, weight, lineage, drop marks)."""
    from ..rows import ROW_WEIGHT

    n = table.num_rows
    add: dict[str, pa.Array] = {
        TASK: pa.array(np.full(n, task, dtype=np.int64)),
        WEIGHT: pa.array(np.full(n, ROW_WEIGHT, dtype=np.int64)),
        BORN: pa.nulls(n, pa.string()),
        **{c: pa.nulls(n, pa.string()) for c in DROP_COLUMNS},
        DROP_RETRY: pa.nulls(n, pa.bool_()),
        RESUME_AT: pa.nulls(n, pa.string()),
    }
    if POS not in table.schema.names:
        add[POS] = pa.array(np.arange(n, dtype=np.int64))
    for name, arr in add.items():
        if name not in table.schema.names:
            table = table.append_column(name, arr)
    return table


def run_on_table(stage: Stage[Any], table: pa.Table, label: str | None = None) -> pa.Table:
    """Apply one stage to a plain table, as the engine would (for tests and notebooks): the
    engine's columns are added when missing; dropped rows stay, marked in ``_drop_*``."""
    batch = with_engine_columns(table)
    name = label or stage.name or type(stage).__name__
    out, _ = apply_expand(stage, name, batch) if isinstance(stage, Expand) else apply_stage(stage, name, batch)
    return out
