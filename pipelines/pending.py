"""Rows dropped for a transient reason: kept aside, fed back, and the limit that fails a run.

A stage drops a row *transiently* (:class:`~curate.pipelines.stage.DropRow` or
:class:`~curate.pipelines.stage.Drops` with ``transient``) when the row is not at fault: the
engine was down, a request timed out, a connection was refused. Such a row is not dropped for
good:

- The writer keeps it aside as *pending* (``<dataset>/_curate_pending/``), with every column it
  had when it failed (a transcript made before the caption failed is kept), and the label of the
  stage it failed in. The version's commit metadata lists the pending files (``pending``).
- The next run with ``since_version: last`` reads them back together with the new input rows;
  the stages before the one they failed in pass them through untouched, so nothing expensive is
  redone. A run that reuses a failed run's journal feeds that run's pending rows back the same way.
- A run in which a stage dropped more than ``max_failed_fraction`` of the rows reaching it for
  a transient reason fails (:class:`TransientFailureError`, exit 6) and publishes nothing.

No Ray here: the runner and the read tasks call these functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from . import fs, store
from .errors import TransientFailureError
from .readers.shared import POS_SHIFT
from .rows import DROP_COLUMNS, POS, RESUME_AT

#: the folder (inside the dataset) pending rows are written to
PENDING_DIR = "_curate_pending"
#: a pending row's last transient reason (shown by `curate show`, dropped when it is read back)
REASON = "_curate_retry_reason"
#: task numbers of read tasks that feed pending rows back (input tasks are numbered from 0)
TASK_BASE = 1 << 30
#: file index of the first pending file in a run's positions (input files are numbered from 0)
FILE_BASE = 1 << 21


def task_rows(paths: list[str], labels: list[str], first: int = 0) -> list[dict[str, Any]]:
    """Read tasks (as :func:`curate.pipelines.readers.task_to_row` makes them) that feed the
    pending files ``paths`` back into a run; ``first`` numbers them after earlier ones."""
    known = orjson.dumps(labels).decode()
    return [
        {"task": TASK_BASE + first + k, "kind": "pending", "index": FILE_BASE + first + k, "path": p, "size": 0, "mtime": None,
         "start": 0, "end": None, "rows": known}
        for k, p in enumerate(paths)
    ]


def journal_task_rows(dataset_uri: str, paths: list[str], labels: list[str], first: int) -> list[dict[str, Any]]:
    """:func:`task_rows` for pending files an earlier attempt's journal names (relative to the dataset)."""
    return task_rows([fs.join(dataset_uri, PENDING_DIR, p) for p in paths], labels, first=first)


def kept_aside_message(held: dict[str, Any]) -> str:
    """What a run that published with rows kept aside tells the user (``held``: :func:`summary`)."""
    by_stage = "; ".join(f"{k} {v:,} ({held.get('reasons', {}).get(k, '')})" for k, v in held.get("by_stage", {}).items())
    return f"{held.get('rows', 0):,} rows failed for a transient reason and are kept aside, retried by the next run (since_version: last): {by_stage}"


def read_task(item: dict[str, Any], storage_options: dict[str, str]) -> Iterator[pa.Table]:
    """The rows of one pending file as a reader gives them: new positions (unique in this run),
    the stage each resumes at (from the start when the pipeline no longer has that stage)."""
    import pyarrow.parquet as pq

    filesystem, path = fs.filesystem(item["path"], storage_options)
    table = pq.read_table(path, filesystem=filesystem)
    table = table.drop_columns([c for c in (REASON, POS) if c in table.schema.names])
    n = table.num_rows
    labels = set(orjson.loads(item["rows"]))
    at = table.column(RESUME_AT).to_pylist() if RESUME_AT in table.schema.names else [None] * n
    at = [a if a in labels else None for a in at]
    table = table.drop_columns([c for c in (RESUME_AT,) if c in table.schema.names])
    table = table.append_column(RESUME_AT, pa.array(at, pa.string()))
    table = table.append_column(POS, pa.array((np.int64(item["index"]) << POS_SHIFT) + np.arange(n, dtype=np.int64)))
    for c in DROP_COLUMNS:
        if c not in table.schema.names:
            table = table.append_column(c, pa.nulls(n, pa.string()))
    yield table


def files_of_version(dataset_uri: str, version: int, storage_options: dict[str, str]) -> list[str]:
    """The pending files a version of the dataset left (absolute URIs)."""
    meta = store.run_metadata(dataset_uri, version, storage_options)
    return [fs.join(dataset_uri, rel) for rel in (meta.get("pending") or {}).get("files", [])]


def reused_pending(reused: dict[int, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """From the journal records a run reuses: the pending files to feed back (relative to the
    dataset) and the counts they were recorded with (taken out of the run's totals)."""
    paths: list[str] = []
    counts: list[dict[str, Any]] = []
    for rec in reused.values():
        for w in rec.writes:
            files = [f["path"] for f in w["files"] if f["kind"] == "pending"]
            if files:
                paths += files
                counts.append(w.get("pending_counts") or {})
    return paths, counts


def summary(files: list[dict[str, Any]], totals: dict[str, Any]) -> dict[str, Any] | None:
    """The commit metadata's ``pending``: the files, their rows, by stage, one reason each."""
    if not files:
        return None
    return {
        "files": [fs.join(PENDING_DIR, f["path"]) for f in files],
        "rows": int(sum(int(f["rows"]) for f in files)),
        "by_stage": {k: v for k, v in (totals.get("retry") or {}).items() if v},
        "reasons": dict(totals.get("retry_reason") or {}),
    }


def check_failures(stage_stats: list[dict[str, Any]], limits: dict[str, float], totals: dict[str, Any]) -> None:
    """Fail the run when a stage dropped more than its ``max_failed_fraction`` (``limits``, by
    stage label) of the rows reaching it for a transient reason."""
    retry = totals.get("retry") or {}
    reasons = totals.get("retry_reason") or {}
    over = []
    for st in stage_stats:
        label = st["stage"]
        n, rows_in = int(retry.get(label, 0)), int(st["in"])
        limit = limits.get(label, 0.0)
        if n and rows_in and n / rows_in > limit:
            over.append(f"stage {label}: {n:,} of {rows_in:,} rows ({n / rows_in:.0%}) failed for a transient reason, more than its "
                        f"max_failed_fraction {limit:g}; e.g. {reasons.get(label, '?')}")
    if over:
        raise TransientFailureError(
            "the run failed and published nothing: " + "; ".join(over),
            hint="check that the engine or service named above is up and reachable, then run again: the rows are retried "
            "(nothing is lost; work done before the failing stage is reused). To publish despite such failures, raise the "
            "stage's run: {max_failed_fraction: ...}: the failed rows are then kept aside and retried by the next run",
        )


def drop_zero_counts(totals: dict[str, Any]) -> None:
    """Remove rules whose count fell to 0 when fed-back rows' earlier counts were taken out."""
    for stage, rules in list((totals.get("dropped") or {}).items()):
        for rule in [r for r, n in rules.items() if n == 0]:
            del rules[rule]
        if not rules:
            del totals["dropped"][stage]

