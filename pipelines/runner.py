"""Executing a validated pipeline: plan inputs, start Ray, stream, commit, report."""

from __future__ import annotations

import dataclasses
import getpass
import json
import logging
import os
import socket
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
from rich.console import Console

import curate

from .config import Pipeline
from .errors import ConfigError, CurateError
from .progress import ProgressDisplay, summary_table
from .ray_adapter import DROPPED_SCHEMA, WriteTarget, build_and_run, stage_labels
from .readers import plan_inputs, split_tasks

from .store import commit, table_uri

log = logging.getLogger("curate")


@dataclasses.dataclass
class RunResult:
    run_id: str
    version: int
    dropped_version: int | None
    rows: int
    dropped: int
    stages: list[dict[str, Any]]
    log_file: str
    seconds: float


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


_current_log: list[str] = []


def current_log_file() -> str | None:
    return _current_log[-1] if _current_log else None


def _setup_log(log_dir: str, run_id: str) -> Path:
    path = Path(log_dir) / f"{run_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    _current_log.append(str(path))
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    _route_ray_logs()
    return path


def _route_ray_logs() -> None:
    """Ray's own messages go to the run's log file, not the terminal."""
    handlers = list(log.handlers)
    for name in ("ray", "ray.data", "ray.util", "ray._private", "ray.air"):
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(logging.INFO if name == "ray.data" else logging.WARNING)
        lg.propagate = False


def _start_ray(pipeline: Pipeline) -> dict[str, Any]:
    import ray

    rc = pipeline.config.ray
    # Plugin stages given as module:Class must be importable by workers too.
    pythonpath = os.pathsep.join(dict.fromkeys([os.getcwd(), str(pipeline.base_dir), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]))
    runtime_env = {"env_vars": {"PYTHONPATH": pythonpath}}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
        "runtime_env": runtime_env,
        # Ray's default logging set-up (its handlers are re-routed to the run log below). With
        # configure_logging=False the driver crashed in the GC in about 1 run of 4 here (Ray 2.60).
        "configure_logging": True,
    }
    if rc.address and rc.address != "local":
        kwargs["address"] = rc.address
    else:
        if rc.num_cpus:
            kwargs["num_cpus"] = rc.num_cpus
        if rc.object_store_memory:
            kwargs["object_store_memory"] = int(rc.object_store_memory)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray.data  # noqa: F401  (configures its loggers on import; re-routed below)

    _route_ray_logs()
    if ray.is_initialized():
        # Embedded use (a notebook, an Airflow task, tests): use the caller's Ray, leave it running.
        log.info("using the already initialised Ray")
    else:
        ray.init(**kwargs)
        _owned.append(True)
    _route_ray_logs()
    resources = ray.cluster_resources()
    for stage in pipeline.stages:
        if stage.resources.gpus and resources.get("GPU", 0) < stage.resources.gpus:
            raise ConfigError(
                f"stage {stage.name!r} needs {stage.resources.gpus} GPU(s) but the Ray cluster has {resources.get('GPU', 0)}",
                hint="run on a cluster with GPUs (ray.address) or choose a CPU engine for this stage",
            )
    return resources


def _warm_up() -> int:
    # what every stage task imports: paid once per worker process, here in parallel
    import pyarrow.compute  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import ray.data  # noqa: F401

    import curate._native  # noqa: F401
    import curate.pipelines.ray_adapter  # noqa: F401

    return os.getpid()


def _warm_workers(n: int) -> None:
    """Start and import into one worker process per CPU before the pipeline's first tasks."""
    import ray

    t0 = time.time()
    warm = ray.remote(num_cpus=1)(_warm_up)
    pids = ray.get([warm.remote() for _ in range(max(1, n))])
    log.info("warmed %d worker processes in %.1fs", len(set(pids)), time.time() - t0)


_owned: list[bool] = []


def _stop_ray() -> None:
    import ray

    if _owned:
        _owned.clear()
        ray.shutdown()


