"""Building and running the Ray Data plan of a pipeline.

read tasks -> stages (``map_batches``: tasks, or actor pools for stateful / async stages)
-> writer. Global stages split the plan: the data before one is materialised in Ray's object
store (or, when the work before it is expensive, checkpointed to the journal and read back),
the stage runs as a shuffle (:mod:`.shuffle`), and a ``map_batches`` marks its drops.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .. import journal
from ..config import InputConfig
from ..readers import read_task, task_from_row
from ..stage import Expand, GlobalStage, Stage
from .apply import apply_expand, apply_stage, ensure_setup, is_live, with_engine_columns
from .shuffle import mark_global_drops, run_global, sorted_drops
from .stats import Stats
from .writer import WriteTarget, write_block


@dataclasses.dataclass
class ExecPlan:
    """Everything the driver needs, decided before Ray starts."""

    tasks: list[dict[str, Any]]  # read tasks still to run (rows: see readers.task_to_row / source_task)
    input_cfg: InputConfig | None
    stages: list[Stage[Any]]
    labels: list[str]
    target: WriteTarget  # the final writer
    #: journal attempt folder (None: no resume journal for this run)
    journal_uri: str | None = None
    #: checkpoint the rows before the first global stage into the journal (``checkpoint_uri``)
    checkpoint_uri: str | None = None
    #: checkpoint shards of tasks completed by earlier attempts (read back, not recomputed)
    reused_checkpoints: list[str] = dataclasses.field(default_factory=list)


def ray_args(stage: Stage[Any], cluster: dict[str, float]) -> dict[str, Any]:
    """``map_batches`` arguments from a stage's effective run settings."""
    s = stage.settings
    res = s.resources
    args: dict[str, Any] = {"batch_size": s.batch_size, "batch_format": "pyarrow", "num_cpus": res.cpus}
    if res.gpus:
        args["num_gpus"] = res.gpus
    if res.memory:
        args["memory"] = res.memory
    import ray.data

    if uses_actors(stage):
        if s.concurrency:
            args["compute"] = ray.data.ActorPoolStrategy(size=s.concurrency)
        elif res.gpus:
            # one actor per GPU share the cluster has: the pool is sized by GPUs, not CPUs
            args["compute"] = ray.data.ActorPoolStrategy(size=max(1, math.floor(cluster.get("GPU", 0) / res.gpus)))
        else:
            args["compute"] = ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, math.floor(cluster.get("CPU", 1) / max(res.cpus, 1e-9))))
        retries = {"max_restarts": s.max_retries, "max_task_retries": s.max_retries}
    else:
        if s.concurrency:
            args["compute"] = ray.data.TaskPoolStrategy(size=s.concurrency)
        retries = {"max_retries": s.max_retries}
    # Retries have no named map_batches parameter: they go as Ray remote args, which Ray 2.60
    # calls deprecated (for removal in 2.64; _map_stage silences that warning)
    args.update(retries)
    return args


def uses_actors(stage: Stage[Any]) -> bool:
    return stage.stateful or (isinstance(stage, Expand) and stage.is_async())


def _apply(stage: Stage[Any], label: str, batch: pa.Table) -> tuple[pa.Table, Any]:
    if isinstance(stage, Expand):
        return apply_expand(stage, label, batch)
    return apply_stage(stage, label, batch)


class _StageActor:
    """Actor-pool wrapper: ``setup()`` once per actor (a model, a client, an event loop)."""

    def __init__(self, stage: Stage[Any], label: str, stats: Any) -> None:
        self.stage, self.label, self.stats = stage, label, stats
        ensure_setup(stage)

    def __call__(self, batch: pa.Table) -> pa.Table:
        table, r = _apply(self.stage, self.label, batch)
        if r.rows_in:
            self.stats.add.remote(self.label, r.rows_in, r.dropped, r.seconds, r.counters, r.rows_out)
        return table

    def __del__(self) -> None:
        # Ray Data drops the UDF when the pool shuts down gracefully: the stage's teardown()
        try:
            self.stage.teardown()
        except Exception as exc:  # a failed clean-up must not fail a finished run
            import sys

            print(f"curate: stage {self.label!r}: teardown() failed: {exc!r}", file=sys.stderr)


