"""Running a validated pipeline: plan, resume journal, Ray, execute, one commit, report.

:func:`run_pipeline` leaves the process as it found it (logging handlers, ``sys.path``, the
environment, a Ray it did not start), so it can run inside an Airflow task or a notebook; the
``curate run`` command and :func:`curate.run` are thin layers on it.
"""

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
from typing import Any, NoReturn

import pyarrow as pa
from rich.console import Console
from rich.markup import escape

from curate._version import __version__

from . import fs, journal, pending, runkey, store, vacuum
from .config import Pipeline
from .errors import CurateError, TransientFailureError
from .failures import unwrap
from .plan import check_columns, checkpoint_before_global, stage_labels
from .preflight import check_output, plan_run_inputs, validate_plan
from .progress import ProgressDisplay, summary_table
from .session import check_cpus, check_fits, check_gpus, current_log_file, ray_session, run_logging, saved_environ
from .stage import Expand, GlobalStage
from .watchdog import Watchdog

log = logging.getLogger("curate")


@dataclasses.dataclass
class RunResult:
    """What a run did. ``version`` is the version this run committed (``None`` when it
    published nothing because its run key was already committed: see ``skipped``)."""

    run_id: str
    version: int | None
    dropped_version: int | None
    rows: int
    dropped: int
    stages: list[dict[str, Any]]
    log_file: str
    seconds: float
    skipped: bool = False
    resumed_tasks: int = 0
    #: the publish gate's summary (as in the commit metadata), None without ``expectations:``
    expectations: dict[str, Any] | None = None


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def run_pipeline(
    pipeline: Pipeline,
    *,
    console: Console | None = None,
    progress: bool | None = None,
    run_key: str | None = None,
    resume: bool = True,
) -> RunResult:
    console = console or Console(stderr=True)
    run_id = new_run_id()
    with saved_environ(), run_logging(pipeline.config.run.log_dir, run_id) as log_file:
        main_uri, so = fs.table_uri(pipeline.config.output.dataset), pipeline.config.output.storage_options
        try:
            result = _run(pipeline, run_id, str(log_file), console, progress, run_key, resume)
        except BaseException:
            _end_marker(main_uri, run_id, so, failed=True)  # its shards are garbage: `curate vacuum` removes them at once
            raise
        _end_marker(main_uri, run_id, so, failed=result.skipped)  # skipped: its shards are garbage
        return result


def _remove_dead_runs_shards(main_uri: str, so: dict[str, str], console: Console) -> None:
    """After a commit: the unreferenced shards of earlier runs known to have ended without
    publishing them (killed, failed) go, as `curate vacuum --delete` would remove them; shards an
    unfinished run's journal names, and files of runs in progress or of unknown state, stay."""
    try:
        if not vacuum.dead_run_markers(main_uri, so):
            return  # (cheap: the whole history is read only when there is something to remove)
        plan = vacuum.plan_vacuum(main_uri, older_than_minutes=float("inf"), storage_options=so)
        vacuum.apply_vacuum(plan, so)
    except Exception as exc:  # the version is committed: never fail the run for this
        log.warning("could not remove the shards of earlier killed runs: %r", exc)
        return
    if plan.delete:
        msg = f"removed {len(plan.delete)} unreferenced shards of earlier runs that were killed or failed"
        log.info(msg)
        console.print(msg, highlight=False)


def _end_marker(main_uri: str, run_id: str, so: dict[str, str], *, failed: bool) -> None:
    try:
        vacuum.unmark_run(main_uri, run_id, so, failed=failed)
    except Exception as exc:  # never hide the run's own outcome
        log.warning("could not update the run marker of %s: %r", run_id, exc)


@dataclasses.dataclass
class _Run:
    """What one run knows from its start: where it writes, who it is, where it reports."""

    pipeline: Pipeline
    run_id: str
    log_file: str
    console: Console
    run_key: str | None
    t_start: float
    main_uri: str
    dropped_uri: str | None
    so: dict[str, str]

    def say(self, msg: str) -> None:
        log.info(msg)
        self.console.print(msg, highlight=False)


