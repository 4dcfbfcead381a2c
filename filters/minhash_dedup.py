"""``minhash_dedup``: drop near-duplicate documents (MinHash + LSH), distributed on Ray.

How it runs (a :class:`~curate.pipelines.stage.GlobalStage` with two rounds; see
``ray_adapter._run_global`` for the protocol)::

    round 1  keys    per batch, natively: shingles -> MinHash signature -> ``bands`` LSH keys;
                     one key row (band key, _curate_pos) per document and band. The signature
                     never leaves the task (unless saved to the index).
             reduce  rows hash-partitioned by band key: documents sharing a key in some band are
                     candidate pairs (all pairs of a bucket up to ``max_bucket_size`` documents,
                     larger buckets as a star on their first document plus a chain).
             resolve (driver) the distinct candidate pairs (small: a few per near-duplicate doc).
    round 2  keys    only the documents of candidate pairs: one row per (pair, side) with the
                     text (``verify``) and/or the signature, keyed by pair.
             reduce  both sides of each pair meet: exact Jaccard of the shingle sets (``verify``),
                     else the MinHash estimate; accepted if >= ``threshold``.
             resolve (driver) union-find over accepted pairs (Rust); one keeper per cluster.

Memory: a task holds one batch (texts, signatures, band keys); the shuffles move 16-byte key
rows and, in round 2, only the candidate documents. No process sees all signatures.

Deterministic: candidate pairs are a set, checks are pure functions of the two documents, the
keeper is chosen by a total order (policy, then ``_curate_pos``), so the kept set does not depend
on batch sizes, partitions or the number of workers.

``keep``: ``first`` keeps the document with the smallest ``_curate_pos`` (input order: file
order, then position in the file; stable across runs and unique, unlike ids, which may repeat or
compare as strings); ``longest`` the longest text (characters); ``score`` the highest value of
``score_field`` (nulls lowest). Ties go to the smallest ``_curate_pos``.

Incremental dedup: ``save_index: true`` saves the LSH index of this run's documents (band keys,
signatures, ids) as Parquet under ``<output dataset>/_curate_index/minhash/<run id>/`` (or under
``index_dir``) and records its location in the commit metadata (``stage_metadata``). A later run
with ``against: DATASET[@VERSION]`` finds the index through that version's commit metadata and
also drops new documents that are near-duplicates of indexed ones (``duplicate_of`` is the old
id; old documents are never dropped), without recomputing old signatures. New-old pairs are
checked with the MinHash estimate (the old texts are not re-read), new-new pairs as usual.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from curate.filters import minhash_core as mc
from curate.pipelines.errors import ConfigError, DatasetError
from curate.pipelines.stage import DROP_RESULT_SCHEMA, POS, GlobalStage, Params

#: node ids of documents from a saved index: this bit, the index part (7 bits), their old position
OLD_BIT = np.uint64(1 << 63)
_PART_SHIFT = 56
_POS_MASK = np.uint64((1 << _PART_SHIFT) - 1)
INDEX_KIND = "minhash_lsh"
INDEX_FORMAT = 1

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64 finaliser: spreads pair indices over the hash partitions."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


class MinHashDedupParams(Params):
    field: str = Field("text", description="column holding the text")
    threshold: float = Field(0.8, gt=0.0, lt=1.0, description="Jaccard similarity at or above which two documents are near-duplicates")
    num_perm: int = Field(128, ge=2, le=4096, description="MinHash permutations (signature length)")
    ngram: int = Field(5, ge=1, le=1 << 20, description="shingle size: words, or characters with char_ngrams")
    char_ngrams: bool = Field(False, description="character n-grams of the normalised text instead of word n-grams")
    lowercase: bool = Field(True, description="lowercase before shingling")
    bands: int | None = Field(None, ge=1, description="LSH bands (default: derived from threshold, num_perm and the weights)")
    rows: int | None = Field(None, ge=1, description="signature rows per band (default: derived)")
    fp_weight: float = Field(0.05, ge=0.0, description="weight of LSH false positives when deriving bands/rows")
    fn_weight: float = Field(
        0.95, ge=0.0, description="weight of LSH false negatives (candidates are checked afterwards, so misses cost more)"
    )
    seed: int = Field(1, ge=0, lt=1 << 64, description="seed of the MinHash permutations")
    verify: bool = Field(True, description="check candidate pairs by exact Jaccard of the texts; false: by the MinHash estimate")
    keep: Literal["first", "longest", "score"] = Field(
        "first", description="keeper of a cluster: first (smallest _curate_pos), longest text, or highest score_field"
    )
    score_field: str | None = Field(None, description="column whose highest value wins with keep: score")
    max_bucket_size: int = Field(
        64, ge=2, description="LSH buckets up to this many documents give all their pairs; larger ones a star and a chain"
    )
    save_index: bool = Field(False, description="save this run's LSH index next to the output dataset, for later `against` runs")
    index_dir: str | None = Field(
        None, description="folder for saved indexes and cluster exports (default: <output dataset>/_curate_index/minhash)"
    )
    against: str | None = Field(
        None, description="DATASET[@VERSION] whose saved index new documents are also deduplicated against"
    )
    export_clusters: bool = Field(False, description="write every cluster's members (Parquet) for inspection")

    @model_validator(mode="after")
    def _consistent(self) -> MinHashDedupParams:
        if self.keep == "score" and not self.score_field:
            raise ValueError("keep: score needs score_field (the column to maximise)")
        if self.score_field and self.keep != "score":
            raise ValueError("score_field is only used with keep: score")
        b, r = self.bands, self.rows
        if b is not None and r is not None and b * r > self.num_perm:
            raise ValueError(f"bands x rows ({b} x {r}) exceeds num_perm ({self.num_perm})")
        if (b is not None and b > self.num_perm) or (r is not None and r > self.num_perm):
            raise ValueError(f"bands and rows must each be <= num_perm ({self.num_perm})")
        if self.fp_weight + self.fn_weight <= 0:
            raise ValueError("fp_weight and fn_weight must not both be 0")
        return self


# ---------------------------------------------------------------- schemas

KEY_SCHEMA = pa.schema([pa.field("key", pa.uint64()), pa.field(POS, pa.uint64())])
EDGE_SCHEMA = pa.schema([pa.field("a", pa.uint64()), pa.field("b", pa.uint64())])


def _pair_schema(num_perm: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("key", pa.uint64()),
            pa.field("pair", pa.int64()),
            pa.field("side", pa.int8()),
            pa.field(POS, pa.uint64()),
            pa.field("id", pa.string()),
            pa.field("weight", pa.float64()),
            pa.field("text", pa.string()),
            pa.field("sig", pa.binary(4 * num_perm)),
        ]
    )


CHECKED_SCHEMA = pa.schema(
    [
        pa.field("a", pa.uint64()),
        pa.field("b", pa.uint64()),
        pa.field("sim", pa.float64()),
        pa.field("exact", pa.bool_()),
        pa.field("id_a", pa.string()),
        pa.field("id_b", pa.string()),
        pa.field("w_a", pa.float64()),
        pa.field("w_b", pa.float64()),
    ]
)


# ---------------------------------------------------------------- small helpers


def _filesystem(path: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" not in path:
        return pafs.LocalFileSystem(), os.path.abspath(path)
    return pafs.FileSystem.from_uri(path)  # type: ignore[no-any-return]


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _write_parquet(table: pa.Table, path: str) -> None:
    fs, p = _filesystem(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    tmp = f"{p}.tmp-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp, filesystem=fs, compression="zstd")
    fs.move(tmp, p)  # a retried task rewrites the same name: never half a file


def _sig_matrix(col: pa.Array | pa.ChunkedArray, num_perm: int) -> npt.NDArray[np.uint32]:
    """(n, num_perm) uint32 view of a fixed_size_binary(4 * num_perm) column."""
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


def _sig_column(sigs: npt.NDArray[np.uint32]) -> pa.Array:
    n, k = sigs.shape
    data = np.ascontiguousarray(sigs, dtype="<u4")
    return pa.Array.from_buffers(pa.binary(4 * k), n, [None, pa.py_buffer(data.tobytes())])


def _ranges(lo: npt.NDArray[np.intp], hi: npt.NDArray[np.intp]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """For half-open ranges [lo[i], hi[i]): (which range, value) of every element, in order."""
    counts = hi - lo
    total = int(counts.sum())
    owner = np.repeat(np.arange(len(lo)), counts)
    starts = np.cumsum(counts) - counts
    values = np.arange(total) - np.repeat(starts, counts) + np.repeat(lo, counts)
    return owner, values


def bucket_pairs(keys: npt.NDArray[np.uint64], nodes: npt.NDArray[np.uint64], max_bucket_size: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Candidate pairs (a < b) among rows sharing a key: every pair of a bucket of at most
    ``max_bucket_size`` nodes; for a larger bucket each node is paired with the bucket's first
    (smallest) node and with its predecessor. Pairs of two indexed (old) nodes are left out.
    Distinct pairs, sorted."""
    n = len(keys)
    if n < 2:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    order = np.lexsort((nodes, keys))
    k = keys[order]
    p = nodes[order]
    new_run = np.empty(n, dtype=bool)
    new_run[0] = True
    np.not_equal(k[1:], k[:-1], out=new_run[1:])
    run = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    lens = np.diff(np.append(starts, n))
    run_len = lens[run]
    a_parts: list[npt.NDArray[np.uint64]] = []
    b_parts: list[npt.NDArray[np.uint64]] = []
    idx = np.flatnonzero((run_len >= 2) & (run_len <= max_bucket_size))
    d = 1
    while idx.size:
        j = idx + d
        ok = j < n
        idx, j = idx[ok], j[ok]
        same = run[j] == run[idx]
        idx, j = idx[same], j[same]
        a_parts.append(p[idx])
        b_parts.append(p[j])
        d += 1
    big = np.flatnonzero((run_len > max_bucket_size) & ~new_run)
    if big.size:
        a_parts += [p[starts[run[big]]], p[big - 1]]
        b_parts += [p[big], p[big]]
    if not a_parts:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    a = np.concatenate(a_parts)
    b = np.concatenate(b_parts)
    keep = (a != b) & ~((a >= OLD_BIT) & (b >= OLD_BIT))
    return unique_pairs(np.minimum(a, b)[keep], np.maximum(a, b)[keep])


