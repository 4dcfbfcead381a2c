"""The Parquet and Delta reader (row groups streamed in batches; a text column that is not a string
column is refused or recorded, never converted) and the text reader (one document per file)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from ..config import InputConfig
from ..errors import InputDataError
from ..rows import DROP_COLUMNS, DROP_REASON, DROP_RULE, DROP_STAGE, DUPLICATE_OF, POS
from .shared import POS_SHIFT, Batcher, ReadTask, display_path, one_line, open_input

BAD_TEXT_HINT = (
    "the text column must hold strings, as in JSONL inputs (where a number is rejected too): convert the column, "
    "read another column with input.text_field, or set input.on_error: skip to drop and record such rows"
)


def non_string_text(schema: pa.Schema, cfg: InputConfig) -> str | None:
    """Why the text column cannot be read as text (it is not a string column), or None.

    Numbers are not converted to text: a JSONL record whose text is a number fails (or is skipped)
    as well, so both formats treat the same data the same way."""
    t = schema.field(cfg.text_field).type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t) or str(t) == "string_view":
        return None
    return f"column {cfg.text_field!r} is {t}, not a string"


def read_parquet_task(task: ReadTask, cfg: InputConfig) -> Iterator[pa.Table]:
    f = task.file
    base = f.index << POS_SHIFT
    shown = display_path(f.path)
    with open_input(f.path, cfg.storage_options) as fh:
        try:
            pf = pq.ParquetFile(fh)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputDataError(f"{shown}: not a readable Parquet file: {one_line(exc)}") from None
        names = list(pf.schema_arrow.names)
        has_text = cfg.text_field in names
        if not has_text and cfg.text_field != "text":
            raise InputDataError(
                f"{shown}: no column {cfg.text_field!r} (columns: {', '.join(sorted(names))})",
                hint="set input.text_field to the column holding the text",
            )
        bad_text = non_string_text(pf.schema_arrow, cfg) if has_text else None
        if bad_text is not None and cfg.on_error == "fail":
            raise InputDataError(f"{shown}: {bad_text}", hint=BAD_TEXT_HINT)
        keep = [c for c in (names if cfg.keep_fields is None else cfg.keep_fields) if c not in (cfg.id_field, cfg.text_field)]
        wanted = [c for c in (cfg.id_field, cfg.text_field, *keep) if c in names]
        row = 0
        batches = pf.iter_batches(batch_size=cfg.read_batch_rows, columns=list(dict.fromkeys(wanted)))
        while True:
            try:
                rb = next(batches)
            except StopIteration:
                break
            except (OSError, EOFError, ValueError, pa.ArrowException) as exc:
                # a corrupt page or row group: name the file and where it broke, as for a truncated .gz
                where = f"{shown}: the Parquet file is corrupt after row {row} ({type(exc).__name__}: {one_line(exc)})"
                if cfg.on_error == "fail":
                    raise InputDataError(where, hint="re-fetch or rewrite the file, or set input.on_error: skip to keep the rows before the break and record it") from None
                # on_error: skip: the rows before the break were yielded; the break is one dropped row
                yield _corrupt_row(shown, where, base + row, has_text, keep, pf.schema_arrow)
                break
            table = _parquet_rows(rb, cfg, shown, base, row, has_text, bad_text, keep, names)
            row += rb.num_rows
            yield table


def _corrupt_row(shown: str, where: str, pos: int, has_text: bool, keep: list[str], schema: pa.Schema) -> pa.Table:
    """The one dropped row (rule ``corrupt_file``) that stands for where a Parquet file broke."""
    cols: dict[str, Any] = {"id": pa.array([f"{shown}:corrupt"], pa.string())}
    if has_text:
        cols["text"] = pa.array([""], pa.string())
    for k in keep:
        cols[k] = pa.nulls(1, schema.field(k).type) if k in schema.names else pa.nulls(1, pa.string())
    cols[POS] = pa.array([pos], pa.int64())
    cols[DROP_STAGE] = pa.array(["read"], pa.string())
    cols[DROP_RULE] = pa.array(["corrupt_file"], pa.string())
    cols[DROP_REASON] = pa.array([where], pa.string())
    cols[DUPLICATE_OF] = pa.nulls(1, pa.string())
    return pa.table(cols)


def _parquet_rows(rb: pa.RecordBatch, cfg: InputConfig, shown: str, base: int, row: int, has_text: bool, bad_text: str | None,
                  keep: list[str], names: list[str]) -> pa.Table:
    """One batch of a Parquet file as rows: id, text, kept columns, positions and drop marks (a
    text column of the wrong type drops every row as ``bad_text``; a null text, as configured)."""
    n = rb.num_rows
    text = None
    if has_text:
        col = rb.column(cfg.text_field)
        if bad_text is None:
            text = col.cast(pa.string())
        else:  # kept as it reads in the dropped-rows table, when it can be shown as text
            try:
                text = col.cast(pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                text = pa.nulls(n, pa.string())
    if cfg.id_field in names and cfg.id_field != cfg.text_field:
        ids = rb.column(cfg.id_field).cast(pa.string())
    elif text is not None and bad_text is None:
        ids = pa.array([xxhash.xxh3_128_hexdigest(t.encode()) if t is not None else None for t in text.to_pylist()], pa.string())
    else:  # no text to hash: the row's place in the input names it
        ids = pa.array([f"{shown}:{row + i}" for i in range(n)], pa.string())
    cols: dict[str, Any] = {"id": ids}
    if text is not None:
        cols["text"] = text
    for k in keep:
        cols[k] = rb.column(k) if k in names else pa.nulls(n, pa.string())
    cols[POS] = pa.array(range(base + row, base + row + n), pa.int64())
    for c in DROP_COLUMNS:
        cols[c] = pa.nulls(n, pa.string())
    table = pa.table(cols)
    if bad_text is not None:
        import pyarrow.compute as pc

        table = table.set_column(table.schema.get_field_index("text"), "text", pc.fill_null(table.column("text"), ""))
        for c, v in ((DROP_STAGE, "read"), (DROP_RULE, "bad_text"), (DROP_REASON, f"{shown}: {bad_text}")):
            table = table.set_column(table.schema.get_field_index(c), c, pa.array([v] * n, pa.string()))
    elif text is not None and text.null_count:
        table = _drop_null_text(table, shown, cfg)
    return table


def _drop_null_text(table: pa.Table, shown: str, cfg: InputConfig) -> pa.Table:
    import pyarrow.compute as pc

    missing = pc.is_null(table.column("text"))
    if cfg.on_error == "fail":
        raise InputDataError(f"{shown}: {pc.sum(missing).as_py()} rows have a null {cfg.text_field!r}", hint="set input.on_error: skip to skip and record them")
    n = table.num_rows
    stage = pc.if_else(missing, pa.scalar("read"), pa.nulls(n, pa.string()))
    table = table.set_column(table.schema.get_field_index(DROP_STAGE), DROP_STAGE, stage)
    table = table.set_column(table.schema.get_field_index(DROP_RULE), DROP_RULE, pc.if_else(missing, pa.scalar("missing_text"), pa.nulls(n, pa.string())))
    table = table.set_column(table.schema.get_field_index(DROP_REASON), DROP_REASON, pc.if_else(missing, pa.scalar(f"{shown}: null text"), pa.nulls(n, pa.string())))
    return table.set_column(table.schema.get_field_index("text"), "text", pc.fill_null(table.column("text"), ""))


def read_text_task(task: ReadTask, cfg: InputConfig) -> Iterator[pa.Table]:
    f = task.file
    shown = display_path(f.path)
    batcher = Batcher(cfg)
    with open_input(f.path, cfg.storage_options) as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if cfg.on_error == "fail":
            raise InputDataError(f"{shown}: invalid UTF-8 at byte {exc.start}", hint="set input.on_error: skip to skip and record such files") from None
        batcher.add_bad(shown, data.decode("utf-8", "replace"), f.index << POS_SHIFT, "invalid_utf8", f"{shown}: invalid UTF-8 at byte {exc.start}")
    else:
        batcher.add(shown, text, f.index << POS_SHIFT)
    yield batcher.table()