@dataclasses.dataclass
class _Planned:
    """Plan and resume: the read tasks to run, and what earlier attempts already finished."""

    inputs: Any
    labels: list[str]
    fed_back: list[dict[str, Any]]  # rows the previous version kept aside, read again
    key: str  # the journal key
    jr: journal.Journal | None
    reused: dict[Any, Any]  # journal records of read tasks an earlier attempt finished
    again: list[Any]  # their rows kept aside for a transient failure, fed in again
    again_counts: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    has_global: bool
    checkpoint: bool


@dataclasses.dataclass
class _Executed:
    """What the Ray part produced: staged shards, exact counts, per-stage stats, the gate."""

    main_files: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    dropped_files: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pending_files: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    totals: dict[str, Any] = dataclasses.field(default_factory=dict)
    stage_stats: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    gate: dict[str, Any] | None = None
    resources: dict[str, Any] = dataclasses.field(default_factory=dict)
    t_ray: float = 0.0
    t_ray_up: float = 0.0
    t_exec: float = 0.0


def _run(pipeline: Pipeline, run_id: str, log_file: str, console: Console, progress: bool | None, run_key: str | None, resume: bool) -> RunResult:
    """The run's lifecycle: plan and resume, execute on Ray (with the gate), publish, report."""
    out = pipeline.config.output
    run = _Run(pipeline, run_id, log_file, console, run_key, time.time(), fs.table_uri(out.dataset),
               fs.table_uri(out.dropped_path) if out.keep_dropped else None, out.storage_options)
    log.info("run %s of %s (curate %s)", run_id, pipeline.source, __version__)
    log.info("resolved config: %s", json.dumps(pipeline.resolved(), sort_keys=True))
    for stage in pipeline.stages:  # stages that keep state beside the dataset (a request cache)
        stage.bind_output(run.main_uri, run.so)
    # Everything that can fail on bad input is checked before Ray starts (the output first: a
    # plain file where the dataset goes is a ConfigError, not the run key lookup's DeltaError).
    check_output(pipeline)
    if run_key is not None:
        done = store.committed_run_key(run.main_uri, run_key, run.so)
        if done is not None:
            run.say(f"run key {run_key!r} was already committed to {out.dataset} as version {done}: nothing to do")
            return RunResult(run_id, None, None, 0, 0, [], log_file, time.time() - run.t_start, skipped=True)
    planned = _plan(run, resume)
    executed = _execute(run, planned, progress)
    return _publish(run, planned, executed)


def _plan(run: _Run, resume: bool) -> _Planned:
    """The inputs and their columns checked, the run marked alive, and the read tasks left to do
    (an earlier attempt's finished ones taken from the journal, kept-aside rows fed back)."""
    pipeline, cfg = run.pipeline, run.pipeline.config
    inputs = plan_run_inputs(pipeline)
    labels = stage_labels(pipeline.stages)
    fed_back = pending.task_rows(inputs.pending, labels)  # rows the previous version kept aside
    check_columns(pipeline, inputs.columns, "source rows" if cfg.input is None else "input")
    log.info("%d input files, %d read tasks, %d bytes", len(inputs.files), len(inputs.tasks), sum(f.size for f in inputs.files))
    for f in inputs.files:
        if f.size == 0:
            log.warning("input file %s is empty", f.path)
            run.console.print(f"[yellow]warning:[/] input file {f.path} is empty")
    # this run is writing shards into the dataset folder (`curate vacuum` leaves them alone)
    vacuum.mark_run_alive(run.main_uri, run.run_id, run.so)
    has_global = any(isinstance(s, GlobalStage) for s in pipeline.stages)
    checkpoint = checkpoint_before_global(pipeline.stages)
    # the resume journal's key leaves out where and how it runs and the expectations (runkey.py)
    key = runkey.journal_key(pipeline, inputs.tasks + fed_back, run.main_uri)
    jr = _open_journal(run, key) if resume and (checkpoint or not has_global) else None
    reused = jr.reused if jr is not None else {}
    tasks = [t for t in inputs.tasks if int(t["task"]) not in reused] + fed_back
    # rows an earlier attempt kept aside (failed for a transient reason) go in again, not its drops
    again, again_counts = pending.reused_pending(reused) if not has_global else ([], [])
    tasks += pending.journal_task_rows(run.main_uri, again, labels, first=len(fed_back))
    if reused:
        run.say(f"resuming: {len(reused)} of {len(inputs.tasks)} read tasks were finished by an earlier run "
                f"({', '.join(jr.reused_from) if jr else ''})")
    return _Planned(inputs, labels, fed_back, key, jr, reused, again, again_counts, tasks, has_global, checkpoint)