def _unwrap(exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray task failure, if there is one."""
    seen = 0
    while seen < 10:
        seen += 1
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException) and cause is not exc:
            exc = cause
            continue
        if exc.__cause__ is not None and not isinstance(exc, CurateError):
            exc = exc.__cause__
            continue
        break
    return exc


def run_pipeline(pipeline: Pipeline, *, console: Console | None = None, progress: bool | None = None) -> RunResult:
    console = console or Console(stderr=True)
    cfg = pipeline.config
    run_id = new_run_id()
    log_file = _setup_log(cfg.run.log_dir, run_id)
    t_start = time.time()
    log.info("run %s of %s (curate %s)", run_id, pipeline.source, curate.__version__)
    log.info("resolved config: %s", json.dumps(pipeline.resolved(), sort_keys=True))

    # Everything that can fail on bad input is checked before Ray starts.
    files = plan_inputs(cfg.input)
    tasks = split_tasks(files, cfg.input)
    log.info("%d input files, %d read tasks, %d bytes", len(files), len(tasks), sum(f.size for f in files))
    for f in files:
        if f.size == 0:
            log.warning("input file %s is empty", f.path)
            console.print(f"[yellow]warning:[/] input file {f.path} is empty")

    import ray

    t_ray = time.time()
    resources = _start_ray(pipeline)
    if os.environ.get("CURATE_WARM", "1") != "0":
        _warm_workers(int(resources.get("CPU", 1)))
    t_ray_up = time.time()
    log.info("ray started in %.1fs: %s", t_ray_up - t_ray, resources)
    labels = stage_labels(pipeline.stages)
    main_uri = table_uri(cfg.output.dataset)
    dropped_uri = table_uri(cfg.output.dropped_path) if cfg.output.keep_dropped else None
    target = WriteTarget(
        main_uri=main_uri,
        dropped_uri=dropped_uri,
        run_id=run_id,
        shard_rows=cfg.output.shard_rows,
        shard_bytes=int(cfg.output.shard_bytes),
        compression=cfg.output.compression,
        storage_options=cfg.output.storage_options,
    )
    stats_holder: dict[str, Any] = {}
    main_files: list[dict[str, Any]] = []
    dropped_files: list[dict[str, Any]] = []
    dropped_counts: dict[str, dict[str, int]] = {}
    total = 0
    kept = 0

    def poll() -> dict[str, dict[str, Any]]:
        actor = stats_holder.get("actor")
        return ray.get(actor.snapshot.remote(), timeout=5) if actor is not None else {}

    show = cfg.run.progress if progress is None else progress
    try:
        with ProgressDisplay(poll, labels, console, show, log.info):
            for batch in build_and_run(
                tasks,
                cfg.input,
                pipeline.stages,
                target,
                num_cpus=float(resources.get("CPU", 1)),
                log=log.info,
                on_stats=lambda a: stats_holder.__setitem__("actor", a),
            ):
                for row in batch.to_pylist():
                    if row["kind"] == "main":
                        main_files.append(row)
                    elif row["kind"] == "dropped":
                        dropped_files.append(row)
                    else:
                        info = json.loads(row["info"])
                        total += info["total"]
                        kept += row["rows"]
                        for stage, rules in info["dropped"].items():
                            for rule, n in rules.items():
                                dropped_counts.setdefault(stage, {})[rule] = dropped_counts.get(stage, {}).get(rule, 0) + n
        live_stats = poll()
    except BaseException as exc:
        inner = _unwrap(exc)
        log.error("run failed: %r", inner, exc_info=not isinstance(inner, CurateError))
        _stop_ray()
        if isinstance(inner, CurateError):
            raise inner from None
        raise
    t_exec = time.time()

    stage_stats = []
    rows_in = total
    for label in ["read", *labels]:
        by_rule = dropped_counts.get(label, {})
        dropped = sum(by_rule.values())
        live = live_stats.get(label, {})
        stage_stats.append(
            {
                "stage": label,
                "in": rows_in,
                "out": rows_in - dropped,
                "dropped": dropped,
                "dropped_by_rule": by_rule,
                "counters": live.get("counters", {}),
                "seconds": round(live.get("seconds", 0.0), 3),
            }
        )
        rows_in -= dropped
    assert rows_in == kept, f"row accounting mismatch: {rows_in} != {kept}"

    metadata = {
        "run_id": run_id,
        "curate_version": curate.__version__,
        "pipeline_file": os.path.abspath(pipeline.source),
        "config": pipeline.resolved(),
        "config_fingerprint": pipeline.fingerprint(),
        "inputs": [{"path": f.path, "size": f.size, "mtime": f.mtime} for f in files],
        "stages": stage_stats,
        "stage_metadata": {label: s.metadata() for label, s in zip(labels, pipeline.stages) if s.metadata()},
        "rows": kept,
        "rows_in": total,
        "timings": {"ray_start_s": round(t_ray_up - t_ray, 3), "execute_s": round(t_exec - t_ray_up, 3)},
        "ray": {"address": cfg.ray.address or "local", "resources": {k: v for k, v in resources.items() if not k.startswith("node:")}},
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "started_at": datetime.fromtimestamp(t_start, timezone.utc).isoformat(),
    }
    pause = float(os.environ.get("CURATE_PAUSE_BEFORE_COMMIT", "0") or 0)
    if pause > 0:  # a failure-injection point for tests: every shard is written, nothing committed
        log.info("pausing %.1fs before the commit (CURATE_PAUSE_BEFORE_COMMIT)", pause)
        time.sleep(pause)
    dropped_version = None
    # The dropped-rows table is committed first: the main commit, which makes the run visible,
    # names the dropped version, so a crash between the two never points at a missing version.
    if dropped_uri is not None:
        dropped_version = commit(
            dropped_uri,
            dropped_files,
            mode=cfg.output.mode,
            metadata={"run_id": run_id, "of_dataset": main_uri},
            storage_options=cfg.output.storage_options,
            default_schema=DROPPED_SCHEMA,
            name=None,
        )
        metadata["dropped_dataset"] = {"path": dropped_uri, "version": dropped_version}
    t_commit = time.time()
    metadata["timings"]["commit_s"] = round(time.time() - t_exec, 3)
    metadata["timings"]["total_s"] = round(t_commit - t_start, 3)
    version = commit(
        main_uri,
        main_files,
        mode=cfg.output.mode,
        metadata=metadata,
        storage_options=cfg.output.storage_options,
        default_schema=pa.schema([("id", pa.string()), ("text", pa.string())]),
        name=cfg.name,
    )
    log.info("committed %s version %d (%d rows, %d files)", main_uri, version, kept, len(main_files))
    _stop_ray()
    elapsed = time.time() - t_start
    result = RunResult(run_id, version, dropped_version, kept, total - kept, stage_stats, str(log_file), elapsed)
    console.print(summary_table(stage_stats, f"run {run_id}"))
    console.print(
        f"wrote [bold]{cfg.output.dataset}[/] version [bold]{version}[/]: {kept:,} rows in {len(main_files)} shards"
        + (f"; {total - kept:,} dropped rows in {cfg.output.dropped_path} version {dropped_version}" if dropped_version is not None else "")
        + f" ({elapsed:.1f}s, of which Ray start {t_ray_up - t_ray:.1f}s, processing {t_exec - t_ray_up:.1f}s)",
        highlight=False,
    )
    console.print(f"log: {log_file}", highlight=False)
    return result


__all__ = ["run_pipeline", "RunResult"]
