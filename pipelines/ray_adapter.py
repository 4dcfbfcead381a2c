"""The one place that knows Ray: maps curate stages onto Ray Data.

- Readers become a ``map_batches`` over read tasks (a generator: files stream in batches).
- A stateless :class:`Stage` becomes ``map_batches`` tasks; a ``stateful`` one (it holds a
  model) becomes an actor pool, so ``setup()`` runs once per actor. Resources (CPUs, GPUs,
  memory) and batch size come from the stage's declaration.
- A :class:`GlobalStage` runs as keys -> hash partitions of the small key rows -> ``reduce``
  per partition -> ``resolve`` (driver) -> a ``map_batches`` that marks the dropped rows, in one
  or more rounds (see :func:`_run_global`). The upstream dataset is materialised in Ray's object
  store (spilling to disk), never in the driver. The keys/partition/reduce step runs as plain Ray
  tasks over the materialised blocks (one split task per block, one reduce task per partition);
  ``CURATE_GLOBAL_SHUFFLE=ray_data`` uses Ray Data's ``groupby().map_groups()`` instead (the
  sort-based shuffle, measured 1.5-2x slower here: bench/minhash.md).
- The writer is the last ``map_batches``: each task writes Parquet shards of kept rows (and of
  dropped rows) straight into the table folders and returns only their metadata; the driver
  makes one Delta commit from that metadata (see :mod:`curate.pipelines.store`).

Rows dropped by a stage stay in the stream, marked in the ``_drop_*`` columns, and are skipped
by later stages: so every removal reaches the dropped-rows table and exact counts come from
the data itself, whatever retries Ray makes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .config import InputConfig, OutputConfig
from .readers import ReadTask, read_task, task_from_row, task_to_row
from .stage import (
    DROP_COLUMNS,
    DROP_REASON,
    DROP_RULE,
    DROP_STAGE,
    DUPLICATE_OF,
    INTERNAL_COLUMNS,
    POS,
    GlobalStage,
    Stage,
    StageOutput,
)

#: schema of the dropped-rows table
DROPPED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("rule", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("duplicate_of", pa.string()),
    ]
)

WRITE_RESULT_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string()),  # "main" | "dropped" | "counts"
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("rows", pa.int64()),
        pa.field("info", pa.string()),  # JSON: file stats / counts
    ]
)


class Stats:
    """Live counters, held by one Ray actor; stage tasks report to it, the driver polls it."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.started = time.time()

    def add(self, stage: str, rows_in: int, dropped: int, seconds: float, counters: dict[str, int]) -> None:
        d = self.data.setdefault(stage, {"in": 0, "dropped": 0, "seconds": 0.0, "counters": {}, "first": time.time()})
        d["in"] += rows_in
        d["dropped"] += dropped
        d["seconds"] += seconds
        d["last"] = time.time()
        for k, v in counters.items():
            d["counters"][k] = d["counters"].get(k, 0) + int(v)

    def phase(self, stage: str, phase: str) -> None:
        self.data.setdefault(stage, {"in": 0, "dropped": 0, "seconds": 0.0, "counters": {}, "first": time.time()})["phase"] = phase

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.data


# ---------------------------------------------------------------- applying stages to a batch


def _null_columns_like(table: pa.Table, schema: pa.Schema) -> pa.Table:
    for field in schema:
        if field.name not in table.schema.names:
            table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    return table.select(schema.names)


def _is_live(batch: pa.Table) -> pa.Array:
    return pc.is_null(batch.column(DROP_STAGE))


def _set_drops(table: pa.Table, out: StageOutput, stage_name: str) -> tuple[pa.Table, dict[str, int]]:
    drops = out.drops
    if drops is None:
        return table, {}
    mask = np.asarray(drops.mask, dtype=bool)
    if not mask.any():
        return table, {}
    n = table.num_rows

    def per_row(value: Any) -> pa.Array:
        if value is None:
            return pa.nulls(n, pa.string())
        if isinstance(value, str):
            return pc.if_else(pa.array(mask), pa.scalar(value), pa.nulls(n, pa.string()))
        arr = pa.array(list(value) if not isinstance(value, pa.Array) else value, pa.string())
        return pc.if_else(pa.array(mask), arr, pa.nulls(n, pa.string()))

    marks = {
        DROP_STAGE: pc.if_else(pa.array(mask), pa.scalar(stage_name), pa.nulls(n, pa.string())),
        DROP_RULE: per_row(drops.rule),
        DROP_REASON: per_row(drops.reason if drops.reason is not None else drops.rule),
        DUPLICATE_OF: per_row(drops.duplicate_of),
    }
    for name, arr in marks.items():
        table = table.set_column(table.schema.get_field_index(name), name, arr)
    rules = pc.value_counts(pc.filter(marks[DROP_RULE], pa.array(mask)))
    return table, {str(r["values"]): int(r["counts"]) for r in rules.to_pylist()}