def unique_pairs(a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Distinct (a, b) pairs sorted by a, then b."""
    if len(a) == 0:
        return a.astype(np.uint64), b.astype(np.uint64)
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    first = np.empty(len(a), dtype=bool)
    first[0] = True
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first]


# ---------------------------------------------------------------- the stage


class MinHashDedup(GlobalStage[MinHashDedupParams]):
    """Drop near-duplicates (MinHash LSH candidates, checked, clustered), keeping one per cluster."""

    name = "minhash_dedup"
    Params = MinHashDedupParams
    batch_size = 8192

    def __init__(self, params: MinHashDedupParams) -> None:
        super().__init__(params)
        p = params
        if p.bands is None and p.rows is None:
            self.num_bands, self.num_rows = mc.optimal_bands_rows(p.threshold, p.num_perm, p.fp_weight, p.fn_weight)
        elif p.bands is None:
            assert p.rows is not None
            self.num_bands, self.num_rows = max(1, p.num_perm // p.rows), p.rows
        elif p.rows is None:
            self.num_bands, self.num_rows = p.bands, max(1, p.num_perm // p.bands)
        else:
            self.num_bands, self.num_rows = p.bands, p.rows
        self.requires = (p.field, p.score_field) if p.score_field else (p.field,)  # type: ignore[misc]
        self.rounds = 2
        self.round = 0
        #: filled by the adapter before the first round (see ray_adapter._run_global)
        self.output_uri: str | None = None
        self.run_id: str | None = None
        self.context: pa.Table | None = None
        self._against: dict[str, Any] | None = None  # resolved `against` index: parts, params
        self._stats: dict[str, Any] = {}
        self._written: dict[str, str] = {}
        self._cache: dict[str, Any] = {}
        self._clusters: dict[str, Any] | None = None
        self._round_seconds = 0.0
        # used only when no engine set run_id; made here so every (pickled) worker copy agrees
        self._fallback_run = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
        # relative paths are resolved here, in the driver (workers may run elsewhere)
        root = p.index_dir
        self._index_root = root if root is None or "://" in root else os.path.abspath(root)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}  # worker-side caches are rebuilt where they are needed
        state["context"] = None
        return state

    # ------------------------------------------------------------ configuration

    def index_params(self) -> dict[str, Any]:
        p = self.params
        return {
            "num_perm": p.num_perm,
            "ngram": p.ngram,
            "char_ngrams": p.char_ngrams,
            "lowercase": p.lowercase,
            "seed": p.seed,
            "bands": self.num_bands,
            "rows": self.num_rows,
        }

    def check(self, base_dir: Path | None = None) -> None:
        """Validation before Ray starts: the `against` dataset has a compatible saved index."""
        if self.params.against:
            self._resolve_against()

    def _resolve_against(self) -> dict[str, Any]:
        if self._against is not None:
            return self._against
        from curate.pipelines.store import history, parse_dataset_ref, table_uri

        ref = self.params.against
        assert ref is not None
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
        mine = self.index_params()
        theirs = index.get("params", {})
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: index {a!r}, this stage {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ConfigError(
                f"against: the index of {path} version {entry['version']} was built with other parameters ({shown})",
                hint="use the same num_perm, ngram, char_ngrams, lowercase, seed, bands and rows as the run that saved it",
            )
        base = table_uri(path)
        parts = []
        for part in index.get("parts", []):
            parts.append(part if "://" in part or os.path.isabs(part) else _join(base, part))
        if len(parts) >= 128:
            raise ConfigError(f"against: the index of {path} has {len(parts)} parts; at most 127 are supported")
        self._against = {"dataset": base, "version": entry["version"], "parts": parts}
        return self._against

    def _run_dir(self) -> str:
        """Where this run's index and cluster export go (one folder per run)."""
        run = self.run_id or self._fallback_run
        if self._index_root:
            return _join(self._index_root, run)
        if not self.output_uri:
            raise RuntimeError("minhash_dedup: save_index/export_clusters need index_dir or the output dataset (set by the engine)")
        return _join(self.output_uri, "_curate_index", "minhash", run)

    # ------------------------------------------------------------ round dispatch

    def keys(self, batch: pa.Table) -> pa.Table:
        return self._band_rows(batch) if self.round == 0 else self._pair_rows(batch)

    def extra_inputs(self) -> list[str]:
        """The saved index shards of `against` (read in parallel by the engine)."""
        if not self.params.against:
            return []
        out = []
        for part in self._resolve_against()["parts"]:
            fs, p = _filesystem(_join(part, "docs"))
            if fs.get_file_info(p).type.name != "NotFound":
                out.append(_join(part, "docs"))
        return out

    def extra_keys(self, table: pa.Table) -> pa.Table:
        """Key rows of a saved index's documents (``extra_inputs``): band keys in round 1, the
        signatures of those in candidate pairs in round 2."""
        nodes, live = self._old_nodes(table)
        if not live.all():
            table = table.filter(pa.array(live))
            nodes = nodes[live]
        if self.round == 0:
            if table.num_rows == 0:
                return KEY_SCHEMA.empty_table()
            bands = table.column("bands").combine_chunks()
            if bands.type.list_size != self.num_bands:
                raise ValueError(f"the saved index has {bands.type.list_size} bands, this stage {self.num_bands}")
            keys = bands.flatten().to_numpy().astype(np.uint64)
            return pa.table({"key": keys, POS: np.repeat(nodes, self.num_bands)}, schema=KEY_SCHEMA)
        return self._emit_pairs(nodes, table.column("id"), np.full(len(nodes), np.inf), None, table.column("sig"))

    def reduce(self, rows: pa.Table) -> pa.Table:
        return self._candidates(rows) if self.round == 0 else self._check(rows)

    def resolve(self, reduced: pa.Table) -> pa.Table:
        return self._resolve_candidates(reduced) if self.round == 0 else self._resolve_clusters(reduced)

    # ------------------------------------------------------------ round 1: LSH candidates

    def _signatures(self, texts: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.uint32]:
        p = self.params
        return mc.minhash_signatures(
            texts, p.num_perm, p.ngram, p.char_ngrams, p.seed, lowercase=p.lowercase, num_threads=max(1, int(self.resources.cpus))
        )

    def _band_rows(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        if n == 0:
            return KEY_SCHEMA.empty_table()
        sigs = self._signatures(batch.column(self.params.field))
        bands = mc.lsh_band_keys(sigs, self.num_bands, self.num_rows)
        pos = batch.column(POS).to_numpy().astype(np.uint64)
        if self.params.save_index:
            self._save_index_shard(batch, pos, bands, sigs)
        return pa.table({"key": bands.reshape(-1), POS: np.repeat(pos, self.num_bands)}, schema=KEY_SCHEMA)

    def _save_index_shard(self, batch: pa.Table, pos: npt.NDArray[np.uint64], bands: npt.NDArray[np.uint64], sigs: npt.NDArray[np.uint32]) -> None:
        if int(pos.max()) > int(_POS_MASK):
            raise RuntimeError("minhash_dedup save_index: input positions beyond 2**56 (more than 65,536 input files) are not supported")
        band_col = pa.FixedSizeListArray.from_arrays(pa.array(bands.reshape(-1), pa.uint64()), self.num_bands)
        ids = batch.column("id") if "id" in batch.schema.names else pa.array([None] * batch.num_rows, pa.string())
        run = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(pos), np.int32)), pa.array([Path(self._run_dir()).name]))
        table = pa.table({"pos": pos, "id": pc.cast(ids, pa.string()), "bands": band_col, "sig": _sig_column(sigs), "run": run})
        _write_parquet(table, _join(self._run_dir(), "docs", f"part-{int(pos.min()):016x}-{len(pos)}.parquet"))

    def _old_nodes(self, table: pa.Table) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.bool_]]:
        """Node ids of index rows (OLD_BIT | part << 56 | position in the run that saved it) and
        which rows count: rows that run itself dropped as near-duplicates are not in its dataset."""
        part_of = {Path(part.rstrip("/")).name: i for i, part in enumerate(self._resolve_against()["parts"])}
        runs = table.column("run").to_pylist()
        part = np.array([part_of.get(r, -1) for r in runs], dtype=np.int64) if runs else np.empty(0, np.int64)
        pos = table.column("pos").to_numpy().astype(np.uint64)
        nodes = OLD_BIT | (np.maximum(part, 0).astype(np.uint64) << np.uint64(_PART_SHIFT)) | (pos & _POS_MASK)
        live = part >= 0
        dropped = self._old_dropped()
        if dropped.size:
            live &= ~np.isin(nodes, dropped)
        return nodes, live

    def _old_dropped(self) -> npt.NDArray[np.uint64]:
        if "old_dropped" not in self._cache:
            nodes = []
            for i, part in enumerate(self._resolve_against()["parts"]):
                fs, p = _filesystem(_join(part, "dropped.parquet"))
                info = fs.get_file_info(p)
                if info.type.name == "NotFound":
                    continue
                pos = pq.read_table(p, filesystem=fs, columns=["pos"]).column("pos").to_numpy().astype(np.uint64)
                nodes.append(OLD_BIT | (np.uint64(i) << np.uint64(_PART_SHIFT)) | (pos & _POS_MASK))
            self._cache["old_dropped"] = np.sort(np.concatenate(nodes)) if nodes else np.empty(0, np.uint64)
        return self._cache["old_dropped"]  # type: ignore[no-any-return]

    def _candidates(self, rows: pa.Table) -> pa.Table:
        keys = rows.column("key").to_numpy()
        nodes = rows.column(POS).to_numpy()
        a, b = bucket_pairs(keys, nodes, self.params.max_bucket_size)
        return pa.table({"a": a, "b": b}, schema=EDGE_SCHEMA)

    def _resolve_candidates(self, reduced: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        if reduced.num_rows:
            a, b = unique_pairs(reduced.column("a").to_numpy(), reduced.column("b").to_numpy())
        else:
            a = b = np.empty(0, np.uint64)
        self._stats = {"candidate_pairs": int(len(a))}
        self._written = {}
        self._clusters = None
        self._round_seconds = time.perf_counter() - t0
        self.rounds = 2 if len(a) else 1  # without candidates there is nothing to check: no drops
        if len(a) == 0:
            return self._finish(DROP_RESULT_SCHEMA.empty_table(), CHECKED_SCHEMA.empty_table(), np.empty(0, np.uint64), np.empty(0, np.uint64))
        return pa.table({"a": a, "b": b}, schema=EDGE_SCHEMA)

    # ------------------------------------------------------------ round 2: checking pairs

    def _edge_index(self) -> dict[str, Any]:
        if "edges" not in self._cache:
            ctx = self.context
            assert ctx is not None, "round 2 runs with the candidate pairs as context"
            a = ctx.column("a").to_numpy()
            b = ctx.column("b").to_numpy()
            order_b = np.argsort(b, kind="stable")
            self._cache["edges"] = {"a": a, "b_sorted": b[order_b], "order_b": order_b}
        return self._cache["edges"]  # type: ignore[no-any-return]

    def _weights(self, batch: pa.Table) -> npt.NDArray[np.float64]:
        if self.params.keep == "longest":
            return pc.fill_null(pc.utf8_length(batch.column(self.params.field)), 0).to_numpy().astype(np.float64)
        if self.params.keep == "score":
            assert self.params.score_field is not None
            col = pc.cast(batch.column(self.params.score_field), pa.float64())
            return pc.fill_null(col, -np.inf).to_numpy(zero_copy_only=False).astype(np.float64)
        return np.zeros(batch.num_rows, dtype=np.float64)

    def _pair_rows(self, batch: pa.Table) -> pa.Table:
        schema = _pair_schema(self.params.num_perm)
        if batch.num_rows == 0:
            return schema.empty_table()
        pos = batch.column(POS).to_numpy().astype(np.uint64)
        e = self._edge_index()
        in_a = np.isin(pos, e["a"])
        in_b = np.isin(pos, e["b_sorted"])
        take = np.flatnonzero(in_a | in_b)
        if take.size == 0:
            return schema.empty_table()
        sub = batch.take(pa.array(take))
        need_sig = (not self.params.verify) or bool(self.params.against)
        sigs = self._signatures(sub.column(self.params.field)) if need_sig else None
        ids = pc.cast(sub.column("id"), pa.string()) if "id" in sub.schema.names else pa.array([None] * len(take), pa.string())
        texts = sub.column(self.params.field) if self.params.verify else None
        return self._emit_pairs(pos[take], ids, self._weights(sub), texts, _sig_column(sigs) if sigs is not None else None)

    def _emit_pairs(
        self,
        nodes: npt.NDArray[np.uint64],
        ids: pa.Array | pa.ChunkedArray,
        weights: npt.NDArray[np.float64],
        texts: pa.Array | pa.ChunkedArray | None,
        sigs: pa.Array | pa.ChunkedArray | None,
    ) -> pa.Table:
        """One row per (candidate pair, side) for each of `nodes` that is in a pair."""
        schema = _pair_schema(self.params.num_perm)
        e = self._edge_index()
        a, b_sorted, order_b = e["a"], e["b_sorted"], e["order_b"]
        lo_a, hi_a = np.searchsorted(a, nodes, "left"), np.searchsorted(a, nodes, "right")
        lo_b, hi_b = np.searchsorted(b_sorted, nodes, "left"), np.searchsorted(b_sorted, nodes, "right")
        row_a, pair_a = _ranges(lo_a, hi_a)
        row_b, at_b = _ranges(lo_b, hi_b)
        pair_b = order_b[at_b]
        rows = np.concatenate([row_a, row_b])
        if rows.size == 0:
            return schema.empty_table()
        pairs = np.concatenate([pair_a, pair_b]).astype(np.int64)
        side = np.concatenate([np.zeros(len(row_a), np.int8), np.ones(len(row_b), np.int8)])
        idx = pa.array(rows)
        n = len(rows)
        return pa.table(
            {
                "key": _mix64(pairs.astype(np.uint64)),
                "pair": pairs,
                "side": side,
                POS: nodes[rows],
                "id": pc.cast(ids, pa.string()).take(idx),
                "weight": weights[rows],
                "text": texts.take(idx).cast(pa.string()) if texts is not None else pa.nulls(n, pa.string()),
                "sig": sigs.take(idx) if sigs is not None else pa.nulls(n, pa.binary(4 * self.params.num_perm)),
            },
            schema=schema,
        )

    def _check(self, rows: pa.Table) -> pa.Table:
        if rows.num_rows == 0:
            return CHECKED_SCHEMA.empty_table()
        order = np.lexsort((rows.column("side").to_numpy(), rows.column("pair").to_numpy()))
        rows = rows.take(pa.array(order))
        pair = rows.column("pair").to_numpy()
        side = rows.column("side").to_numpy()
        # side 0 at i and side 1 at i + 1 of the same pair (each pair has exactly these two rows)
        i0 = np.flatnonzero((side[:-1] == 0) & (side[1:] == 1) & (pair[:-1] == pair[1:]))
        i1 = i0 + 1
        node = rows.column(POS).to_numpy()
        na, nb = node[i0], node[i1]
        old = (na >= OLD_BIT) | (nb >= OLD_BIT)
        sim = np.full(len(i0), np.nan)
        exact = np.zeros(len(i0), dtype=bool)
        p = self.params
        if p.verify:
            new_new = np.flatnonzero(~old)
            if new_new.size:
                rows_needed = np.concatenate([i0[new_new], i1[new_new]])
                uniq, first = np.unique(node[rows_needed], return_index=True)
                texts = rows.column("text").take(pa.array(rows_needed[first]))
                ia = np.searchsorted(uniq, na[new_new])
                ib = np.searchsorted(uniq, nb[new_new])
                sim[new_new] = mc.exact_jaccard_pairs(texts, ia, ib, p.ngram, p.char_ngrams, lowercase=p.lowercase, num_threads=max(1, int(self.resources.cpus)))
                exact[new_new] = True
        est = np.flatnonzero(~exact)
        if est.size:
            sigs = _sig_matrix(rows.column("sig"), p.num_perm)
            sim[est] = mc.estimated_jaccard(sigs, i0[est], i1[est]).astype(np.float64)
        ids = rows.column("id")
        w = rows.column("weight").to_numpy()
        return pa.table(
            {
                "a": na,
                "b": nb,
                "sim": sim,
                "exact": exact,
                "id_a": ids.take(pa.array(i0)),
                "id_b": ids.take(pa.array(i1)),
                "w_a": w[i0],
                "w_b": w[i1],
            },
            schema=CHECKED_SCHEMA,
        )

    # ------------------------------------------------------------ clusters and keepers

    def _resolve_clusters(self, reduced: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        checked = reduced if reduced.num_rows else CHECKED_SCHEMA.empty_table()
        checked = checked.sort_by([("a", "ascending"), ("b", "ascending")])
        sim = checked.column("sim").to_numpy()
        ok = sim >= self.params.threshold - 1e-12
        accepted = checked.filter(pa.array(ok))
        a = accepted.column("a").to_numpy()
        b = accepted.column("b").to_numpy()
        self._stats.update(
            {
                "checked_pairs": int(checked.num_rows),
                "checked_exactly": int(pc.sum(checked.column("exact")).as_py() or 0),
                "accepted_pairs": int(accepted.num_rows),
            }
        )
        nodes, roots = mc.connected_components(a, b)
        drops = self._keepers(accepted, nodes, roots)
        self._stats["resolve_seconds"] = round(time.perf_counter() - t0 + self._round_seconds, 3)
        return self._finish(drops, accepted, nodes, roots)

    def _keepers(self, accepted: pa.Table, nodes: npt.NDArray[np.uint64], roots: npt.NDArray[np.uint64]) -> pa.Table:
        if len(nodes) == 0:
            return DROP_RESULT_SCHEMA.empty_table()
        # per node: id and weight (from either side of its pairs)
        both_nodes = np.concatenate([accepted.column("a").to_numpy(), accepted.column("b").to_numpy()])
        both_ids = pa.concat_arrays([accepted.column("id_a").combine_chunks(), accepted.column("id_b").combine_chunks()])
        both_w = np.concatenate([accepted.column("w_a").to_numpy(), accepted.column("w_b").to_numpy()])
        both_sim = np.concatenate([accepted.column("sim").to_numpy()] * 2)
        other = np.concatenate([accepted.column("b").to_numpy(), accepted.column("a").to_numpy()])
        # best match per node: highest similarity, then smallest neighbour
        order = np.lexsort((other, -both_sim, both_nodes))
        first = np.empty(len(order), dtype=bool)
        first[0] = True
        first[1:] = both_nodes[order][1:] != both_nodes[order][:-1]
        pick = order[first]  # one row per node, in ascending node order == `nodes`
        node_ids = both_ids.take(pa.array(pick))
        weight = both_w[pick]
        best_other = other[pick]
        best_sim = both_sim[pick]
        is_old = nodes >= OLD_BIT
        # keeper: old nodes first (published already), then highest weight, then smallest node
        key_old = np.where(is_old, 0, 1)
        key_w = -weight if self.params.keep != "first" else np.zeros(len(nodes))
        order = np.lexsort((nodes, key_w, key_old, roots))
        r_sorted = roots[order]
        head = np.empty(len(order), dtype=bool)
        head[0] = True
        head[1:] = r_sorted[1:] != r_sorted[:-1]
        keeper_of_root = dict(zip(r_sorted[head].tolist(), order[head].tolist()))
        keeper_idx = np.array([keeper_of_root[r] for r in roots.tolist()], dtype=np.int64)
        dropped = np.flatnonzero((keeper_idx != np.arange(len(nodes))) & ~is_old)
        id_list = node_ids.to_pylist()
        node_pos = {int(x): i for i, x in enumerate(nodes.tolist())}
        keeper_ids = [id_list[keeper_idx[i]] for i in dropped]
        size_of_root = dict(zip(*np.unique(roots, return_counts=True)))
        reasons = [
            f"near_duplicate: Jaccard {best_sim[i]:.3f} with {id_list[node_pos[int(best_other[i])]]}"
            f" (cluster of {size_of_root[roots[i]]}, keeping {id_list[keeper_idx[i]]})"
            for i in dropped
        ]
        self._clusters = {
            "node": nodes,
            "cluster": pa.array([id_list[k] for k in keeper_idx], pa.string()),
            "id": node_ids,
            "kept": keeper_idx == np.arange(len(nodes)),
            "old": is_old,
            "best_match": pa.array([id_list[node_pos[int(o)]] for o in best_other], pa.string()),
            "jaccard": best_sim,
        }
        self._stats["clusters"] = int(head.sum())
        self._stats["clustered_docs"] = int(len(nodes))
        return pa.table(
            {
                POS: nodes[dropped].astype(np.int64),
                "rule": pa.array(["near_duplicate"] * len(dropped), pa.string()),
                "reason": pa.array(reasons, pa.string()),
                "duplicate_of": pa.array(keeper_ids, pa.string()),
            },
            schema=DROP_RESULT_SCHEMA,
        )

    def _finish(self, drops: pa.Table, accepted: pa.Table, nodes: Any, roots: Any) -> pa.Table:
        """Side outputs (index, cluster export) and statistics; returns the drops."""
        self._stats["dropped"] = int(drops.num_rows)
        clusters = self._clusters
        if self.params.save_index:
            run_dir = self._run_dir()
            _write_parquet(pa.table({"pos": drops.column(POS).cast(pa.uint64())}), _join(run_dir, "dropped.parquet"))
            self._written["index"] = run_dir
        if self.params.export_clusters:
            path = _join(self._run_dir(), "clusters.parquet")
            if clusters is None:
                table = pa.table(
                    {"cluster": pa.array([], pa.string()), "id": pa.array([], pa.string()), "kept": pa.array([], pa.bool_()),
                     "old": pa.array([], pa.bool_()), "best_match": pa.array([], pa.string()), "jaccard": pa.array([], pa.float64())}
                )
            else:
                table = pa.table({k: v for k, v in clusters.items() if k != "node"}).sort_by([("cluster", "ascending"), ("id", "ascending")])
            _write_parquet(table, path)
            self._written["clusters"] = path
        return drops.sort_by([(POS, "ascending")])

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bands": self.num_bands, "rows_per_band": self.num_rows, **self._stats}
        if "index" in self._written:
            # index parts: this run's and those inherited from `against` (oldest first), relative
            # to the output dataset when inside it, so the dataset folder can be moved whole
            inherited = list(self._against["parts"]) if self._against else []
            out["index"] = {
                "kind": INDEX_KIND,
                "format": INDEX_FORMAT,
                "path": self._written["index"],
                "parts": [self._relative_to_output(p) for p in [*inherited, self._written["index"]]],
                "params": self.index_params(),
            }
        if "clusters" in self._written:
            out["clusters_file"] = self._written["clusters"]
        if self._against:
            out["against"] = {"dataset": self._against["dataset"], "version": self._against["version"]}
        return out

    def _relative_to_output(self, path: str) -> str:
        base = (self.output_uri or "").rstrip("/")
        if base and path.startswith(base + "/"):
            return path[len(base) + 1 :]
        return path


__all__ = ["MinHashDedup", "MinHashDedupParams", "bucket_pairs", "unique_pairs"]