def _open_journal(run: _Run, key: str) -> journal.Journal:
    """The resume journal of ``key``, started afresh when it belongs to a committed version."""
    jr = journal.Journal.open(run.main_uri, key, run.run_id, run.so)
    if jr.reused and _journal_committed(run.main_uri, key, run.so):
        log.info("journal %s belongs to a committed version: starting afresh", key)
        jr.discard_all()
        jr = journal.Journal.open(run.main_uri, key, run.run_id, run.so)
    return jr


def _exec_plan(run: _Run, planned: _Planned) -> Any:
    """The execution engine's plan: tasks, stages, where shards, journal records and the
    checkpoint go."""
    from .execution import ExecPlan, WriteTarget

    out, jr = run.pipeline.config.output, planned.jr
    target = WriteTarget(
        main_uri=run.main_uri, dropped_uri=run.dropped_uri, run_id=run.run_id, shard_rows=out.shard_rows,
        shard_bytes=int(out.shard_bytes), compression=out.compression, storage_options=run.so,
        journal_uri=jr.attempt_uri if jr is not None and not planned.has_global else None,
    )
    reused_checkpoints = [fs.join(fs.join(jr.root, w["attempt"]), "checkpoint", f["path"]) for rec in planned.reused.values()
                          for w in rec.writes for f in w["files"] if f["kind"] == "ckpt"] if jr else []
    return ExecPlan(
        tasks=planned.tasks, input_cfg=run.pipeline.config.input, stages=run.pipeline.stages, labels=planned.labels, target=target,
        journal_uri=jr.attempt_uri if jr is not None else None,
        checkpoint_uri=fs.join(jr.attempt_uri, "checkpoint") if jr is not None and planned.checkpoint else None,
        reused_checkpoints=reused_checkpoints,
    )


def _resumed_outputs(planned: _Planned) -> _Executed:
    """The shards and counts earlier attempts wrote for the read tasks this run skips (less the
    counts of their kept-aside rows, which go in again)."""
    from .execution.writer import merge_counts

    done = _Executed()
    if planned.has_global:
        return done
    for rec in planned.reused.values():
        for w in rec.writes:
            done.main_files += [f for f in w["files"] if f["kind"] == "main"]
            done.dropped_files += [f for f in w["files"] if f["kind"] == "dropped"]
            merge_counts(done.totals, w["counts"])
    for counts in planned.again_counts:
        merge_counts(done.totals, counts, sign=-1)
    return done


def _collect(done: _Executed, batch: Any, final: bool) -> None:
    """One batch of the engine's output rows: counts (of the final phase), shards, kept-aside rows."""
    from .execution.writer import merge_counts

    for row in batch.to_pylist():
        if row["kind"] == "counts":
            if final:
                merge_counts(done.totals, json.loads(row["info"]))
        elif row["kind"] == "main":
            done.main_files.append(row)
        elif row["kind"] == "dropped":
            done.dropped_files.append(row)
        elif row["kind"] == "pending" and final:
            done.pending_files.append(row)


