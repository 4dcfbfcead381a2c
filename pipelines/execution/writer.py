"""The writer: the last step of a Ray Data plan. Each call writes Parquet shards of one block's
kept rows (and dropped rows) straight into the table folders, records them in the run journal
per read task, and returns only their metadata; the driver commits that metadata as one version.

Before a global stage that is checkpointed, the same writer writes every row with the engine's
columns into the journal's checkpoint folder instead (``kind="ckpt"``).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from .. import fs, journal, pending
from ..rows import BORN, DROP_REASON, DROP_RETRY, DROP_RULE, DROP_STAGE, DUPLICATE_OF, EXPANDED, INTERNAL_COLUMNS, POS, RESUME_AT, ROW_WEIGHT, TASK, WEIGHT
from .apply import fix_null_types, is_live

#: schema of the dropped-rows table (``text`` is null for rows without text)
DROPPED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("duplicate_of", pa.string()),
    ]
)

#: what a write call returns to the driver: one row per shard written, one "counts" row per task
WRITE_RESULT_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string()),  # "main" | "dropped" | "pending" | "ckpt" | "counts"
        pa.field("task", pa.int64()),
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("rows", pa.int64()),
        pa.field("info", pa.string()),  # JSON: file stats / counts
    ]
)


@dataclasses.dataclass(frozen=True)
class WriteTarget:
    main_uri: str
    dropped_uri: str | None
    run_id: str
    shard_rows: int
    shard_bytes: int
    compression: str
    storage_options: dict[str, str]
    #: the journal attempt folder records go to (None: no journal)
    journal_uri: str | None = None
    #: write checkpoints (every row, engine columns kept) under this folder instead of the tables
    checkpoint_uri: str | None = None


def write_shards(table: pa.Table, uri: str, kind: str, target: WriteTarget, task: int) -> list[dict[str, Any]]:
    if table.num_rows == 0:
        return []
    filesystem, base = fs.filesystem(uri, target.storage_options, create=True)
    # at most shard_rows rows and roughly shard_bytes bytes (uncompressed) per shard
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    rows_per_shard = max(1, min(target.shard_rows, target.shard_bytes // per_row))
    compression = None if target.compression == "none" else target.compression
    out = []
    for start in range(0, table.num_rows, rows_per_shard):
        part = table.slice(start, rows_per_shard)
        name = f"part-{target.run_id}-{uuid.uuid4().hex[:12]}.{target.compression if compression else 'plain'}.parquet"
        path = f"{base.rstrip('/')}/{name}"
        pq.write_table(part, path, filesystem=filesystem, compression=compression)
        size = filesystem.get_file_info(path).size
        out.append(
            {
                "kind": kind,
                "task": task,
                "path": name,
                "size": int(size),
                "rows": part.num_rows,
                "info": json.dumps({"numRecords": part.num_rows, "modification_time": int(time.time() * 1000)}),
            }
        )
    return out


def count_rows(batch: pa.Table) -> dict[str, Any]:
    """Exact counts of one block, from the data: rows, drops by stage and rule, rows made by
    each Expand stage, input rows (weight)."""
    counts: dict[str, dict[str, int]] = {}
    dead_mask = pc.invert(is_live(batch))
    dead = batch.filter(dead_mask)
    if dead.num_rows:
        keys = pc.binary_join_element_wise(dead.column(DROP_STAGE), dead.column(DROP_RULE), "\x1f")
        for r in pc.value_counts(keys).to_pylist():
            stage, _, rule = str(r["values"]).partition("\x1f")
            counts.setdefault(stage, {})[rule] = counts.get(stage, {}).get(rule, 0) + int(r["counts"])
    born: dict[str, int] = {}
    born_col = batch.column(BORN)
    if born_col.null_count < batch.num_rows:
        for r in pc.value_counts(pc.drop_null(born_col)).to_pylist():
            born[str(r["values"])] = int(r["counts"])
    inputs = batch.num_rows - (batch.num_rows - born_col.null_count)
    markers = sum(rules.get(EXPANDED, 0) for rules in counts.values())
    out = {
        "dropped": {s: {r: n for r, n in rules.items() if r != EXPANDED} for s, rules in counts.items()},
        "expanded": {s: rules[EXPANDED] for s, rules in counts.items() if EXPANDED in rules},
        "born": born,
        "inputs": inputs,
        "rows": batch.num_rows - markers,
    }
    retry = _retry_rows(dead)
    if retry.num_rows:  # dropped for a transient reason: by stage, with one reason to show
        out["retry"], out["retry_reason"] = {}, {}
        for stage, rule, reason in zip(*(retry.column(c).to_pylist() for c in (DROP_STAGE, DROP_RULE, DROP_REASON))):
            out["retry"][stage] = out["retry"].get(stage, 0) + 1
            out["retry_reason"].setdefault(stage, f"{rule}: {reason}" if reason and reason != rule else str(rule))
    return out


def _retry_rows(dead: pa.Table) -> pa.Table:
    if DROP_RETRY not in dead.schema.names or dead.num_rows == 0:
        return dead.slice(0, 0)
    return dead.filter(pc.fill_null(dead.column(DROP_RETRY), False))


def _pending_table(retry: pa.Table) -> pa.Table:
    """Rows dropped for a transient reason as the next run reads them back: every column the row
    had (what earlier stages computed) and the stage to resume at, the engine's columns removed."""
    data = retry.drop_columns([c for c in INTERNAL_COLUMNS if c in retry.schema.names])
    return data.append_column(RESUME_AT, retry.column(DROP_STAGE)).append_column(pending.REASON, retry.column(DROP_REASON))


