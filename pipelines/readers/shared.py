"""What the readers share: read tasks and their files, opening a file (local, fsspec URL,
compressed), its display name in messages, and the batcher that turns records into Arrow batches
with ``id``, ``text``, ``_curate_pos`` and the drop columns."""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any

import pyarrow as pa
import xxhash

from ..config import InputConfig
from ..rows import DROP_REASON, DROP_RULE, DROP_STAGE, DUPLICATE_OF, POS

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


def looks_like_url(path: str) -> bool:
    return "://" in path


def filesystem_of(path: str, storage_options: dict[str, str]) -> Any:
    import fsspec.core

    fs, _ = fsspec.core.url_to_fs(path, **storage_options)
    return fs


def open_input(path: str, storage_options: dict[str, str]) -> Any:
    """A buffered binary reader of the file's decompressed bytes (gzip and zstd by suffix)."""
    import fsspec

    raw = fsspec.open(path, "rb", **storage_options).open()
    if path.endswith(".gz"):
        return _Inflate(raw)
    if path.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True), buffer_size=1 << 16)
    return raw


def display_path(path: str) -> str:
    if looks_like_url(path):
        return path
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else path
    except ValueError:
        return path


class Batcher:
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


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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
