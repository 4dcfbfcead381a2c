"""The JSONL reader (plain, .gz, .zst): blocks of lines parsed by Arrow's JSON reader when they
are clean, line by line (orjson) with exact file:line errors when they are not; byte ranges of large
uncompressed files read by several tasks."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import xxhash

from ..config import InputConfig
from ..errors import InputDataError
from ..rows import DROP_COLUMNS, POS
from .shared import POS_SHIFT, Batcher, ReadTask, display_path, open_input


def _line_number(path: str, offset: int, cfg: InputConfig) -> int:
    """1-based line number of the line starting at ``offset`` (counted only on the error path)."""
    count = 0
    with open_input(path, cfg.storage_options) as f:
        remaining = offset
        while remaining > 0:
            chunk = f.read(min(remaining, 16 * 1024**2))
            if not chunk:
                break
            count += chunk.count(b"\n")
            remaining -= len(chunk)
    return count + 1


JSONL_BLOCK_BYTES = 4 * 1024**2


def _iter_blocks(fh: Any, task: ReadTask) -> Iterator[tuple[bytes, int]]:
    """Blocks of whole lines, with the offset of their first byte: every line starting in the task's range."""
    offset = 0
    if task.start > 0:
        fh.seek(task.start - 1)
        offset = task.start - 1 + len(fh.readline())  # skip to the first line that starts in range
    end = task.end
    while end is None or offset < end:
        want = JSONL_BLOCK_BYTES if end is None else min(JSONL_BLOCK_BYTES, end - offset)
        block = fh.read(want)
        if not block:
            break
        if not block.endswith(b"\n"):
            block += fh.readline()  # finish the last line (it started before `end`)
        if getattr(fh, "error", None) is not None and not block.endswith(b"\n"):
            block = block[: block.rfind(b"\n") + 1]  # the stream broke inside this line: not a record
            if not block:
                break
        yield block, offset
        offset += len(block)


