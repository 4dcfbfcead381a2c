"""``minhash_dedup``: drop near-duplicate documents (MinHash + LSH), distributed on Ray.

How it runs (a :class:`~curate.pipelines.stage.GlobalStage` with two rounds; the engine's
global-stage protocol: ``keys`` per batch, rows hash-partitioned by ``key & (buckets - 1)``,
``reduce`` per partition, ``resolve`` on the driver, whose output is the next round's ``context``)::

    round 1  keys    per batch, natively: shingles -> MinHash signature -> ``bands`` LSH keys;
                     one key row (band key, _curate_pos) per document and band. The signature
                     never leaves the task (unless saved to the index).
             reduce  documents sharing a key in some band are candidate pairs (all pairs of a
                     bucket up to ``max_bucket_size`` documents, larger buckets as a star on their
                     first document plus a chain).
             resolve (driver) distinct candidate pairs -> the verification plan
                     (:mod:`.minhash_verify`): candidate components as groups, large ones cut into
                     chunks checked against a representative, groups packed onto partitions.
    round 2  keys    only documents in the plan: one row per (document, partition that needs it)
                     with its text (exact checks) and/or signature (estimated checks).
             reduce  the partition's planned checks: exact Jaccard of the shingle sets (each text
                     shingled once per partition), or the MinHash estimate.
             resolve (driver) union-find over pairs >= ``threshold`` (Rust); one keeper per cluster.

Memory: a task holds one batch, or one partition's documents (at most ``candidate documents /
buckets + max_group_docs``, each once); no process sees all texts or all signatures, and the
number of candidate pairs only sizes 16-byte pair rows. The stage metadata records the plan
(``planned_checks`` by kind, exact vs estimated) and what the partitions received
(``verify_text_bytes``, ``verify_max_partition_text_bytes``, ``verify_max_partition_rows``).

Deterministic: candidate pairs are a set, the plan depends only on them (not on ``buckets``),
checks are pure functions of the two documents, the keeper is chosen by a total order (policy,
then ``_curate_pos``), so the kept set does not depend on batch sizes, partitions or workers.

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
See :mod:`.minhash_index`.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from curate.filters import minhash_core as mc
from curate.filters import minhash_index as mi
from curate.filters import minhash_verify as mv
from curate.filters.minhash_index import OLD_BIT
from curate.filters.minhash_verify import CHECKED_SCHEMA, KEY_SCHEMA, bucket_pairs, unique_pairs
from curate.pipelines.stage import DROP_RESULT_SCHEMA, POS, GlobalStage, Params
from pydantic import Field, model_validator

#: input bytes per hash partition that :meth:`MinHashDedup.num_buckets` aims at
PARTITION_BYTES = 128 << 20


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
    max_group_docs: int = Field(
        4096,
        ge=2,
        description="largest cluster of candidates whose pairs are all checked in one place; larger ones are cut into chunks "
        "of this many documents, each document checked against the cluster's representative (exact) and pairs across "
        "chunks by the MinHash estimate",
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
        self.rounds = 2
        self.round = 0
        #: set by the engine before the first round
        self.buckets = 8
        self.output_uri = ""
        self.run_id = ""
        self.storage_options: dict[str, Any] = {}
        self.context: pa.Table | None = None
        self._against: dict[str, Any] | None = None  # resolved `against` index: parts, version
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

    # ------------------------------------------------------------ engine protocol

    def input_columns(self) -> tuple[str, ...]:
        p = self.params
        return (p.field, p.score_field) if p.score_field else (p.field,)

    def num_buckets(self, rows: int, nbytes: int, cpus: float) -> int:
        """Hash partitions: at least 4 per CPU (8 at least), and enough that each holds at most
        about ``PARTITION_BYTES`` of the input (round 2 ships candidate texts: bounded per
        partition as the corpus grows)."""
        by_cpu = max(8, int(cpus * 4))
        by_size = -(-max(0, int(nbytes)) // PARTITION_BYTES)
        return 1 << max(3, math.ceil(math.log2(max(by_cpu, by_size, 1))))

    def check(self, base_dir: Path) -> None:
        """Validation before Ray starts: the `against` dataset has a compatible saved index."""
        if self.params.against:
            self._resolve_against()

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

    def _resolve_against(self) -> dict[str, Any]:
        if self._against is None:
            assert self.params.against is not None
            self._against = mi.resolve_against(self.params.against, self.index_params())
        return self._against

    def _run_dir(self) -> str:
        """Where this run's index and cluster export go (one folder per run)."""
        run = self.run_id or self._fallback_run
        if self._index_root:
            return mi.join(self._index_root, run)
        if not self.output_uri:
            raise RuntimeError("minhash_dedup: save_index/export_clusters need index_dir or the output dataset (set by the engine)")
        return mi.join(self.output_uri, "_curate_index", "minhash", run)

    def _threads(self) -> int:
        return max(1, int(self.settings.resources.cpus))

    # ------------------------------------------------------------ round dispatch

    def keys(self, batch: pa.Table) -> pa.Table:
        return self._band_rows(batch) if self.round == 0 else self._verify_rows(batch)

    def extra_inputs(self) -> list[str]:
        """The saved index shards of `against` (read in parallel by the engine)."""
        if not self.params.against:
            return []
        return mi.docs_inputs(self._resolve_against()["parts"], self.storage_options)

    def extra_keys(self, table: pa.Table) -> pa.Table:
        """Key rows of a saved index's documents (``extra_inputs``): band keys in round 1, the
        signatures of those the plan needs in round 2."""
        if "old_dropped" not in self._cache:
            self._cache["old_dropped"] = mi.dropped_nodes(self._resolve_against()["parts"], self.storage_options)
        nodes, live = mi.old_nodes(table, self._resolve_against()["parts"], self._cache["old_dropped"])
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
        sig = table.column("sig")
        return mv.emit_rows(
            self._plan(), nodes, table.column("id"), np.full(len(nodes), np.inf), None,
            lambda rows: sig.take(pa.array(rows)).combine_chunks() if isinstance(sig, pa.ChunkedArray) else sig.take(pa.array(rows)),
            self.params.num_perm,
        )

    def reduce(self, rows: pa.Table) -> pa.Table:
        if self.round == 0:
            return self._candidates(rows)
        p = self.params
        return mv.check_partition(self._plan(), rows, p.num_perm, p.ngram, p.char_ngrams, p.lowercase, self._threads(), p.threshold)

    def resolve(self, reduced: pa.Table) -> pa.Table:
        return self._resolve_candidates(reduced) if self.round == 0 else self._resolve_clusters(reduced)

    # ------------------------------------------------------------ round 1: LSH candidates

    def _signatures(self, texts: pa.ChunkedArray | pa.Array) -> npt.NDArray[np.uint32]:
        p = self.params
        return mc.minhash_signatures(texts, p.num_perm, p.ngram, p.char_ngrams, p.seed, lowercase=p.lowercase, num_threads=self._threads())

    def _band_rows(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        if n == 0:
            return KEY_SCHEMA.empty_table()
        sigs = self._signatures(batch.column(self.params.field))
        bands = mc.lsh_band_keys(sigs, self.num_bands, self.num_rows)
        pos = batch.column(POS).to_numpy().astype(np.uint64)
        if self.params.save_index:
            ids = batch.column("id") if "id" in batch.schema.names else pa.nulls(n, pa.string())
            mi.write_docs_shard(self._run_dir(), pos, ids, bands, sigs, self.storage_options)
        return pa.table({"key": bands.reshape(-1), POS: np.repeat(pos, self.num_bands)}, schema=KEY_SCHEMA)

    def _candidates(self, rows: pa.Table) -> pa.Table:
        keys = rows.column("key").to_numpy()
        nodes = rows.column(POS).to_numpy()
        a, b = bucket_pairs(keys, nodes, self.params.max_bucket_size)
        return pa.table({"a": a, "b": b}, schema=mv.EDGE_SCHEMA)

    def _resolve_candidates(self, reduced: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        if reduced.num_rows:
            a, b = unique_pairs(reduced.column("a").to_numpy(), reduced.column("b").to_numpy())
        else:
            a = b = np.empty(0, np.uint64)
        self._stats = {"buckets": int(self.buckets), "candidate_pairs": int(len(a))}
        self._written = {}
        self._clusters = None
        self.rounds = 2 if len(a) else 1  # without candidates there is nothing to check: no drops
        if len(a) == 0:
            self._round_seconds = time.perf_counter() - t0
            return self._finish(DROP_RESULT_SCHEMA.empty_table())
        plan, stats = mv.plan_checks(a, b, int(self.buckets), self.params.max_group_docs, self.params.verify)
        self._stats.update(stats)
        self._round_seconds = time.perf_counter() - t0
        return plan

    # ------------------------------------------------------------ round 2: checking pairs

    def _plan(self) -> mv.PlanIndex:
        # the engine may hand a task a new context object (a new round): the index follows it
        if self._cache.get("plan_of") is not self.context:
            assert self.context is not None, "round 2 runs with the verification plan as context"
            self._cache["plan"] = mv.PlanIndex(self.context)
            self._cache["plan_of"] = self.context
        return self._cache["plan"]  # type: ignore[no-any-return]

    def _weights(self, batch: pa.Table) -> npt.NDArray[np.float64]:
        if self.params.keep == "longest":
            return pc.fill_null(pc.utf8_length(batch.column(self.params.field)), 0).to_numpy().astype(np.float64)
        if self.params.keep == "score":
            assert self.params.score_field is not None
            col = pc.cast(batch.column(self.params.score_field), pa.float64())
            return pc.fill_null(col, -np.inf).to_numpy(zero_copy_only=False).astype(np.float64)
        return np.zeros(batch.num_rows, dtype=np.float64)

    def _verify_rows(self, batch: pa.Table) -> pa.Table:
        num_perm = self.params.num_perm
        if batch.num_rows == 0:
            return mv.row_schema(num_perm).empty_table()
        plan = self._plan()
        pos = batch.column(POS).to_numpy().astype(np.uint64)
        take = np.flatnonzero(np.isin(pos, plan.need_node))
        if take.size == 0:
            return mv.row_schema(num_perm).empty_table()
        sub = batch.take(pa.array(take))
        texts = sub.column(self.params.field)
        ids = sub.column("id") if "id" in sub.schema.names else pa.nulls(len(take), pa.string())

        def signatures(rows: npt.NDArray[np.intp]) -> pa.Array:
            return mi.sig_column(self._signatures(texts.take(pa.array(rows))))

        return mv.emit_rows(plan, pos[take], ids, self._weights(sub), texts, signatures, num_perm)

    # ------------------------------------------------------------ clusters and keepers

    def _resolve_clusters(self, reduced: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        checked = reduced if reduced.num_rows else CHECKED_SCHEMA.empty_table()
        kind = checked.column("kind").to_numpy()
        summary = checked.filter(pa.array(kind == mv.SUMMARY))
        checked = checked.filter(pa.array(kind != mv.SUMMARY)).sort_by([("a", "ascending"), ("b", "ascending")])
        text_bytes = summary.column("a").to_numpy()
        rows_in = summary.column("b").to_numpy()
        sim = checked.column("sim").to_numpy()
        ok = sim >= self.params.threshold - 1e-12
        accepted = checked.filter(pa.array(ok))
        a = accepted.column("a").to_numpy()
        b = accepted.column("b").to_numpy()
        ck = checked.column("kind").to_numpy()
        self._stats.update(
            {
                "checked_pairs": int(checked.num_rows),
                "checked_exactly": int(pc.sum(checked.column("exact")).as_py() or 0),
                "checked_by_kind": {name: int((ck == k).sum()) for k, name in mv.KIND_NAMES.items()},
                "accepted_pairs": int(accepted.num_rows),
                "skipped_pairs": int(np.nansum(summary.column("sim").to_numpy())),
                "verify_partitions": int(summary.num_rows),
                "verify_rows": int(rows_in.sum()),
                "verify_text_bytes": int(text_bytes.sum()),
                "verify_max_partition_text_bytes": int(text_bytes.max()) if len(text_bytes) else 0,
                "verify_max_partition_rows": int(rows_in.max()) if len(rows_in) else 0,
            }
        )
        nodes, roots = mc.connected_components(a, b)
        drops = self._keepers(accepted, nodes, roots)
        self._stats["resolve_seconds"] = round(time.perf_counter() - t0 + self._round_seconds, 3)
        return self._finish(drops)

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

    def _finish(self, drops: pa.Table) -> pa.Table:
        """Side outputs (index, cluster export) and statistics; returns the drops."""
        self._stats["dropped"] = int(drops.num_rows)
        clusters = self._clusters
        if self.params.save_index:
            run_dir = self._run_dir()
            mi.write_dropped(run_dir, drops.column(POS), self.storage_options)
            self._written["index"] = run_dir
        if self.params.export_clusters:
            path = mi.join(self._run_dir(), "clusters.parquet")
            if clusters is None:
                table = pa.table(
                    {"cluster": pa.array([], pa.string()), "id": pa.array([], pa.string()), "kept": pa.array([], pa.bool_()),
                     "old": pa.array([], pa.bool_()), "best_match": pa.array([], pa.string()), "jaccard": pa.array([], pa.float64())}
                )
            else:
                table = pa.table({k: v for k, v in clusters.items() if k != "node"}).sort_by([("cluster", "ascending"), ("id", "ascending")])
            mi.write_parquet(table, path, self.storage_options)
            self._written["clusters"] = path
        return drops.sort_by([(POS, "ascending")])

    def metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bands": self.num_bands, "rows_per_band": self.num_rows, **self._stats}
        if "index" in self._written:
            # index parts: this run's and those inherited from `against` (oldest first), relative
            # to the output dataset when inside it, so the dataset folder can be moved whole
            inherited = list(self._against["parts"]) if self._against else []
            out["index"] = {
                "kind": mi.INDEX_KIND,
                "format": mi.INDEX_FORMAT,
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


__all__ = ["OLD_BIT", "MinHashDedup", "MinHashDedupParams", "bucket_pairs", "unique_pairs"]