def _stage_fn(stage: Stage[Any], label: str, stats: Any) -> Callable[[pa.Table], pa.Table]:
    def fn(batch: pa.Table) -> pa.Table:
        table, r = _apply(stage, label, batch)
        if r.rows_in:
            stats.add.remote(label, r.rows_in, r.dropped, r.seconds, r.counters, r.rows_out)
        return table

    return fn


def _read_fn(input_cfg: InputConfig | None, stats: Any, journal_uri: str | None, storage_options: dict[str, str]) -> Callable[[pa.Table], Iterator[pa.Table]]:
    def fn(batch: pa.Table) -> Iterator[pa.Table]:
        for item in batch.to_pylist():
            task = int(item["task"])
            rows = 0
            t0 = time.perf_counter()
            tables = iter(_task_tables(item, input_cfg, storage_options))
            if item["kind"] == "pending":  # rows fed back are not journaled (the run that wrote them was)
                record = None
            else:
                record = journal_uri
            current = next(tables, None)
            while current is not None:
                table = with_engine_columns(current, task)
                rows += table.num_rows
                # read one table ahead: the task's read record is written before its last rows
                # leave, so a task whose rows all reached the writer always has its record
                current = next(tables, None)
                if current is None and record is not None:
                    journal.record_read(record, task, rows, storage_options)
                bad = table.num_rows - (pc.sum(is_live(table)).as_py() or 0)
                stats.add.remote("read", table.num_rows, bad, time.perf_counter() - t0, {})
                yield table
                t0 = time.perf_counter()
            if rows == 0 and record is not None:
                journal.record_read(record, task, 0, storage_options)

    return fn


def _task_tables(item: dict[str, Any], input_cfg: InputConfig | None, storage_options: dict[str, str]) -> Iterator[pa.Table]:
    from .. import pending
    from ..readers import read_source_task

    if item["kind"] == "source":
        return read_source_task(item)
    if item["kind"] == "pending":
        return pending.read_task(item, storage_options)
    return read_task(task_from_row(item), input_cfg)  # type: ignore[arg-type]


def _apply_drops_fn(label: str, drops_ref: Any, stats: Any) -> Callable[[pa.Table], pa.Table]:
    cache: dict[str, Any] = {}

    def fn(batch: pa.Table) -> pa.Table:
        import ray

        if batch.num_rows == 0:
            return batch
        if "pos" not in cache:
            cache["pos"], cache["table"] = sorted_drops(ray.get(drops_ref))
        batch, live, hits = mark_global_drops(batch, label, cache["pos"], cache["table"])
        stats.add.remote(label, live, hits, 0.0, {})
        return batch

    return fn


def configure_ray_data() -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    try:
        ctx.enable_operator_progress_bars = False
    except Exception:  # older Ray
        pass


def _write_fn(target: WriteTarget) -> Callable[[pa.Table], pa.Table]:
    def fn(batch: pa.Table) -> pa.Table:
        return write_block(batch, target)

    return fn


def _write(ds: Any, target: WriteTarget) -> Iterator[pa.Table]:
    # one write per block as blocks arrive (shards stay within shard_rows/shard_bytes): a larger
    # batch size would make the writer wait for, and bundle, many upstream blocks
    ds = ds.map_batches(_write_fn(target), batch_size=None, batch_format="pyarrow")
    yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)


