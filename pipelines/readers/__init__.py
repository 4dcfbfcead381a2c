"""Readers: turn input files into Arrow batches with ``id``, ``text`` and ``_curate_pos``.

Planning (listing files, sizes, modification times, splitting large files into byte ranges) runs
in the driver before any data is read; reading runs in Ray tasks, one per :class:`ReadTask`,
streaming batches of ``read_batch_rows`` rows so a large file never sits whole in memory.

``_curate_pos`` is ``file_index << 40 | offset`` where offset is the byte offset of the line
(JSONL, in the decompressed stream) or the row number (Parquet, Delta): unique within a run and
the same on every run over the same files, whatever the number of workers.

This module plans the reading (files, read tasks, the columns an input gives) and runs one task;
the formats are read in :mod:`.readers_jsonl`, :mod:`.readers_columnar` (Parquet, Delta, text)
and :mod:`.readers_audio`, on what :mod:`.readers_io` shares (tasks, opening files, batching).
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import InputConfig
from ..errors import ConfigError, InputDataError
from ..rows import DROP_COLUMNS, POS
from .audio import AUDIO_COLUMNS, AUDIO_SUFFIXES, read_audio_file
from .columnar import BAD_TEXT_HINT, non_string_text, read_parquet_task, read_text_task
from .jsonl import read_jsonl_task
from .shared import POS_SHIFT, SPLIT_BYTES, InputFile, ReadTask, display_path, filesystem_of, looks_like_url, one_line, open_input


def task_to_row(task: ReadTask, number: int) -> dict[str, Any]:
    """A flat row (Arrow-friendly) describing read task ``number`` of the run."""
    f = task.file
    return {
        "task": number, "kind": "file", "index": f.index, "path": f.path, "size": f.size, "mtime": f.mtime,
        "start": task.start, "end": task.end, "rows": None,
    }


def source_task_rows(rows: list[dict[str, Any]], per_task: int, label: str) -> list[dict[str, Any]]:
    """Read tasks of a pipeline without input: its first stage's source rows, ``per_task`` a task.
    Each row keeps its ``id`` or gets ``<stage>:<n>``; its position is its number."""
    out = []
    per_task = max(1, per_task)
    for number, start in enumerate(range(0, len(rows), per_task)):
        chunk = []
        for i, row in enumerate(rows[start : start + per_task], start):
            chunk.append({"id": str(row["id"]) if row.get("id") is not None else f"{label}:{i}", **{k: v for k, v in row.items() if k != "id"}, POS: i})
        out.append({"task": number, "kind": "source", "index": -1, "path": "", "size": 0, "mtime": None, "start": start, "end": None,
                    "rows": orjson.dumps(chunk, option=orjson.OPT_SERIALIZE_NUMPY).decode()})
    return out


def read_source_task(item: dict[str, Any]) -> Iterator[pa.Table]:
    rows = orjson.loads(item["rows"])
    table = pa.Table.from_pylist(rows)
    n = table.num_rows
    for c in DROP_COLUMNS:
        table = table.append_column(c, pa.nulls(n, pa.string()))
    yield table.set_column(table.schema.get_field_index(POS), POS, table.column(POS).cast(pa.int64()))


def task_from_row(row: dict[str, Any]) -> ReadTask:
    return ReadTask(InputFile(row["index"], row["path"], row["size"], row["mtime"]), row["start"], row["end"])


def split_version(path: str) -> tuple[str, int | None]:
    base, sep, ver = path.rpartition("@")
    if sep and ver.isdigit():
        return base, int(ver)
    return path, None


def plan_inputs(cfg: InputConfig, where: str = "input.paths", since: dict[int, int | None] | None = None) -> list[InputFile]:
    """Expand paths and globs into files (sorted, de-duplicated). Raises ConfigError for paths that match nothing.
    ``since``: the since_version of each delta path (by index) when ``since_version: last`` was resolved."""
    out: list[str] = []
    metas: dict[str, tuple[int, float | None]] = {}
    missing: list[ConfigError] = []  # every path that matches nothing is reported, not only the first
    for i, raw in enumerate(cfg.paths):
        if cfg.format == "delta":
            base, version = split_version(raw)
            version = version if version is not None else cfg.version
            since_version = since.get(i) if since is not None else cfg.since_version
            if since_version == "last":
                raise ConfigError(f"{where}[{i}]: since_version: last is resolved from an output dataset's history: only `curate run` knows it",
                                  hint="give a version number here")
            shown = f"{where}[{i}]" + (f" (since_version: last = {since_version}, the version the output's newest run from it read)" if since is not None and since_version is not None else "")
            for f in delta_files(base, version, cfg.storage_options, shown, since_version):
                if f[0] not in metas:
                    out.append(f[0])
                    metas[f[0]] = (f[1], f[2])
            continue
        matched = _expand(raw, cfg)
        if not matched:
            missing.append(ConfigError(f"{where}[{i}]: no input files match {raw!r}"))
            continue
        for path, size, mtime in matched:
            if path not in metas:
                out.append(path)
                metas[path] = (size, mtime)
    if missing:
        from ..errors import combine_errors

        missing[-1].hint = "check the path (relative paths are relative to the current directory)"
        raise combine_errors(missing)
    return [InputFile(i, p, metas[p][0], metas[p][1]) for i, p in enumerate(out)]


_SUFFIXES = {
    "jsonl": (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz", ".jsonl.zst", ".json.zst", ".ndjson.zst", ".gz", ".zst"),
    "parquet": (".parquet", ".pq"),
    "text": (".txt", ".md", ".text", ".rst"),
    "audio": AUDIO_SUFFIXES,
}


def _expand(raw: str, cfg: InputConfig) -> list[tuple[str, int, float | None]]:
    suffixes = _SUFFIXES.get(cfg.format, ())
    if looks_like_url(raw):
        fs = filesystem_of(raw, cfg.storage_options)
        protocol = raw.split("://", 1)[0]
        if any(c in raw for c in "*?["):
            names = sorted(fs.glob(raw))
        elif fs.isdir(raw):
            names = sorted(n for n in fs.find(raw) if n.endswith(suffixes))
        elif fs.exists(raw):
            names = [raw]
        else:
            names = []
        result = []
        for n in names:
            info = fs.info(n)
            if info.get("type") == "directory":
                continue
            url = n if "://" in n else f"{protocol}://{n}"
            mtime = info.get("mtime") or info.get("LastModified")
            result.append((url, int(info.get("size") or 0), _as_timestamp(mtime)))
        return result
    if any(c in raw for c in "*?["):
        names = sorted(n for n in globlib.glob(raw, recursive=True) if os.path.isfile(n))
    elif os.path.isdir(raw):
        names = sorted(
            os.path.join(d, f) for d, _, fs_ in os.walk(raw) for f in fs_ if f.endswith(suffixes)
        )
    elif os.path.isfile(raw):
        names = [raw]
    else:
        names = []
    result = []
    for n in names:
        st = os.stat(n)
        result.append((os.path.abspath(n), st.st_size, st.st_mtime))
    return result


def _as_timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    ts = getattr(value, "timestamp", None)
    return float(ts()) if ts else None


def delta_files(uri: str, version: int | None, storage_options: dict[str, str], where: str, since_version: int | None = None) -> list[tuple[str, int, float | None]]:
    """The data files of a curate dataset at ``version`` (with ``since_version``: only those added after it)."""
    from ..errors import DatasetError
    from ..store import resolve_delta_input

    try:
        d = resolve_delta_input(uri, version, since_version, storage_options)
    except DatasetError as exc:
        raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
    return [(f, size, None) for f, size in d.files]


def split_tasks(files: list[InputFile], cfg: InputConfig, split_bytes: int = SPLIT_BYTES) -> list[ReadTask]:
    tasks: list[ReadTask] = []
    for f in files:
        splittable = cfg.format == "jsonl" and not f.path.endswith((".gz", ".zst")) and not looks_like_url(f.path)
        if splittable and f.size > 2 * split_bytes:
            for start in range(0, f.size, split_bytes):
                tasks.append(ReadTask(f, start, min(f.size, start + split_bytes)))
        else:
            tasks.append(ReadTask(f))
    return tasks


def read_task(task: ReadTask, cfg: InputConfig) -> Iterator[pa.Table]:
    """Read one task's rows as Arrow tables (runs inside a Ray task). A file that cannot be read
    (gone, no permission, an I/O error) is an :class:`InputDataError` naming it (exit 3)."""
    try:
        if cfg.format == "jsonl":
            yield from read_jsonl_task(task, cfg)
        elif cfg.format in ("parquet", "delta"):
            yield from read_parquet_task(task, cfg)
        elif cfg.format == "text":
            yield from read_text_task(task, cfg)
        elif cfg.format == "audio":
            f = task.file
            yield from read_audio_file(f.path, f.index << POS_SHIFT, display_path(f.path), cfg.on_error, cfg.storage_options)
        else:  # pragma: no cover - excluded by config validation
            raise ValueError(cfg.format)
    except (OSError, EOFError) as exc:
        raise InputDataError(f"{display_path(task.file.path)}: cannot read the file ({type(exc).__name__}: {one_line(exc)})") from None


def input_columns(cfg: InputConfig, files: list[InputFile]) -> list[str]:
    """The columns the input gives every row (for the plan check, before Ray starts)."""
    if cfg.format == "audio":
        return list(AUDIO_COLUMNS)
    if cfg.format in ("jsonl", "text"):
        return ["id", "text", *((cfg.keep_fields or []) if cfg.format == "jsonl" else [])]
    if not files and cfg.format != "delta":
        return ["id"]
    if files:
        with open_input(files[0].path, cfg.storage_options) as fh:
            try:
                schema = pq.ParquetFile(fh).schema_arrow
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputDataError(f"{display_path(files[0].path)}: not a readable Parquet file: {one_line(exc)}") from None
    else:  # a delta input with nothing (new) to read: the columns are the table's own
        from ..store import delta_schema

        base, version = split_version(cfg.paths[0])
        schema = delta_schema(base, version if version is not None else cfg.version, cfg.storage_options)
    names = list(schema.names)
    if cfg.text_field in names and cfg.on_error == "fail":
        bad = non_string_text(schema, cfg)
        if bad is not None:  # before Ray starts (the reader checks every file)
            raise InputDataError(f"{display_path(files[0].path)}: {bad}", hint=BAD_TEXT_HINT)
    cols = ["id"]
    if cfg.text_field in names:
        cols.append("text")
    keep = names if cfg.keep_fields is None else cfg.keep_fields
    cols += [c for c in keep if c not in (cfg.id_field, cfg.text_field)]
    return cols


__all__ = ["source_task_rows", "read_source_task", "InputFile", "ReadTask", "plan_inputs", "split_tasks", "read_task", "delta_files", "input_columns"]