def _poller(run: _Run, jr: journal.Journal | None, stats_holder: dict[str, Any]) -> Any:
    """The live stats of the run (and, every 20 s, the run marker's and journal's heartbeat)."""
    import ray

    last_beat = [time.time()]

    def poll() -> dict[str, dict[str, Any]]:
        if time.time() - last_beat[0] > 20:
            last_beat[0] = time.time()
            try:
                vacuum.mark_run_alive(run.main_uri, run.run_id, run.so)  # the heartbeat of a run on another host
                if jr is not None:
                    jr.heartbeat()
            except OSError as exc:
                log.warning("journal heartbeat failed: %r", exc)
        actor = stats_holder.get("actor")
        return ray.get(actor.snapshot.remote(), timeout=5) if actor is not None else {}

    return poll


def _execute(run: _Run, planned: _Planned, progress: bool | None) -> _Executed:
    """Ray up, the stages run, every output row collected, the transient-failure limit and the
    publish gate checked. Raises on failure (nothing is published)."""
    from .execution import execute

    pipeline, labels, cfg = run.pipeline, planned.labels, run.pipeline.config
    plan = _exec_plan(run, planned)
    if planned.jr is not None:
        planned.jr.start({"run_id": run.run_id, "key": planned.key, "pipeline": os.path.abspath(pipeline.source)})
    done = _resumed_outputs(planned)
    stats_holder: dict[str, Any] = {}
    poll = _poller(run, planned.jr, stats_holder)
    show = cfg.run.progress if progress is None else progress
    done.t_ray = time.time()
    with ray_session(pipeline) as resources:
        done.t_ray_up, done.resources = time.time(), resources
        log.info("ray started in %.1fs: %s", done.t_ray_up - done.t_ray, resources)
        check_gpus(pipeline, labels, resources)
        check_cpus(pipeline, labels, resources)
        check_fits(pipeline, labels, resources)
        _explain_actor_restart_line(pipeline, run.console)
        watchdog = Watchdog(poll, cfg.run.stall_timeout, log.warning)
        try:
            with ProgressDisplay(poll, labels, run.console, show, log.info), watchdog:
                for phase, batch in execute(plan, cluster=resources, log=log.info, on_stats=lambda a: stats_holder.__setitem__("actor", a)):
                    watchdog.beat()
                    _collect(done, batch, final=phase == "final" or not planned.has_global)
        except BaseException as exc:
            _raise_run_failure(exc, watchdog, labels)
        try:
            live_stats = poll()
        except Exception as exc:  # the data is done: a slow stats actor must not fail the run
            log.warning("final live stats unavailable (%r); worker seconds omitted", exc)
            live_stats = {}
        done.t_exec = time.time()
        pending.drop_zero_counts(done.totals)
        done.stage_stats = _stage_stats(labels, pipeline, done.totals, live_stats)
        _check_transient(pipeline, labels, done.stage_stats, done.totals, planned.jr if planned.has_global else None)
        if pipeline.expectations:  # the publish gate, on the staged shards, in Ray tasks: raises if it fails
            from .execution.gate import ray_mapper
            from .expectations.gate import gate_staged

            done.gate = gate_staged(pipeline.expectations, run.main_uri, done.main_files, mode=cfg.output.mode, storage_options=run.so,
                                    log_file=run.log_file, run_id=run.run_id, console=run.console, mapper=ray_mapper)
    return done


def _raise_run_failure(exc: BaseException, watchdog: Watchdog, labels: list[str]) -> NoReturn:
    """Raise what the run failed with: a stall as :class:`RunStalledError`, a curate error as
    itself (unwrapped from Ray's), anything else as it is; logged either way."""
    if isinstance(exc, KeyboardInterrupt) and watchdog.stalled:
        stalled = watchdog.error(labels)
        log.error("%s", stalled)
        raise stalled from None
    inner = unwrap(exc)
    log.error("run failed: %r", inner, exc_info=not isinstance(inner, CurateError))
    if isinstance(inner, CurateError):
        raise inner from None
    raise exc


