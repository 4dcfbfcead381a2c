"""The saved MinHash LSH index of ``minhash_dedup`` (``save_index`` / ``against``) and file helpers.

An index part is one run's folder ``<root>/<run id>/`` holding

- ``docs/part-<first pos>-<n>.parquet``: one row per document of that run: ``pos`` (uint64, its
  ``_curate_pos``), ``id``, ``bands`` (fixed-size list of the LSH band keys), ``sig`` (the MinHash
  signature, fixed-size binary) and ``run`` (the folder name, dictionary-encoded);
- ``dropped.parquet``: ``pos`` of the documents that run dropped as near-duplicates.

A later run with ``against: DATASET[@VERSION]`` finds the parts through that version's commit
metadata (:func:`resolve_against`). Indexed documents become graph nodes
``OLD_BIT | part << 56 | pos`` (:func:`old_nodes`), a separate id space from the new run's
positions.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
from curate.pipelines.errors import ConfigError, DatasetError

#: node ids of documents from a saved index: this bit, the index part (7 bits), their old position
OLD_BIT = np.uint64(1 << 63)
PART_SHIFT = 56
POS_MASK = np.uint64((1 << PART_SHIFT) - 1)
INDEX_KIND = "minhash_lsh"
INDEX_FORMAT = 1


# ---------------------------------------------------------------- files


def filesystem(path: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(pyarrow filesystem, path in it) for a local path or URL, with the output's fsspec options."""
    from curate.pipelines.fs import filesystem as engine_filesystem

    return engine_filesystem(path, storage_options or {})  # type: ignore[no-any-return]


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def exists(path: str, storage_options: dict[str, Any] | None = None) -> bool:
    fs, p = filesystem(path, storage_options)
    return bool(fs.get_file_info(p).type.name != "NotFound")


def write_parquet(table: pa.Table, path: str, storage_options: dict[str, Any] | None = None) -> None:
    """Write `table` to `path` atomically (a temporary name, then a rename): a retried task
    rewrites the same name, never leaving half a file."""
    fs, p = filesystem(path, storage_options)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    tmp = f"{p}.tmp-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp, filesystem=fs, compression="zstd")
    fs.move(tmp, p)


def sig_matrix(col: pa.Array | pa.ChunkedArray, num_perm: int) -> npt.NDArray[np.uint32]:
    """(n, num_perm) uint32 view of a fixed_size_binary(4 * num_perm) column without nulls."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if n == 0:
        return np.empty((0, num_perm), dtype=np.uint32)
    if arr.null_count:
        raise ValueError("signature column has nulls")
    buf = arr.buffers()[1]
    width = 4 * num_perm
    raw = np.frombuffer(buf, dtype=np.uint8)[arr.offset * width : (arr.offset + n) * width]
    return raw.view("<u4").reshape(n, num_perm)


def sig_column(sigs: npt.NDArray[np.uint32]) -> pa.Array:
    n, k = sigs.shape
    data = np.ascontiguousarray(sigs, dtype="<u4")
    return pa.Array.from_buffers(pa.binary(4 * k), n, [None, pa.py_buffer(data.tobytes())])


# ---------------------------------------------------------------- writing an index


def write_docs_shard(
    run_dir: str,
    pos: npt.NDArray[np.uint64],
    ids: pa.Array | pa.ChunkedArray,
    bands: npt.NDArray[np.uint64],
    sigs: npt.NDArray[np.uint32],
    storage_options: dict[str, Any] | None = None,
) -> None:
    """One batch's index rows (see the module docstring)."""
    if int(pos.max()) > int(POS_MASK):
        raise RuntimeError("minhash_dedup save_index: input positions beyond 2**56 (more than 65,536 input files) are not supported")
    num_bands = bands.shape[1]
    band_col = pa.FixedSizeListArray.from_arrays(pa.array(bands.reshape(-1), pa.uint64()), num_bands)
    run = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(pos), np.int32)), pa.array([Path(run_dir.rstrip("/")).name]))
    table = pa.table({"pos": pos, "id": ids.cast(pa.string()), "bands": band_col, "sig": sig_column(sigs), "run": run})
    write_parquet(table, join(run_dir, "docs", f"part-{int(pos.min()):016x}-{len(pos)}.parquet"), storage_options)


def write_dropped(run_dir: str, pos: pa.Array | pa.ChunkedArray, storage_options: dict[str, Any] | None = None) -> None:
    write_parquet(pa.table({"pos": pos.cast(pa.uint64())}), join(run_dir, "dropped.parquet"), storage_options)