class _Tolerant:
    """A decompressed stream that stops, instead of raising, where the file is truncated or
    corrupt: everything before that point is read; ``error`` says what broke."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.error: BaseException | None = None

    def _guard(self, call: Any, *args: Any) -> bytes:
        import zlib

        errors: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error)
        try:
            import zstandard

            errors += (zstandard.ZstdError,)
        except ImportError:  # pragma: no cover
            pass
        try:
            return bytes(call(*args))
        except errors as exc:
            self.error = exc
            return b""

    def read(self, n: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < n and self.error is None:
            chunk = self._guard(self.fh.read, min(1 << 14, n - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def readline(self) -> bytes:
        return b"" if self.error is not None else self._guard(self.fh.readline)

    def seek(self, offset: int) -> int:
        return int(self.fh.seek(offset))


def _parse_block_fast(block: bytes, pos0: int, cfg: InputConfig) -> pa.Table | None:
    """The whole block with Arrow's JSON reader, when every line is a well-formed record.

    Returns None whenever anything is unusual (blank lines, a missing or non-string text, bad
    JSON, invalid UTF-8, ...): the caller then parses line by line and reports precisely.
    """
    import numpy as np
    import pyarrow.json as pajson

    if b"\n\n" in block or block.startswith(b"\n") or b"\r" in block:
        return None
    nl = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    n_lines = len(nl) + (0 if block.endswith(b"\n") else 1)
    try:
        table = pajson.read_json(
            pa.BufferReader(block),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(block) + 1),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if table.num_rows != n_lines or cfg.text_field not in table.column_names:
        return None
    try:
        table.validate(full=True)  # Arrow's JSON reader does not check UTF-8 by itself
    except pa.ArrowInvalid:
        return None
    text = table.column(cfg.text_field)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)) or text.null_count:
        return None
    n = table.num_rows
    if cfg.id_field in table.column_names and cfg.id_field != cfg.text_field:
        ids = table.column(cfg.id_field)
        if not (pa.types.is_string(ids.type) or pa.types.is_integer(ids.type) or pa.types.is_null(ids.type)) or ids.null_count:
            return None
        ids = ids.cast(pa.string())
    else:
        ids = None
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = nl[: n - 1] + 1
    cols: dict[str, Any] = {
        "id": ids if ids is not None else pa.array([xxhash.xxh3_128_hexdigest(t.encode("utf-8", "surrogatepass")) for t in text.to_pylist()], pa.string()),
        "text": text.cast(pa.string()),
    }
    for k in cfg.keep_fields or ():
        if k in table.column_names:
            col = table.column(k)
            if pa.types.is_struct(col.type) or pa.types.is_list(col.type):
                return None  # nested values: the line-by-line path keeps them as Python objects
            cols[k] = col.cast(pa.string()) if pa.types.is_null(col.type) else col
        else:
            cols[k] = pa.nulls(n, pa.string())
    cols[POS] = pa.array(starts + pos0, pa.int64())
    for c in DROP_COLUMNS:
        cols[c] = pa.nulls(n, pa.string())
    return pa.table(cols)


def read_jsonl_task(task: ReadTask, cfg: InputConfig) -> Iterator[pa.Table]:
    f = task.file
    base = f.index << POS_SHIFT
    batcher = Batcher(cfg)
    shown = display_path(f.path)
    lineno: int | None = 1 if task.start == 0 else None  # line numbers of a later range: on demand
    with open_input(f.path, cfg.storage_options) as raw:
        fh = _Tolerant(raw)
        end_offset = task.start
        for block, block_offset in _iter_blocks(fh, task):
            end_offset = block_offset + len(block)
            fast = _parse_block_fast(block, base | block_offset, cfg)
            if fast is not None:
                if len(batcher):
                    yield batcher.table()
                for start in range(0, fast.num_rows, cfg.read_batch_rows):
                    yield fast.slice(start, cfg.read_batch_rows)
                if lineno is not None:
                    lineno += block.count(b"\n")
                continue
            offset = block_offset
            for line in io.BytesIO(block):
                line_offset = offset
                offset += len(line)
                this_line = lineno
                if lineno is not None:
                    lineno += 1
                stripped = line.strip()
                if not stripped:
                    # counted, not an error: dropped by stage read (rule blank_line), so the rows
                    # read ("in" of stage read) equal the file's line count
                    # (a line number, or in a later byte range the line's byte offset: not counted per line)
                    at = f"{shown}:{this_line}" if this_line is not None else f"{shown}@{line_offset}"
                    batcher.add_bad(at, "", base | line_offset, "blank_line", f"{at}: blank line")
                    if len(batcher) >= cfg.read_batch_rows:
                        yield batcher.table()
                    continue
                problem = None
                try:
                    obj = orjson.loads(stripped)
                except orjson.JSONDecodeError as exc:
                    try:
                        stripped.decode("utf-8")
                        problem = ("malformed_json", f"malformed JSON: {exc}")
                    except UnicodeDecodeError as uexc:
                        problem = ("invalid_utf8", f"invalid UTF-8 at byte {uexc.start} of the line")
                else:
                    if not isinstance(obj, dict):
                        problem = ("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
                    else:
                        text = obj.get(cfg.text_field)
                        if text is None:
                            problem = ("missing_text", f"missing field {cfg.text_field!r}")
                        elif not isinstance(text, str):
                            problem = ("bad_text", f"field {cfg.text_field!r} is a {type(text).__name__}, not a string")
                if problem is not None:
                    rule, message = problem
                    n = this_line if this_line is not None else _line_number(f.path, line_offset, cfg)
                    where = f"{shown}:{n}"
                    if cfg.on_error == "fail":
                        raise InputDataError(
                            f"{where}: {message}",
                            hint="fix the line, or set input.on_error: skip to skip and record such lines",
                        )
                    batcher.add_bad(f"{shown}:{n}", line.decode("utf-8", "replace").rstrip("\n"), base | line_offset, rule, f"{where}: {message}")
                else:
                    batcher.add(obj.get(cfg.id_field), obj[cfg.text_field], base | line_offset, obj)
                if len(batcher) >= cfg.read_batch_rows:
                    yield batcher.table()
        if fh.error is not None:
            where = f"{shown}: the file is truncated or corrupt after byte {end_offset} of its decompressed data ({type(fh.error).__name__}: {fh.error})"
            if cfg.on_error == "fail":
                raise InputDataError(where, hint="re-fetch the file, or set input.on_error: skip to keep the rows before the break and record it")
            batcher.add_bad(f"{shown}:truncated", "", base | end_offset, "truncated_file", where)
    if len(batcher):
        yield batcher.table()