def _metadata(run: _Run, planned: _Planned, done: _Executed, duplicate_ids: int | None) -> dict[str, Any]:
    """The commit metadata: the run's lineage (config, inputs, stages, counts, timings, where)."""
    pipeline, cfg, jr = run.pipeline, run.pipeline.config, planned.jr
    return {
        "run_id": run.run_id,
        "run_key": run.run_key,
        "curate_version": __version__,
        "pipeline_file": os.path.abspath(pipeline.source),
        "config": pipeline.resolved(),
        "config_fingerprint": runkey.recorded_fingerprint(pipeline),
        "inputs": planned.inputs.lineage,
        "stages": done.stage_stats,
        "stage_metadata": {label: s.metadata() for label, s in zip(planned.labels, pipeline.stages) if s.metadata()},
        "rows": int(done.totals.get("kept", 0)),
        "rows_in": int(done.totals.get("inputs", 0)),
        "duplicate_ids": duplicate_ids,
        "pending": pending.summary(done.pending_files, done.totals),
        "retried": {"rows_from_version": planned.inputs.pending_version, "files": len(planned.fed_back), "files_from_journal": len(planned.again)}
        if planned.fed_back or planned.again else None,
        "journal": {"key": planned.key, "resumed_tasks": len(planned.reused), "attempts": [*(jr.reused_from if jr else []), run.run_id]} if jr else None,
        "timings": {"ray_start_s": round(done.t_ray_up - done.t_ray, 3), "execute_s": round(done.t_exec - done.t_ray_up, 3)},
        "ray": {"address": cfg.ray.address or "local", "resources": done.resources},
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "started_at": datetime.fromtimestamp(run.t_start, timezone.utc).isoformat(),
        **({"expectations": done.gate} if done.gate is not None else {}),
    }


def _count_duplicate_ids(run: _Run, done: _Executed) -> int | None:
    try:  # ids shared by several rows make duplicate_of ambiguous: counted, and warned about
        return store.count_duplicate_ids(run.main_uri, done.main_files, run.so)
    except Exception as exc:
        log.warning("could not count duplicate ids: %r", exc)
        return None


def _publish(run: _Run, planned: _Planned, done: _Executed) -> RunResult:
    """One version of the dataset (and of the dropped rows) committed with the run's lineage, or
    none when another run committed the same run key meanwhile; then the journal and the dead
    runs' shards cleaned up, and the report."""
    duplicate_ids = _count_duplicate_ids(run, done)
    metadata = _metadata(run, planned, done, duplicate_ids)
    try:  # alive until committed (a run on another host is judged by its heartbeat)
        vacuum.mark_run_alive(run.main_uri, run.run_id, run.so)
    except OSError as exc:
        log.warning("run marker heartbeat failed: %r", exc)
    pause = float(os.environ.get("CURATE_PAUSE_BEFORE_COMMIT", "0") or 0)
    if pause > 0:  # a failure-injection point for tests: every shard is written, nothing committed
        log.info("pausing %.1fs before the commit (CURATE_PAUSE_BEFORE_COMMIT)", pause)
        time.sleep(pause)
    committed = _commit(run, planned, done, metadata)
    if committed is None:
        return RunResult(run.run_id, None, None, 0, 0, done.stage_stats, run.log_file, time.time() - run.t_start, skipped=True)
    version, dropped_version = committed
    if planned.jr is not None:
        planned.jr.discard()
    _remove_dead_runs_shards(run.main_uri, run.so, run.console)
    if planned.jr is not None:
        for earlier in planned.jr.reused_from:  # killed runs whose work this version published
            _end_marker(run.main_uri, earlier, run.so, failed=False)
    return _report(run, planned, done, version, dropped_version, duplicate_ids)


