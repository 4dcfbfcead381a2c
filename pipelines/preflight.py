"""Everything checked before Ray starts: the inputs (files and read tasks, or a generator's source
rows, with their columns and lineage), the plan's columns, and that the output can be written."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from . import fs, journal, store
from .config import Pipeline
from .errors import ConfigError
from .plan import check_columns, check_sources, source_stage, stage_labels
from .readers import input_columns, plan_inputs, source_task_rows, split_tasks, task_to_row


@dataclasses.dataclass
class Inputs:
    files: list[Any]
    tasks: list[dict[str, Any]]
    columns: list[str]
    lineage: list[dict[str, Any]]
    #: pending files (rows kept aside for a transient failure) of the output version ``since_version:
    #: last`` starts after, fed back into this run; and that version
    pending: list[str] = dataclasses.field(default_factory=list)
    pending_version: int | None = None


def plan_run_inputs(pipeline: Pipeline) -> Inputs:
    cfg = pipeline.config
    labels = stage_labels(pipeline.stages)
    check_sources(pipeline)
    if cfg.input is None:
        first = source_stage(pipeline)
        rows = list(first.source_rows() or [])
        tasks = source_task_rows(rows, first.source_rows_per_task, labels[0])
        cols = ["id", *dict.fromkeys(k for r in rows[:100] for k in r if k != "id")]
        return Inputs([], tasks, cols, [{"source": labels[0], "rows": len(rows)}])
    last = since_last(pipeline)
    since = {i: v[0] for i, v in last.items()} if last is not None else None
    files = plan_inputs(cfg.input, since=since)
    tasks = [task_to_row(t, i) for i, t in enumerate(split_tasks(files, cfg.input))]
    lineage = [{"path": f.path, "size": f.size, "mtime": f.mtime} for f in files]
    if cfg.input.format == "delta":
        deltas = []
        for i, d in enumerate(_delta_inputs(cfg.input, since)):
            entry = {"delta": d.uri, "version": d.version, "since_version": d.since_version}
            if last is not None:  # where `last` came from
                entry["since"] = {"last": True, "output_version": last[i][1]}
            deltas.append(entry)
        lineage = deltas + lineage
    columns = input_columns(cfg.input, files)
    seen = [v[1] for v in (last or {}).values() if v[1] is not None]
    if not seen:
        return Inputs(files, tasks, columns, lineage)
    from . import pending

    out_version = max(seen)
    held = pending.files_of_version(fs.table_uri(cfg.output.dataset), out_version, cfg.output.storage_options)
    return Inputs(files, tasks, columns, lineage, held, out_version if held else None)


def since_last(pipeline: Pipeline) -> dict[int, tuple[int | None, int | None]] | None:
    """``since_version: last``: for each delta path (by index), the version of it that the newest
    version of the output dataset read, and that output version; ``(None, None)`` when none read
    it (the first run reads everything). None when the input does not ask for ``last``."""
    cfg = pipeline.config
    if cfg.input is None or cfg.input.format != "delta" or cfg.input.since_version != "last":
        return None
    from .readers import split_version

    out: dict[int, tuple[int | None, int | None]] = {}
    for i, raw in enumerate(cfg.input.paths):
        found = store.last_read_version(cfg.output.dataset, split_version(raw)[0], cfg.output.storage_options)
        out[i] = found if found is not None else (None, None)
    return out


def _delta_inputs(cfg: Any, since: dict[int, int | None] | None = None) -> list[Any]:
    from .readers import split_version

    out = []
    for i, raw in enumerate(cfg.paths):
        base, version = split_version(raw)
        since_version = since.get(i) if since is not None else cfg.since_version
        out.append(store.resolve_delta_input(fs.table_uri(base), version if version is not None else cfg.version, since_version, cfg.storage_options))
    return out


def check_output(pipeline: Pipeline) -> None:
    """The output can be written, before any work: not a plain file, a Delta table or a folder
    holding nothing else, a writable parent folder, a known URL scheme."""
    out = pipeline.config.output
    paths = [("output.dataset", out.dataset)] + ([("output.dropped_dataset", out.dropped_path)] if out.keep_dropped else [])
    for key, path in paths:
        where = pipeline.where(tuple(key.split(".")))
        if fs.is_url(path):
            import fsspec

            try:
                fsspec.get_filesystem_class(fs.scheme(path))
            except (ValueError, ImportError) as exc:
                raise ConfigError(f"{where}: {key}: cannot write to {path!r}: {exc}", hint="use a local path or a URL fsspec knows (s3://, gs://, ...)") from None
            continue
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise ConfigError(f"{where}: {key}: {path} is a file, not a dataset folder", hint="choose another output.dataset")
        if p.is_dir() and not (p / "_delta_log").is_dir():
            # a killed first run leaves its journal, its shards and stages' state (_curate_*): resumable
            other = [c.name for c in p.iterdir() if c.name != journal.JOURNAL_DIR and not c.name.startswith("_curate")
                     and not (c.name.startswith("part-") and c.name.endswith(".parquet"))]
            if other:
                raise ConfigError(
                    f"{where}: {key}: {path} is a folder that is not a curate dataset (it holds {', '.join(sorted(other)[:3])}{', ...' if len(other) > 3 else ''})",
                    hint="write to an empty or new folder, or to an existing curate dataset",
                )
        parent = next((q for q in [p, *p.parents] if q.exists()), Path("/"))
        if not os.access(parent, os.W_OK | os.X_OK):
            raise ConfigError(f"{where}: {key}: cannot write under {parent} (permission denied)", hint="choose a folder you can write to")


def validate_plan(pipeline: Pipeline) -> tuple[list[Any], list[str]]:
    """What ``curate validate`` checks beyond the file: inputs exist, columns line up, the output
    can be written."""
    check_output(pipeline)
    inputs = plan_run_inputs(pipeline)
    name = "source rows" if pipeline.config.input is None else "input"
    return inputs.files, check_columns(pipeline, inputs.columns, name)