def run_stage_on_batch(stage: Stage[Any], label: str, batch: pa.Table, stats: Any = None) -> pa.Table:
    """Apply one stage to the live rows of a batch; dropped rows pass through untouched."""
    if not getattr(stage, "_curate_ready", False):
        stage.setup()
        stage._curate_ready = True  # type: ignore[attr-defined]
    live_mask = _is_live(batch)
    n_live = pc.sum(live_mask).as_py() or 0
    if n_live == 0:
        return batch
    live = batch if n_live == batch.num_rows else batch.filter(live_mask)
    t0 = time.perf_counter()
    result = stage.process(live)
    seconds = time.perf_counter() - t0
    out = result if isinstance(result, StageOutput) else StageOutput(result)
    if out.table.num_rows != live.num_rows:
        raise RuntimeError(
            f"stage {label} returned {out.table.num_rows} rows for {live.num_rows}: stages mark drops "
            "with StageOutput(drops=...) instead of removing rows"
        )
    for col in INTERNAL_COLUMNS:
        if col not in out.table.schema.names:
            raise RuntimeError(f"stage {label} removed the internal column {col}; keep the input's columns")
    table, dropped = _set_drops(out.table, out, label)
    if stats is not None:
        stats.add.remote(label, live.num_rows, sum(dropped.values()), seconds, out.counters)
    if n_live == batch.num_rows:
        return table
    dead = batch.filter(pc.invert(live_mask))
    return pa.concat_tables([table, _null_columns_like(dead, table.schema)])


class _ActorStage:
    """Actor-pool wrapper for stateful stages: ``setup()`` runs once per actor."""

    def __init__(self, stage: Stage[Any], label: str, stats: Any) -> None:
        self.stage, self.label, self.stats = stage, label, stats
        stage.setup()
        stage._curate_ready = True  # type: ignore[attr-defined]

    def __call__(self, batch: pa.Table) -> pa.Table:
        return run_stage_on_batch(self.stage, self.label, batch, self.stats)


# ---------------------------------------------------------------- global stages


def _prepare_global(stage: GlobalStage[Any], context_ref: Any, cache: dict[str, Any]) -> None:
    """Worker side: ``setup()`` once, and the previous round's ``resolve`` output as ``stage.context``."""
    if not getattr(stage, "_curate_ready", False):
        stage.setup()
        stage._curate_ready = True  # type: ignore[attr-defined]
    if context_ref is not None and "context" not in cache:
        import ray

        # a Ray task gets the table itself (top-level ObjectRef arguments are resolved)
        cache["context"] = ray.get(context_ref) if isinstance(context_ref, ray.ObjectRef) else context_ref
        stage.context = cache["context"]  # type: ignore[attr-defined]


def _with_bucket(keys: pa.Table, buckets: int) -> pa.Table:
    bucket = pc.cast(pc.bit_wise_and(keys.column("key"), pa.scalar(buckets - 1, pa.uint64())), pa.int32())
    return keys.append_column("_bucket", bucket)


def _keys_fn(stage: GlobalStage[Any], label: str, buckets: int, stats: Any, context_ref: Any = None) -> Callable[[pa.Table], pa.Table]:
    cache: dict[str, Any] = {}

    def fn(batch: pa.Table) -> pa.Table:
        _prepare_global(stage, context_ref, cache)
        t0 = time.perf_counter()
        live = batch.filter(_is_live(batch))
        keys = stage.keys(live)
        if stats is not None:
            stats.add.remote(label, 0, 0, time.perf_counter() - t0, {})
        return _with_bucket(keys, buckets)

    return fn


def _extra_keys_fn(stage: GlobalStage[Any], label: str, buckets: int, stats: Any, context_ref: Any = None) -> Callable[[pa.Table], pa.Table]:
    cache: dict[str, Any] = {}

    def fn(batch: pa.Table) -> pa.Table:
        _prepare_global(stage, context_ref, cache)
        t0 = time.perf_counter()
        keys = stage.extra_keys(batch)  # type: ignore[attr-defined]
        if stats is not None:
            stats.add.remote(label, 0, 0, time.perf_counter() - t0, {})
        return _with_bucket(keys, buckets)

    return fn