def _commit(run: _Run, planned: _Planned, done: _Executed, metadata: dict[str, Any]) -> tuple[int, int | None] | None:
    """Commit the dropped rows, then the dataset (the commit that makes the run visible, naming the
    dropped version); undo the first when the second fails. None: the run key was committed by
    another run meanwhile (nothing published)."""
    from .execution.writer import DROPPED_SCHEMA

    cfg, so = run.pipeline.config, run.so
    dropped_version = None
    if run.dropped_uri is not None:
        dropped_version = store.commit(
            run.dropped_uri, done.dropped_files, mode=cfg.output.mode, metadata={"run_id": run.run_id, "of_dataset": run.main_uri},
            storage_options=so, default_schema=DROPPED_SCHEMA, name=None,
        )
        metadata["dropped_dataset"] = {"path": run.dropped_uri, "version": dropped_version}
    metadata["timings"]["commit_s"] = round(time.time() - done.t_exec, 3)
    metadata["timings"]["total_s"] = round(time.time() - run.t_start, 3)
    default_schema = pa.schema([("id", pa.string()), *([("text", pa.string())] if "text" in planned.inputs.columns else [])])
    try:
        version = store.commit(
            run.main_uri, done.main_files, mode=cfg.output.mode, metadata=metadata, storage_options=so,
            default_schema=default_schema, name=cfg.name, run_key=run.run_key,
        )
    except BaseException as exc:
        # one run = one version of both tables or of neither: undo the dropped-rows commit
        if run.dropped_uri is not None and dropped_version is not None:
            _undo_commit(run.dropped_uri, dropped_version, run.run_id, so)
        if not isinstance(exc, store.RunKeyCommittedError):
            log.error("the commit of %s failed: %r", run.main_uri, exc, exc_info=True)
            raise
        # another run with the same key committed while this one ran: it published, this does not
        run.say(f"run key {run.run_key!r} was committed by another run while this one ran: nothing published ({exc.message})")
        if planned.jr is not None:
            planned.jr.discard()
        return None
    log.info("committed %s version %d (%d rows, %d files)", run.main_uri, version, int(done.totals.get("kept", 0)), len(done.main_files))
    return version, dropped_version


def _report(run: _Run, planned: _Planned, done: _Executed, version: int, dropped_version: int | None, duplicate_ids: int | None) -> RunResult:
    """The summary table, the one-line outcome and the warnings, printed; the :class:`RunResult`."""
    out = run.pipeline.config.output
    kept = int(done.totals.get("kept", 0))
    elapsed = time.time() - run.t_start
    n_dropped = sum(st["dropped"] for st in done.stage_stats)  # not rows in - kept: Expand stages make rows
    result = RunResult(run.run_id, version, dropped_version, kept, n_dropped, done.stage_stats, run.log_file, elapsed,
                       resumed_tasks=len(planned.reused), expectations=done.gate)
    console = run.console
    console.print(summary_table(done.stage_stats, f"run {run.run_id}"))
    console.print(
        f"wrote [bold]{out.dataset}[/] version [bold]{version}[/]: {kept:,} rows in {len(done.main_files)} shards"
        + (f"; {n_dropped:,} dropped rows in {out.dropped_path} version {dropped_version}" if dropped_version is not None else "")
        + f" ({elapsed:.1f}s, of which Ray start {done.t_ray_up - done.t_ray:.1f}s, processing {done.t_exec - done.t_ray_up:.1f}s)",
        highlight=False,
    )
    warnings = []
    if duplicate_ids:
        warnings.append(f"{duplicate_ids:,} of the {kept:,} rows of version {version} have an id another of its rows has too "
                        "(duplicate_of cannot tell them apart): give every input record its own id (the field input.id_field "
                        "names; a record without it gets the hash of its text)")
    if done.pending_files:
        warnings.append(pending.kept_aside_message(pending.summary(done.pending_files, done.totals) or {}))
    for msg in warnings:
        log.warning(msg)
        console.print(f"[yellow]warning:[/] {escape(msg)}", highlight=False)
    if kept == 0:
        log.warning("version %d of %s holds no rows", version, out.dataset)
        console.print(f"[yellow]warning:[/] no row was kept: version {version} of {out.dataset} is empty", highlight=False)
    console.print(f"log: {run.log_file}", highlight=False)
    return result


#: Ray's core worker prints this as an error ("E ... core_worker.cc") for every actor pool that
#: may restart its actors (Ray Data keeps the pool's set-up in the object store): it is not one
ACTOR_RESTART_LINE = "has constructor arguments in the object store and max_restarts > 0"


