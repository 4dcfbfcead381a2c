"""``curate synth-report DATASET[@VERSION]``: a summary per grid cell of a generated dataset.

For each (format, audience, language) cell: ``generated`` (texts the engine returned: kept plus
dropped by later stages), ``kept``, ``duplicates`` (dropped by exact or near-duplicate removal),
``checks`` (dropped by ``synth_checks``, ``decontaminate`` or another filter), ``failed`` (requests
that failed for good), ``duplicate_rate`` and the kept texts' ``completion_tokens``. Built from the
version's rows, its dropped-rows table (``keep_dropped: true``) and the grid in its commit
metadata: a child's id ``<parent>/<k>`` names its cell (``k`` runs over formats x audiences x
languages x samples in that order), a grid row's id ``<seed>|<format>|<audience>|<language>``
too. In transformation mode a failed request drops its input row, which belongs to every cell:
it is counted in the stage's counters (``failed_requests``), not per cell.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

CELL = ("format", "audience", "language")
DUP_RULES = ("exact_duplicate", "near_duplicate")


def _grid(meta: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    for item in (meta.get("config") or {}).get("stages", []):
        for name in ("generate_textbooks", "curate.synth.textbooks:GenerateTextbooks"):
            if isinstance(item, dict) and name in item:
                return name, dict(item[name] or {})
    return None


def _cell_of(row_id: str, params: dict[str, Any]) -> tuple[str, str, str] | None:
    """The cell of a generated child or of a grid row from its id; None if not derivable."""
    parent, _, k = row_id.rpartition("/")
    if not parent:
        parent, k = row_id, ""
    if params.get("mode", "generation") == "generation":
        parts = parent.split("|")
        return (parts[1], parts[2], parts[3]) if len(parts) == 4 else None
    if not k.isdigit():
        return None
    formats = params.get("formats") or ["rewrite_textbook"]
    auds = params.get("audiences") or ["high_school"]
    langs = params.get("languages") or ["English"]
    cell = int(k) // int(params.get("samples") or 1)
    f, rest = divmod(cell, len(auds) * len(langs))
    a, lang = divmod(rest, len(langs))
    return (formats[f], auds[a], langs[lang]) if f < len(formats) else None


def cell_summary(dataset: str, version: int | None = None, storage_options: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    """``(polars DataFrame with one row per cell, the stage's counters)``."""
    import polars as pl
    from curate.pipelines import store
    from curate.pipelines.errors import DatasetError

    hist = store.history(dataset, storage_options)
    entry = hist[0] if version is None else next((e for e in hist if e["version"] == version), None)
    if entry is None:
        raise DatasetError(f"dataset {dataset} has no version {version}")
    meta = entry["run"] or {}
    grid = _grid(meta)
    if grid is None:
        raise DatasetError(f"version {entry['version']} of {dataset} was not written by a pipeline with generate_textbooks")
    label, params = grid
    counters: dict[str, Any] = next((s.get("counters", {}) for s in meta.get("stages", []) if s.get("stage") == label), {})
    kept = pl.read_delta(dataset, version=entry["version"], storage_options=storage_options)
    kept = kept.select([*CELL, pl.col("completion_tokens")]) if "format" in kept.columns else pl.DataFrame(schema={**dict.fromkeys(CELL, pl.Utf8), "completion_tokens": pl.Int64})
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}

    def cell(key: tuple[str, str, str]) -> dict[str, Any]:
        return rows.setdefault(key, {"kept": 0, "duplicates": 0, "checks": 0, "failed": 0, "completion_tokens": 0})

    for r in kept.group_by(list(CELL)).agg(pl.len().alias("n"), pl.col("completion_tokens").sum().alias("t")).iter_rows(named=True):
        c = cell((r["format"], r["audience"], r["language"]))
        c["kept"] += r["n"]
        c["completion_tokens"] += int(r["t"] or 0)
    dropped_info = meta.get("dropped_dataset") or {}
    if dropped_info.get("path") and dropped_info.get("version") is not None:
        dropped = pl.read_delta(dropped_info["path"], version=dropped_info["version"], storage_options=storage_options).select("id", "stage", "rule")
        for r in dropped.iter_rows(named=True):
            key = _cell_of(r["id"], params)
            if key is None:
                continue
            c = cell(key)
            if r["stage"] == label:
                c["failed"] += 1
            elif r["rule"] in DUP_RULES:
                c["duplicates"] += 1
            else:
                c["checks"] += 1
    out = pl.DataFrame([{"format": k[0], "audience": k[1], "language": k[2], **v} for k, v in sorted(rows.items())],
                       schema={**dict.fromkeys(CELL, pl.Utf8), "kept": pl.Int64, "duplicates": pl.Int64, "checks": pl.Int64, "failed": pl.Int64, "completion_tokens": pl.Int64})
    out = out.with_columns(generated=pl.col("kept") + pl.col("duplicates") + pl.col("checks"))
    out = out.with_columns(duplicate_rate=pl.when(pl.col("generated") > 0).then(pl.col("duplicates") / pl.col("generated")).otherwise(0.0).round(3))
    return out.select(*CELL, "generated", "kept", "duplicates", "duplicate_rate", "checks", "failed", "completion_tokens"), counters


@click.command("synth-report")
@click.argument("dataset")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def synth_report(dataset: str, as_json: bool) -> None:
    """A summary per grid cell (format x audience x language) of a dataset written by a pipeline
    with generate_textbooks: generated, kept, duplicates and their rate, dropped by checks,
    failed requests, tokens. DATASET may name a version (DATASET@3). The dropped counts need
    output.keep_dropped: true."""
    from curate.pipelines.errors import CurateError
    from rich.console import Console
    from rich.table import Table

    path, _, ver = dataset.partition("@")
    try:
        df, counters = cell_summary(path, int(ver) if ver else None)
    except CurateError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc.message}", highlight=False)
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(json.dumps({"cells": df.to_dicts(), "counters": counters}, indent=2))
        return
    table = Table(title=f"{dataset}: per grid cell", title_justify="left")
    for col in df.columns:
        table.add_column(col, justify="left" if col in CELL else "right")
    for r in df.iter_rows():
        table.add_row(*(str(v) for v in r))
    con = Console()
    con.print(table)
    if counters:
        con.print("generation: " + ", ".join(f"{k} {v:,}" for k, v in counters.items()), highlight=False)