def _reduce_fn(stage: GlobalStage[Any], label: str, stats: Any, context_ref: Any = None) -> Callable[[pa.Table], pa.Table]:
    cache: dict[str, Any] = {}

    def fn(group: pa.Table) -> pa.Table:
        _prepare_global(stage, context_ref, cache)
        t0 = time.perf_counter()
        out = stage.reduce(group.drop_columns(["_bucket"]))
        if stats is not None:
            stats.add.remote(label, 0, 0, time.perf_counter() - t0, {})
        return out

    return fn


def _split_block(
    stage: GlobalStage[Any], label: str, buckets: int, stats: Any, context_ref: Any, extra: bool, block: pa.Table
) -> list[pa.Table]:
    """Task: key rows of one block (in ``batch_size`` slices), cut into ``buckets`` partitions."""
    _prepare_global(stage, context_ref, {})
    t0 = time.perf_counter()
    if not extra:
        block = block.filter(_is_live(block))
    parts: list[list[pa.Table]] = [[] for _ in range(buckets)]
    step = max(1, int(stage.batch_size))
    for start in range(0, block.num_rows, step):
        piece = block.slice(start, step)
        keys = stage.extra_keys(piece) if extra else stage.keys(piece)  # type: ignore[attr-defined]
        if keys.num_rows == 0:
            continue
        bucket = (keys.column("key").to_numpy() & np.uint64(buckets - 1)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        counts = np.bincount(bucket, minlength=buckets)
        keys = keys.take(pa.array(order))
        offset = 0
        for i, c in enumerate(counts.tolist()):
            if c:
                parts[i].append(keys.slice(offset, c))
            offset += c
    if stats is not None:
        stats.add.remote(label, 0, 0, time.perf_counter() - t0, {})
    return [pa.concat_tables(p) if p else pa.table({}) for p in parts]


def _reduce_parts(stage: GlobalStage[Any], label: str, stats: Any, context_ref: Any, *parts: pa.Table) -> pa.Table:
    """Task: every key row of one partition (so all rows of each of its keys) -> ``reduce``."""
    rows = [p for p in parts if p.num_columns and p.num_rows]
    if not rows:
        return pa.table({})
    _prepare_global(stage, context_ref, {})
    t0 = time.perf_counter()
    out = stage.reduce(pa.concat_tables(rows, promote_options="default"))
    if stats is not None:
        stats.add.remote(label, 0, 0, time.perf_counter() - t0, {})
    return out


def _shuffle_reduce_tasks(
    stage: GlobalStage[Any], label: str, ds: Any, extra: list[str], buckets: int, remote: dict[str, Any], stats: Any, context_ref: Any
) -> list[pa.Table]:
    """keys -> hash partitions -> reduce as plain Ray tasks over the materialised blocks: one
    split task per block (``buckets`` small outputs), one reduce task per partition."""
    import ray
    import ray.data

    opts = {k: v for k, v in remote.items() if k in ("num_cpus", "num_gpus", "memory")}
    split = ray.remote(_split_block).options(num_returns=buckets, **opts)
    reduce = ray.remote(_reduce_parts).options(**opts)
    stage_ref = ray.put(stage)
    blocks = [(False, ref) for ref in ds.to_arrow_refs()]
    if extra:
        blocks += [(True, ref) for ref in ray.data.read_parquet(extra).to_arrow_refs()]
    splits = [split.remote(stage_ref, label, buckets, stats, context_ref, is_extra, ref) for is_extra, ref in blocks]
    reduced = [reduce.remote(stage_ref, label, stats, context_ref, *[s[i] for s in splits]) for i in range(buckets)]
    return [t for t in ray.get(reduced) if t.num_columns]


def _run_global(
    stage: GlobalStage[Any],
    label: str,
    ds: Any,
    num_cpus: float,
    remote: dict[str, Any],
    stats: Any,
    target: "WriteTarget",
    log: Callable[[str], None] = lambda _m: None,
) -> pa.Table:
    """Run a global stage on the materialised ``ds``; returns ``resolve``'s drops.

    Optional protocol (duck-typed, so a plain keys/reduce/resolve stage needs none of it):

    - Before the first round the stage gets ``buckets`` (the number of hash partitions: a key
      row goes to partition ``key & (buckets - 1)``), ``output_uri`` and ``run_id`` (the dataset
      this run writes and the run's id, for side outputs such as an index saved next to it).
    - ``rounds`` (default 1): a stage may run several keys -> reduce -> resolve rounds over the same
      materialised input. ``stage.round`` is the current round (0-based) in keys, reduce and
      resolve; ``resolve`` of a non-final round returns a table that ``keys`` and ``reduce`` of the
      next round see as ``stage.context``. ``rounds`` is read again after every ``resolve``, so a
      stage can stop early by lowering it; the last round's ``resolve`` returns the drops.
    - ``extra_inputs()`` -> list of Parquet paths (files or folders): read in parallel and mapped
      by ``extra_keys(table)`` into more key rows of the round (same schema as ``keys``'s), e.g.
      an index saved by an earlier run.
    """
    import ray
    import ray.data

    buckets = 1 << max(3, int(np.ceil(np.log2(max(2, num_cpus * 4)))))
    stage.buckets = buckets  # type: ignore[attr-defined]
    stage.output_uri = target.main_uri  # type: ignore[attr-defined]
    stage.run_id = target.run_id  # type: ignore[attr-defined]
    context_ref = None
    rnd = 0
    while True:
        t0 = time.perf_counter()
        stage.round = rnd  # type: ignore[attr-defined]
        ray.get(stats.phase.remote(label, "keys" if rnd == 0 else f"keys {rnd + 1}"))
        extra = list(getattr(stage, "extra_inputs", lambda: [])())
        if os.environ.get("CURATE_GLOBAL_SHUFFLE", "tasks") == "tasks":
            parts = _shuffle_reduce_tasks(stage, label, ds, extra, buckets, remote, stats, context_ref)
        else:
            keys = ds.map_batches(_keys_fn(stage, label, buckets, stats, context_ref), batch_size=stage.batch_size, batch_format="pyarrow", **remote)
            if extra:
                more = ray.data.read_parquet(extra).map_batches(
                    _extra_keys_fn(stage, label, buckets, stats, context_ref), batch_size=stage.batch_size, batch_format="pyarrow", **remote
                )
                keys = keys.union(more)
            reduced = keys.groupby("_bucket").map_groups(_reduce_fn(stage, label, stats, context_ref), batch_format="pyarrow", **remote)
            parts = [t for t in (ray.get(ref) for ref in reduced.to_arrow_refs()) if t.num_columns]
        ray.get(stats.phase.remote(label, "resolve"))
        reduced_table = pa.concat_tables(parts) if parts else pa.table({})
        t1 = time.perf_counter()
        result = stage.resolve(reduced_table)
        log(
            f"{label} round {rnd + 1}: keys+shuffle+reduce {t1 - t0:.2f}s ({reduced_table.num_rows} rows reduced), "
            f"resolve {time.perf_counter() - t1:.2f}s"
        )
        rnd += 1
        if rnd >= int(getattr(stage, "rounds", 1)):
            return result
        context_ref = ray.put(result)


def _apply_fn(stage_label: str, drops_ref: Any, stats: Any) -> Callable[[pa.Table], pa.Table]:
    cache: dict[str, Any] = {}

    def fn(batch: pa.Table) -> pa.Table:
        import ray

        if "drops" not in cache:
            drops: pa.Table = ray.get(drops_ref)
            order = np.argsort(drops.column(POS).to_numpy(), kind="stable")
            cache["pos"] = drops.column(POS).to_numpy()[order]
            cache["table"] = drops.take(pa.array(order))
        pos_sorted: np.ndarray = cache["pos"]
        dtab: pa.Table = cache["table"]
        live = _is_live(batch).to_numpy(zero_copy_only=False)
        if len(pos_sorted) == 0:
            if stats is not None:
                stats.add.remote(stage_label, int(live.sum()), 0, 0.0, {})
            return batch
        pos = batch.column(POS).to_numpy()
        idx = np.searchsorted(pos_sorted, pos)
        idx_c = np.minimum(idx, len(pos_sorted) - 1)
        hit = (pos_sorted[idx_c] == pos) & live
        if stats is not None:
            stats.add.remote(stage_label, int(live.sum()), int(hit.sum()), 0.0, {})
        if not hit.any():
            return batch
        rows = dtab.take(pa.array(idx_c))
        mask = pa.array(hit)
        nulls = pa.nulls(batch.num_rows, pa.string())
        updates = {
            DROP_STAGE: pc.if_else(mask, pa.scalar(stage_label), batch.column(DROP_STAGE)),
            DROP_RULE: pc.if_else(mask, rows.column("rule"), batch.column(DROP_RULE)),
            DROP_REASON: pc.if_else(mask, rows.column("reason"), batch.column(DROP_REASON)),
            DUPLICATE_OF: pc.if_else(mask, rows.column("duplicate_of"), nulls),
        }
        for name, arr in updates.items():
            batch = batch.set_column(batch.schema.get_field_index(name), name, arr)
        return batch

    return fn


# ---------------------------------------------------------------- writing


@dataclasses.dataclass(frozen=True)
class WriteTarget:
    main_uri: str
    dropped_uri: str | None
    run_id: str
    shard_rows: int
    shard_bytes: int
    compression: str
    storage_options: dict[str, str]


def _filesystem(uri: str, storage_options: dict[str, str]) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    if "://" not in uri:
        os.makedirs(uri, exist_ok=True)
        return pafs.LocalFileSystem(), uri
    if storage_options:
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(uri, **storage_options)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    return pafs.FileSystem.from_uri(uri)


def _write_shards(table: pa.Table, uri: str, kind: str, target: WriteTarget) -> list[dict[str, Any]]:
    if table.num_rows == 0:
        return []
    fs, base = _filesystem(uri, target.storage_options)
    # Split so each shard has at most shard_rows rows and roughly shard_bytes bytes (uncompressed).
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    rows_per_shard = max(1, min(target.shard_rows, target.shard_bytes // per_row))
    out = []
    for start in range(0, table.num_rows, rows_per_shard):
        part = table.slice(start, rows_per_shard)
        name = f"part-{target.run_id}-{uuid.uuid4().hex[:12]}.{target.compression if target.compression != 'none' else 'plain'}.parquet"
        path = f"{base.rstrip('/')}/{name}"
        pq.write_table(part, path, filesystem=fs, compression=None if target.compression == "none" else target.compression)
        size = fs.get_file_info(path).size
        out.append(
            {
                "kind": kind,
                "path": name,
                "size": int(size),
                "rows": part.num_rows,
                "info": json.dumps({"numRecords": part.num_rows, "modification_time": int(time.time() * 1000)}),
            }
        )
    return out


def _write_fn(target: WriteTarget) -> Callable[[pa.Table], pa.Table]:
    def fn(batch: pa.Table) -> pa.Table:
        live_mask = _is_live(batch)
        live = batch.filter(live_mask).drop_columns([c for c in INTERNAL_COLUMNS if c in batch.schema.names])
        live = _fix_null_types(live)
        results = _write_shards(live, target.main_uri, "main", target)
        dead = batch.filter(pc.invert(live_mask))
        counts: dict[str, dict[str, int]] = {}
        if dead.num_rows:
            vc = pc.value_counts(
                pc.binary_join_element_wise(dead.column(DROP_STAGE), dead.column(DROP_RULE), "\x1f")
            )
            for r in vc.to_pylist():
                stage, _, rule = str(r["values"]).partition("\x1f")
                counts.setdefault(stage, {})[rule] = counts.get(stage, {}).get(rule, 0) + int(r["counts"])
            if target.dropped_uri:
                dropped = pa.table(
                    {
                        "id": dead.column("id"),
                        "text": dead.column("text"),
                        "stage": dead.column(DROP_STAGE),
                        "rule": dead.column(DROP_RULE),
                        "reason": dead.column(DROP_REASON),
                        "duplicate_of": dead.column(DUPLICATE_OF),
                    },
                    schema=DROPPED_SCHEMA,
                )
                results += _write_shards(dropped, target.dropped_uri, "dropped", target)
        results.append(
            {"kind": "counts", "path": "", "size": 0, "rows": live.num_rows, "info": json.dumps({"dropped": counts, "total": batch.num_rows})}
        )
        return pa.Table.from_pylist(results, schema=WRITE_RESULT_SCHEMA)

    return fn


def _fix_null_types(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_null(field.type):
            table = table.set_column(i, pa.field(field.name, pa.string()), table.column(i).cast(pa.string()))
    return table


# ---------------------------------------------------------------- the plan


@dataclasses.dataclass
class Plan:
    """What the driver needs to execute and observe a pipeline."""

    stats: Any
    results: Iterator[pa.Table]


def stage_labels(stages: list[Stage[Any]]) -> list[str]:
    """Unique display names: ``normalize``, ``length_filter``, ``length_filter#2`` ..."""
    seen: dict[str, int] = {}
    labels = []
    for s in stages:
        base = s.name or type(s).__name__
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return labels


def build_and_run(
    tasks: list[ReadTask],
    input_cfg: InputConfig,
    stages: list[Stage[Any]],
    target: WriteTarget,
    *,
    num_cpus: float,
    log: Callable[[str], None] = lambda _m: None,
    on_stats: Callable[[Any], None] = lambda _s: None,
    shuffle_strategy: str = "sort_shuffle_pull_based",
) -> Iterator[pa.Table]:
    """Build the Ray Data plan and stream the writer's metadata tables back to the driver."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.shuffle_strategy = shuffle_strategy
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    try:
        ctx.enable_operator_progress_bars = False
    except Exception:  # older Ray
        pass

    stats = ray.remote(num_cpus=0)(Stats).remote()
    on_stats(stats)
    labels = stage_labels(stages)

    def read(batch: pa.Table) -> Iterator[pa.Table]:
        for item in batch.to_pylist():
            yield from read_task(task_from_row(item), input_cfg)

    items = [task_to_row(t) for t in tasks]
    ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    # The reader gets its own resource shape (half a CPU: reading overlaps I/O) so Ray does not
    # fuse it with the stages: a fused operator bundles its input rows (one per read task) up to
    # the stages' batch size, which put every read task of a run into one Ray task on one core.
    ds = ds.map_batches(_read_with_stats(read, stats), batch_size=1, batch_format="pyarrow", num_cpus=0.5)

    for stage, label in zip(stages, labels):
        res = stage.resources
        remote: dict[str, Any] = {"num_cpus": res.cpus}
        if res.gpus:
            remote["num_gpus"] = res.gpus
        if res.memory:
            remote["memory"] = res.memory
        if isinstance(stage, GlobalStage):
            ray.get(stats.phase.remote(label, "keys"))
            t0 = time.perf_counter()
            ds = ds.materialize()
            log(f"{label}: upstream materialised in {time.perf_counter() - t0:.2f}s")
            drops = _run_global(stage, label, ds, num_cpus, remote, stats, target, log)
            log(f"{label}: {drops.num_rows} rows to drop")
            ray.get(stats.phase.remote(label, "apply"))
            ds = ds.map_batches(_apply_fn(label, ray.put(drops), stats), batch_size=stage.batch_size, batch_format="pyarrow", num_cpus=1)
        elif stage.stateful:
            ds = ds.map_batches(
                _ActorStage,
                fn_constructor_args=(stage, label, stats),
                batch_size=stage.batch_size,
                batch_format="pyarrow",
                concurrency=(1, max(1, int(num_cpus // max(res.cpus, 1)))),
                **remote,
            )
        else:
            ds = ds.map_batches(_stage_fn(stage, label, stats), batch_size=stage.batch_size, batch_format="pyarrow", **remote)

    # One write per block as blocks arrive (shards stay within shard_rows/shard_bytes): a larger
    # batch size would make the writer wait for, and bundle, many upstream blocks.
    ds = ds.map_batches(_write_fn(target), batch_size=None, batch_format="pyarrow")
    yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)


def _stage_fn(stage: Stage[Any], label: str, stats: Any) -> Callable[[pa.Table], pa.Table]:
    def fn(batch: pa.Table) -> pa.Table:
        return run_stage_on_batch(stage, label, batch, stats)

    return fn


def _read_with_stats(read: Callable[[pa.Table], Iterator[pa.Table]], stats: Any) -> Callable[[pa.Table], Iterator[pa.Table]]:
    def fn(batch: pa.Table) -> Iterator[pa.Table]:
        t0 = time.perf_counter()
        for table in read(batch):
            bad = table.num_rows - (pc.sum(_is_live(table)).as_py() or 0)
            stats.add.remote("read", table.num_rows, bad, time.perf_counter() - t0, {})
            yield table
            t0 = time.perf_counter()

    return fn


__all__ = ["build_and_run", "WriteTarget", "Stats", "stage_labels", "run_stage_on_batch", "DROPPED_SCHEMA", "DROP_COLUMNS"]