def _explain_actor_restart_line(pipeline: Pipeline, console: Console) -> None:
    from .execution.driver import uses_actors

    if any(uses_actors(s) and s.settings.max_retries > 0 for s in pipeline.stages):
        console.print(
            "[dim]note: Ray may print an 'E ... core_worker.cc' line saying an actor "
            f"\"{ACTOR_RESTART_LINE}\": it is not an error. A stage that holds a model runs in actors Ray restarts if one "
            "crashes (run: max_retries); Ray warns that a restart needs the set-up data it keeps for the whole run.[/]",
            highlight=False,
        )


def _check_transient(pipeline: Pipeline, labels: list[str], stage_stats: list[dict[str, Any]], totals: dict[str, Any],
                     checkpointed: journal.Journal | None) -> None:
    """Fail the run when a stage lost more rows to transient failures than it may; a journal
    whose checkpoint holds those rows as dropped (before a global stage) is dropped: start afresh."""
    try:
        pending.check_failures(stage_stats, {lb: st.settings.max_failed_fraction for lb, st in zip(labels, pipeline.stages)}, totals)
    except TransientFailureError as exc:
        log.error("%s", exc)
        if checkpointed is not None:
            checkpointed.discard()
        raise


def _undo_commit(uri: str, version: int, run_id: str, so: dict[str, str]) -> None:
    """Take back a version this run committed (the dropped-rows table, when the main commit
    failed): restore the version before it, or remove the table this run created."""
    from deltalake import DeltaTable

    try:
        dt = DeltaTable(uri, storage_options=so or None)
        if int(dt.version()) != version:
            log.warning("cannot undo version %d of %s: another run committed after it", version, uri)
            return
        if version == 0:
            import shutil

            if not fs.is_url(uri):
                shutil.rmtree(uri, ignore_errors=True)
            else:
                fs.remove_tree(uri, so)
        else:
            dt.restore(version - 1)
        log.info("undid version %d of %s (run %s published nothing)", version, uri, run_id)
    except Exception as exc:  # report, but the main failure is what the user must see
        log.error("could not undo version %d of %s: %r", version, uri, exc)


def _journal_committed(main_uri: str, key: str, so: dict[str, str]) -> bool:
    """Whether a version of the dataset was committed from this journal (a crash after the commit
    and before the journal was removed): its shards must not be committed twice."""
    try:
        entries = store.history(main_uri, so)
    except CurateError:
        return False
    return any((e["run"].get("journal") or {}).get("key") == key for e in entries[:20])


def _stage_stats(labels: list[str], pipeline: Pipeline, totals: dict[str, Any], live: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-stage in/out/dropped from the data's exact counts (rows read, drops by stage and rule,
    rows each Expand stage made and parents it expanded); worker seconds from the live stats."""
    dropped = totals.get("dropped", {})
    expanded = totals.get("expanded", {})
    born = totals.get("born", {})
    rows_in = int(totals.get("inputs", 0))
    out = []
    for label, stage in zip(["read", *labels], [None, *pipeline.stages]):
        by_rule = dropped.get(label, {})
        n_dropped = sum(by_rule.values())
        entry: dict[str, Any] = {"stage": label, "in": rows_in, "dropped": n_dropped, "dropped_by_rule": by_rule}
        rows_out = rows_in - n_dropped
        if isinstance(stage, Expand):
            entry["expanded"] = int(expanded.get(label, 0))
            entry["made"] = int(born.get(label, 0))
            rows_out += entry["made"] - entry["expanded"]
        entry["out"] = rows_out
        if (totals.get("retry") or {}).get(label):
            entry["retry"] = int(totals["retry"][label])
        entry["counters"] = live.get(label, {}).get("counters", {})
        entry["seconds"] = round(live.get(label, {}).get("seconds", 0.0), 3)
        out.append(entry)
        rows_in = rows_out
    kept = int(totals.get("kept", 0))
    if rows_in != kept:
        raise RuntimeError(f"row accounting mismatch: the stages' counts give {rows_in} rows, {kept} were written")
    return out


__all__ = ["run_pipeline", "RunResult", "validate_plan", "current_log_file"]
