"""Readers: turn input files into Arrow batches with ``id``, ``text`` and ``_curate_pos``.

Planning (listing files, sizes, modification times, splitting large files into byte ranges) runs
in the driver before any data is read; reading runs in Ray tasks, one per :class:`ReadTask`,
streaming batches of ``read_batch_rows`` rows so a large file never sits whole in memory.

``_curate_pos`` is ``file_index << 40 | offset`` where offset is the byte offset of the line
(JSONL, in the decompressed stream) or the row number (Parquet, Delta): unique within a run and
the same on every run over the same files, whatever the number of workers.
"""

from __future__ import annotations

import dataclasses
import glob as globlib
import io
import os
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from .config import InputConfig
from .errors import ConfigError, InputDataError
from .readers_audio import AUDIO_COLUMNS, AUDIO_SUFFIXES, read_audio_file
from .stage import DROP_COLUMNS, DROP_REASON, DROP_RULE, DROP_STAGE, DUPLICATE_OF, POS

POS_SHIFT = 40
#: uncompressed JSONL files larger than this are read by several tasks in parallel
SPLIT_BYTES = 64 * 1024**2
MAX_RECORDED_TEXT = 64 * 1024


@dataclasses.dataclass(frozen=True)
class InputFile:
    index: int
    path: str
    size: int
    mtime: float | None


@dataclasses.dataclass(frozen=True)
class ReadTask:
    file: InputFile
    start: int = 0
    end: int | None = None  # byte range [start, end) of an uncompressed JSONL file
    version: int | None = None  # delta input


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


def _is_url(path: str) -> bool:
    return "://" in path


def _fs(path: str, storage_options: dict[str, str]) -> Any:
    import fsspec.core

    fs, _ = fsspec.core.url_to_fs(path, **storage_options)
    return fs


def _split_version(path: str) -> tuple[str, int | None]:
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
            base, version = _split_version(raw)
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
        from .config import combine_errors

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
    if _is_url(raw):
        fs = _fs(raw, cfg.storage_options)
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
    from .errors import DatasetError
    from .store import resolve_delta_input

    try:
        d = resolve_delta_input(uri, version, since_version, storage_options)
    except DatasetError as exc:
        raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
    return [(f, size, None) for f, size in d.files]


def split_tasks(files: list[InputFile], cfg: InputConfig, split_bytes: int = SPLIT_BYTES) -> list[ReadTask]:
    tasks: list[ReadTask] = []
    for f in files:
        splittable = cfg.format == "jsonl" and not f.path.endswith((".gz", ".zst")) and not _is_url(f.path)
        if splittable and f.size > 2 * split_bytes:
            for start in range(0, f.size, split_bytes):
                tasks.append(ReadTask(f, start, min(f.size, start + split_bytes)))
        else:
            tasks.append(ReadTask(f))
    return tasks


def _open(path: str, storage_options: dict[str, str]) -> Any:
    """A buffered binary reader of the file's decompressed bytes (gzip and zstd by suffix)."""
    import fsspec

    raw = fsspec.open(path, "rb", **storage_options).open()
    if path.endswith(".gz"):
        return _Inflate(raw)
    if path.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), buffer_size=1 << 16)
    return raw


def _display(path: str) -> str:
    if _is_url(path):
        return path
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else path
    except ValueError:
        return path


class _Batcher:
    """Accumulates rows and emits tables of a fixed schema."""

    def __init__(self, cfg: InputConfig) -> None:
        self.cfg = cfg
        self.clear()

    def clear(self) -> None:
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.pos: list[int] = []
        self.extra: dict[str, list[Any]] = {k: [] for k in self.cfg.keep_fields or ()}
        self.drops: list[tuple[str, str, str] | None] = []
        self.any_drop = False

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, doc_id: Any, text: str, pos: int, extra: dict[str, Any] | None = None) -> None:
        self.ids.append(xxhash.xxh3_128_hexdigest(text.encode("utf-8", "surrogatepass")) if doc_id is None else str(doc_id))
        self.texts.append(text)
        self.pos.append(pos)
        for k, col in self.extra.items():
            col.append(extra.get(k) if extra else None)
        self.drops.append(None)

    def add_bad(self, doc_id: str, raw: str, pos: int, rule: str, reason: str) -> None:
        self.ids.append(doc_id)
        self.texts.append(raw[:MAX_RECORDED_TEXT])
        self.pos.append(pos)
        for col in self.extra.values():
            col.append(None)
        self.drops.append(("read", rule, reason))
        self.any_drop = True

    def table(self) -> pa.Table:
        cols: dict[str, pa.Array] = {
            "id": pa.array(self.ids, pa.string()),
            "text": pa.array(self.texts, pa.string()),
        }
        for k, values in self.extra.items():
            arr = pa.array(values)
            cols[k] = arr.cast(pa.string()) if pa.types.is_null(arr.type) else arr
        cols[POS] = pa.array(self.pos, pa.int64())
        n = len(self.texts)
        if self.any_drop:
            cols[DROP_STAGE] = pa.array([d[0] if d else None for d in self.drops], pa.string())
            cols[DROP_RULE] = pa.array([d[1] if d else None for d in self.drops], pa.string())
            cols[DROP_REASON] = pa.array([d[2] if d else None for d in self.drops], pa.string())
        else:
            for c in (DROP_STAGE, DROP_RULE, DROP_REASON):
                cols[c] = pa.nulls(n, pa.string())
        cols[DUPLICATE_OF] = pa.nulls(n, pa.string())
        table = pa.table(cols)
        self.clear()
        return table