# ---------------------------------------------------------------- reading an index (`against`)


def resolve_against(ref: str, mine: dict[str, Any]) -> dict[str, Any]:
    """Find the saved index of ``DATASET[@VERSION]`` through its commit metadata and check that
    it was built with the parameters `mine`. Returns ``{"dataset", "version", "parts"}`` (parts:
    absolute paths or URLs, oldest first). Raises :class:`ConfigError` (before Ray starts)."""
    from curate.pipelines.store import history, parse_dataset_ref, table_uri

    path, version = parse_dataset_ref(ref)
    try:
        entries = history(path)
    except DatasetError as exc:
        raise ConfigError(f"against: {exc.message}", hint="name a curate dataset written with minhash_dedup save_index: true") from None
    if version is None:
        entry = max(entries, key=lambda e: e["version"]) if entries else None
    else:
        entry = next((e for e in entries if e["version"] == version), None)
    if entry is None:
        raise ConfigError(f"against: dataset {path} has no version {version}")
    found = [
        m["index"]
        for m in (entry["run"].get("stage_metadata") or {}).values()
        if isinstance(m, dict) and isinstance(m.get("index"), dict) and m["index"].get("kind") == INDEX_KIND
    ]
    if not found:
        raise ConfigError(
            f"against: {path} version {entry['version']} has no saved minhash index",
            hint="write that version with `minhash_dedup: {save_index: true}`",
        )
    index = found[-1]
    theirs = index.get("params", {})
    diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
    if diff:
        shown = ", ".join(f"{k}: index {a!r}, this stage {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ConfigError(
            f"against: the index of {path} version {entry['version']} was built with other parameters ({shown})",
            hint="use the same num_perm, ngram, char_ngrams, lowercase, seed, bands and rows as the run that saved it",
        )
    base = table_uri(path)
    parts = [part if "://" in part or os.path.isabs(part) else join(base, part) for part in index.get("parts", [])]
    if len(parts) >= 128:
        raise ConfigError(f"against: the index of {path} has {len(parts)} parts; at most 127 are supported")
    return {"dataset": base, "version": entry["version"], "parts": parts}


def docs_inputs(parts: list[str], storage_options: dict[str, Any] | None = None) -> list[str]:
    """The ``docs`` folders of the index parts that have one (read by the engine as extra inputs)."""
    return [join(part, "docs") for part in parts if exists(join(part, "docs"), storage_options)]


def dropped_nodes(parts: list[str], storage_options: dict[str, Any] | None = None) -> npt.NDArray[np.uint64]:
    """Sorted node ids of indexed documents their own run dropped (they are not in its dataset)."""
    nodes = []
    for i, part in enumerate(parts):
        path = join(part, "dropped.parquet")
        if not exists(path, storage_options):
            continue
        fs, p = filesystem(path, storage_options)
        pos = pq.read_table(p, filesystem=fs, columns=["pos"]).column("pos").to_numpy().astype(np.uint64)
        nodes.append(OLD_BIT | (np.uint64(i) << np.uint64(PART_SHIFT)) | (pos & POS_MASK))
    return np.sort(np.concatenate(nodes)) if nodes else np.empty(0, np.uint64)


def old_nodes(table: pa.Table, parts: list[str], dropped: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
    """Node ids of index rows (OLD_BIT | part << 56 | position in the run that saved it) and
    which rows count: rows of unknown runs, and rows that run itself dropped, do not."""
    part_of = {Path(part.rstrip("/")).name: i for i, part in enumerate(parts)}
    runs = table.column("run").to_pylist()
    part = np.array([part_of.get(r, -1) for r in runs], dtype=np.int64) if runs else np.empty(0, np.int64)
    pos = table.column("pos").to_numpy().astype(np.uint64)
    nodes = OLD_BIT | (np.maximum(part, 0).astype(np.uint64) << np.uint64(PART_SHIFT)) | (pos & POS_MASK)
    live = part >= 0
    if dropped.size:
        live &= ~np.isin(nodes, dropped)
    return nodes, live


__all__ = [
    "INDEX_FORMAT",
    "INDEX_KIND",
    "OLD_BIT",
    "docs_inputs",
    "dropped_nodes",
    "filesystem",
    "join",
    "old_nodes",
    "resolve_against",
    "sig_column",
    "sig_matrix",
    "write_docs_shard",
    "write_dropped",
    "write_parquet",
]