def execute(
    plan: ExecPlan,
    *,
    cluster: dict[str, float],
    log: Callable[[str], None] = lambda _m: None,
    on_stats: Callable[[Any], None] = lambda _s: None,
) -> Iterator[tuple[str, pa.Table]]:
    """Run the plan; yields ``(phase, metadata table)`` from the writers: phase ``"journaled"``
    for the writer whose shards the journal records (the final writer, or the checkpoint writer
    before a global stage), ``"final"`` for a final writer after global stages."""
    import ray
    import ray.data

    configure_ray_data()
    stats: Any = ray.remote(num_cpus=0)(Stats).remote()
    on_stats(stats)
    first_global = next((i for i, s in enumerate(plan.stages) if isinstance(s, GlobalStage)), len(plan.stages))
    so = plan.target.storage_options
    ds: Any = None
    if plan.tasks:
        ds = ray.data.from_items(plan.tasks, override_num_blocks=max(1, len(plan.tasks)))
        # The reader gets its own resource shape (half a CPU: reading overlaps I/O) so Ray does
        # not fuse it with the stages: a fused operator bundles its input rows (one per read
        # task) up to the stages' batch size, putting every read task into one Ray task.
        ds = ds.map_batches(_read_fn(plan.input_cfg, stats, plan.journal_uri, so), batch_size=1, batch_format="pyarrow", num_cpus=0.5)
        for stage, label in zip(plan.stages[:first_global], plan.labels[:first_global]):
            ds = _map_stage(ds, stage, label, stats, cluster)

    if first_global == len(plan.stages):
        if ds is not None:
            for table in _write(ds, plan.target):
                yield "journaled", table
        return

    if plan.checkpoint_uri is not None:
        ckpt_files = list(plan.reused_checkpoints)
        if ds is not None:
            ckpt_target = dataclasses.replace(plan.target, checkpoint_uri=plan.checkpoint_uri, dropped_uri=None)
            for table in _write(ds, ckpt_target):
                yield "journaled", table
                ckpt_files += [f"{plan.checkpoint_uri.rstrip('/')}/{p}" for k, p in zip(table.column("kind").to_pylist(), table.column("path").to_pylist()) if k == "ckpt"]
        if not ckpt_files:
            return
        log(f"reading back {len(ckpt_files)} checkpoint shards")
        ds = ray.data.read_parquet(ckpt_files, **_parquet_fs(ckpt_files[0], so))
    elif ds is None:
        return

    for stage, label in zip(plan.stages[first_global:], plan.labels[first_global:]):
        if isinstance(stage, GlobalStage):
            stats.phase.remote(label, "keys")
            t0 = time.perf_counter()
            ds = ds.materialize()
            log(f"{label}: upstream materialised in {time.perf_counter() - t0:.2f}s")
            remote = {k: v for k, v in ray_args(stage, cluster).items() if k in ("num_cpus", "num_gpus", "memory")}
            drops = run_global(
                stage, label, ds, cpus=float(cluster.get("CPU", 1)), remote=remote, stats=stats,
                output_uri=plan.target.main_uri, storage_options=so, run_id=plan.target.run_id, log=log,
            )
            log(f"{label}: {drops.num_rows} rows to drop")
            stats.phase.remote(label, "apply")
            ds = ds.map_batches(_apply_drops_fn(label, ray.put(drops), stats), batch_size=stage.settings.batch_size, batch_format="pyarrow", num_cpus=1)
        else:
            ds = _map_stage(ds, stage, label, stats, cluster)
    for table in _write(ds, plan.target):
        yield "final", table


def _parquet_fs(uri: str, storage_options: dict[str, str]) -> dict[str, Any]:
    if "://" not in uri or not storage_options:
        return {}
    from .. import fs

    filesystem, _ = fs.filesystem(uri, storage_options)
    return {"filesystem": filesystem}


def _map_stage(ds: Any, stage: Stage[Any], label: str, stats: Any, cluster: dict[str, float]) -> Any:
    import warnings

    args = ray_args(stage, cluster)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        if uses_actors(stage):
            return ds.map_batches(_StageActor, fn_constructor_args=(stage, label, stats), **args)
        return ds.map_batches(_stage_fn(stage, label, stats), **args)