def read_task(task: ReadTask, cfg: InputConfig) -> Iterator[pa.Table]:
    """Read one task's rows as Arrow tables (runs inside a Ray task). A file that cannot be read
    (gone, no permission, an I/O error) is an :class:`InputDataError` naming it (exit 3)."""
    try:
        if cfg.format == "jsonl":
            yield from _read_jsonl(task, cfg)
        elif cfg.format in ("parquet", "delta"):
            yield from _read_parquet(task, cfg)
        elif cfg.format == "text":
            yield from _read_text(task, cfg)
        elif cfg.format == "audio":
            f = task.file
            yield from read_audio_file(f.path, f.index << POS_SHIFT, _display(f.path), cfg.on_error, cfg.storage_options)
        else:  # pragma: no cover - excluded by config validation
            raise ValueError(cfg.format)
    except (OSError, EOFError) as exc:
        raise InputDataError(f"{_display(task.file.path)}: cannot read the file ({type(exc).__name__}: {_one_line(exc)})") from None


def _line_number(path: str, offset: int, cfg: InputConfig) -> int:
    """1-based line number of the line starting at ``offset`` (counted only on the error path)."""
    count = 0
    with _open(path, cfg.storage_options) as f:
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


class _Inflate(io.RawIOBase):
    """gzip (multi-member) decompression that hands out every byte it could decompress before
    reporting a truncated or corrupt stream (``gzip.GzipFile`` loses its buffered tail)."""

    def __init__(self, raw: Any) -> None:
        import zlib

        self.raw = raw
        self._zlib = zlib
        self.d = zlib.decompressobj(31)
        self.buf = b""
        self.started = False
        self.done = False

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while not self.buf and not self.done:
            chunk = self.raw.read(1 << 16)
            if not chunk:
                if self.started and not self.d.eof:
                    raise EOFError("Compressed file ended before the end-of-stream marker was reached")
                self.done = True
                return
            self.started = True
            self.buf = self.d.decompress(chunk)
            while self.d.eof and self.d.unused_data:  # the next gzip member
                rest = self.d.unused_data
                self.d = self._zlib.decompressobj(31)
                self.buf += self.d.decompress(rest)
            if self.d.eof:
                self.started = False

    def readinto(self, b: Any) -> int:
        self._fill()
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n

    def readline(self, size: int | None = -1) -> bytes:
        parts = []
        while True:
            self._fill()
            if not self.buf:
                break
            i = self.buf.find(b"\n")
            if i >= 0:
                parts.append(self.buf[: i + 1])
                self.buf = self.buf[i + 1 :]
                break
            parts.append(self.buf)
            self.buf = b""
        return b"".join(parts)

    def close(self) -> None:
        self.raw.close()
        super().close()


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


def _read_jsonl(task: ReadTask, cfg: InputConfig) -> Iterator[pa.Table]:
    f = task.file
    base = f.index << POS_SHIFT
    batcher = _Batcher(cfg)
    shown = _display(f.path)
    lineno: int | None = 1 if task.start == 0 else None  # line numbers of a later range: on demand
    with _open(f.path, cfg.storage_options) as raw:
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


_BAD_TEXT_HINT = (
    "the text column must hold strings, as in JSONL inputs (where a number is rejected too): convert the column, "
    "read another column with input.text_field, or set input.on_error: skip to drop and record such rows"
)