def _rows_hash(part: pa.Table) -> str:
    pos = np.sort(part.column(POS).to_numpy())
    return xxhash.xxh3_64_hexdigest(pos.tobytes()) + f"{part.num_rows:x}"


def write_block(batch: pa.Table, target: WriteTarget) -> pa.Table:
    """Write one block (split by read task) and return the metadata rows for the driver."""
    results: list[dict[str, Any]] = []
    if batch.num_rows == 0:
        return WRITE_RESULT_SCHEMA.empty_table()
    tasks = batch.column(TASK).to_numpy()
    for task in np.unique(tasks).tolist():
        part = batch.filter(pa.array(tasks == task)) if len(np.unique(tasks)) > 1 else batch
        results += _write_task_part(part, int(task), target)
    return pa.Table.from_pylist(results, schema=WRITE_RESULT_SCHEMA)


def _write_task_part(part: pa.Table, task: int, target: WriteTarget) -> list[dict[str, Any]]:
    counts = count_rows(part)
    if target.checkpoint_uri is not None:
        files = write_shards(fix_null_types(part), target.checkpoint_uri, "ckpt", target, task)
        kept = int(pc.sum(is_live(part)).as_py() or 0)
    else:
        live_mask = is_live(part)
        live = part.filter(live_mask).drop_columns([c for c in INTERNAL_COLUMNS if c in part.schema.names])
        files = write_shards(fix_null_types(live), target.main_uri, "main", target, task)
        kept = live.num_rows
        dead = part.filter(pc.invert(live_mask))
        retry = _retry_rows(dead)
        if retry.num_rows:  # not dropped for good: kept aside for the next run, not in the dropped table
            pending_files = write_shards(fix_null_types(_pending_table(retry)), fs.join(target.main_uri, pending.PENDING_DIR), "pending", target, task)
            files += pending_files
            dead = dead.filter(pc.invert(pc.fill_null(dead.column(DROP_RETRY), False)))
        if target.dropped_uri and dead.num_rows:
            dead = dead.filter(pc.not_equal(dead.column(DROP_RULE), pa.scalar(EXPANDED)))
            n = dead.num_rows
            text = dead.column("text").cast(pa.string()) if "text" in dead.schema.names else pa.nulls(n, pa.string())
            dropped = pa.table(
                {
                    "id": dead.column("id").cast(pa.string()),
                    "text": text,
                    "stage": dead.column(DROP_STAGE),
                    "rule": dead.column(DROP_RULE),
                    "reason": dead.column(DROP_REASON),
                    "duplicate_of": dead.column(DUPLICATE_OF),
                },
                schema=DROPPED_SCHEMA,
            )
            files += write_shards(dropped, target.dropped_uri, "dropped", target, task)
    counts["kept"] = kept
    weight = int(pc.sum(part.column(WEIGHT)).as_py() or 0)
    if target.journal_uri is not None and task < pending.TASK_BASE:  # rows fed back are not journaled
        record = {"weight": weight, "files": files, "counts": counts}
        if target.checkpoint_uri is None and "retry" in counts:
            # what the rows kept aside counted for: a run reusing this record feeds them back in
            record["pending_counts"] = count_rows(_retry_rows(part.filter(pc.invert(is_live(part)))))
        journal.record_write(target.journal_uri, task, _rows_hash(part), record, target.storage_options)
    return [*files, {"kind": "counts", "task": task, "path": "", "size": 0, "rows": kept, "info": json.dumps(counts)}]


def merge_counts(total: dict[str, Any], counts: dict[str, Any], sign: int = 1) -> None:
    """Add one block's counts into the run's totals (in place); ``sign=-1`` takes them out."""
    for key in ("inputs", "rows", "kept"):
        total[key] = total.get(key, 0) + sign * int(counts.get(key, 0))
    for key in ("expanded", "born", "retry"):
        d = total.setdefault(key, {})
        for k, v in counts.get(key, {}).items():
            d[k] = d.get(k, 0) + sign * int(v)
    if sign > 0:
        reasons = total.setdefault("retry_reason", {})
        for k, v in counts.get("retry_reason", {}).items():
            reasons.setdefault(k, v)
    dropped = total.setdefault("dropped", {})
    for stage, rules in counts.get("dropped", {}).items():
        for rule, n in rules.items():
            dropped.setdefault(stage, {})[rule] = dropped.get(stage, {}).get(rule, 0) + sign * int(n)


__all__ = ["DROPPED_SCHEMA", "WriteTarget", "write_block", "merge_counts", "ROW_WEIGHT"]