def _non_string_text(schema: pa.Schema, cfg: InputConfig) -> str | None:
    """Why the text column cannot be read as text (it is not a string column), or None.

    Numbers are not converted to text: a JSONL record whose text is a number fails (or is skipped)
    as well, so both formats treat the same data the same way."""
    t = schema.field(cfg.text_field).type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t) or str(t) == "string_view":
        return None
    return f"column {cfg.text_field!r} is {t}, not a string"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_parquet(task: ReadTask, cfg: InputConfig) -> Iterator[pa.Table]:
    f = task.file
    base = f.index << POS_SHIFT
    shown = _display(f.path)
    with _open(f.path, cfg.storage_options) as fh:
        try:
            pf = pq.ParquetFile(fh)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputDataError(f"{shown}: not a readable Parquet file: {_one_line(exc)}") from None
        names = list(pf.schema_arrow.names)
        has_text = cfg.text_field in names
        if not has_text and cfg.text_field != "text":
            raise InputDataError(
                f"{shown}: no column {cfg.text_field!r} (columns: {', '.join(sorted(names))})",
                hint="set input.text_field to the column holding the text",
            )
        bad_text = _non_string_text(pf.schema_arrow, cfg) if has_text else None
        if bad_text is not None and cfg.on_error == "fail":
            raise InputDataError(f"{shown}: {bad_text}", hint=_BAD_TEXT_HINT)
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
                where = f"{shown}: the Parquet file is corrupt after row {row} ({type(exc).__name__}: {_one_line(exc)})"
                if cfg.on_error == "fail":
                    raise InputDataError(where, hint="re-fetch or rewrite the file, or set input.on_error: skip to keep the rows before the break and record it") from None
                # on_error: skip: the rows before the break were yielded; the break is one dropped row
                cols: dict[str, Any] = {"id": pa.array([f"{shown}:corrupt"], pa.string())}
                if has_text:
                    cols["text"] = pa.array([""], pa.string())
                for k in keep:
                    cols[k] = pa.nulls(1, pf.schema_arrow.field(k).type) if k in names else pa.nulls(1, pa.string())
                cols[POS] = pa.array([base + row], pa.int64())
                cols[DROP_STAGE] = pa.array(["read"], pa.string())
                cols[DROP_RULE] = pa.array(["corrupt_file"], pa.string())
                cols[DROP_REASON] = pa.array([where], pa.string())
                cols[DUPLICATE_OF] = pa.nulls(1, pa.string())
                yield pa.table(cols)
                break
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
            positions = pa.array(range(base + row, base + row + n), pa.int64())
            if cfg.id_field in names and cfg.id_field != cfg.text_field:
                ids = rb.column(cfg.id_field).cast(pa.string())
            elif text is not None and bad_text is None:
                ids = pa.array([xxhash.xxh3_128_hexdigest(t.encode()) if t is not None else None for t in text.to_pylist()], pa.string())
            else:  # no text to hash: the row's place in the input names it
                ids = pa.array([f"{shown}:{row + i}" for i in range(n)], pa.string())
            cols = {"id": ids}
            if text is not None:
                cols["text"] = text
            for k in keep:
                cols[k] = rb.column(k) if k in names else pa.nulls(n, pa.string())
            cols[POS] = positions
            for c in DROP_COLUMNS:
                cols[c] = pa.nulls(n, pa.string())
            row += n
            table = pa.table(cols)
            if bad_text is not None:
                import pyarrow.compute as pc

                table = table.set_column(table.schema.get_field_index("text"), "text", pc.fill_null(table.column("text"), ""))
                for c, v in ((DROP_STAGE, "read"), (DROP_RULE, "bad_text"), (DROP_REASON, f"{shown}: {bad_text}")):
                    table = table.set_column(table.schema.get_field_index(c), c, pa.array([v] * n, pa.string()))
            elif text is not None and text.null_count:
                table = _drop_null_text(table, shown, cfg)
            yield table


def input_columns(cfg: InputConfig, files: list[InputFile]) -> list[str]:
    """The columns the input gives every row (for the plan check, before Ray starts)."""
    if cfg.format == "audio":
        return list(AUDIO_COLUMNS)
    if cfg.format in ("jsonl", "text"):
        return ["id", "text", *((cfg.keep_fields or []) if cfg.format == "jsonl" else [])]
    if not files and cfg.format != "delta":
        return ["id"]
    if files:
        with _open(files[0].path, cfg.storage_options) as fh:
            try:
                schema = pq.ParquetFile(fh).schema_arrow
            except (pa.ArrowInvalid, OSError) as exc:
                raise InputDataError(f"{_display(files[0].path)}: not a readable Parquet file: {_one_line(exc)}") from None
    else:  # a delta input with nothing (new) to read: the columns are the table's own
        from .store import delta_schema

        base, version = _split_version(cfg.paths[0])
        schema = delta_schema(base, version if version is not None else cfg.version, cfg.storage_options)
    names = list(schema.names)
    if cfg.text_field in names and cfg.on_error == "fail":
        bad = _non_string_text(schema, cfg)
        if bad is not None:  # before Ray starts (the reader checks every file)
            raise InputDataError(f"{_display(files[0].path)}: {bad}", hint=_BAD_TEXT_HINT)
    cols = ["id"]
    if cfg.text_field in names:
        cols.append("text")
    keep = names if cfg.keep_fields is None else cfg.keep_fields
    cols += [c for c in keep if c not in (cfg.id_field, cfg.text_field)]
    return cols


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


def _read_text(task: ReadTask, cfg: InputConfig) -> Iterator[pa.Table]:
    f = task.file
    shown = _display(f.path)
    batcher = _Batcher(cfg)
    with _open(f.path, cfg.storage_options) as fh:
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


__all__ = ["source_task_rows", "read_source_task", "InputFile", "ReadTask", "plan_inputs", "split_tasks", "read_task", "delta_files", "input_columns"]
