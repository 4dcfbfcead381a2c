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
from typing import Any

import pyarrow as pa
from rich.console import Console
from rich.markup import escape

from curate._version import __version__

from . import fs, journal, pending, store, vacuum
from .config import Pipeline
from .errors import CurateError, TransientFailureError
from .failures import _unwrap
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


def _run(pipeline: Pipeline, run_id: str, log_file: str, console: Console, progress: bool | None, run_key: str | None, resume: bool) -> RunResult:
    import ray

    cfg = pipeline.config
    out = cfg.output
    so = out.storage_options
    t_start = time.time()
    log.info("run %s of %s (curate %s)", run_id, pipeline.source, __version__)
    log.info("resolved config: %s", json.dumps(pipeline.resolved(), sort_keys=True))
    main_uri = fs.table_uri(out.dataset)
    dropped_uri = fs.table_uri(out.dropped_path) if out.keep_dropped else None
    for stage in pipeline.stages:  # stages that keep state beside the dataset (a request cache)
        stage.bind_output(main_uri, so)

    # Everything that can fail on bad input is checked before Ray starts (the output first: a
    # plain file where the dataset goes is a ConfigError, not the run key lookup's DeltaError).
    check_output(pipeline)
    if run_key is not None:
        done = store.committed_run_key(main_uri, run_key, so)
        if done is not None:
            msg = f"run key {run_key!r} was already committed to {out.dataset} as version {done}: nothing to do"
            log.info(msg)
            console.print(msg, highlight=False)
            return RunResult(run_id, None, None, 0, 0, [], log_file, time.time() - t_start, skipped=True)

    inputs = plan_run_inputs(pipeline)
    labels = stage_labels(pipeline.stages)
    fed_back = pending.task_rows(inputs.pending, labels)  # rows the previous version kept aside
    check_columns(pipeline, inputs.columns, "source rows" if cfg.input is None else "input")
    log.info("%d input files, %d read tasks, %d bytes", len(inputs.files), len(inputs.tasks), sum(f.size for f in inputs.files))
    for f in inputs.files:
        if f.size == 0:
            log.warning("input file %s is empty", f.path)
            console.print(f"[yellow]warning:[/] input file {f.path} is empty")

    # this run is writing shards into the dataset folder (`curate vacuum` leaves them alone)
    vacuum.mark_run_alive(main_uri, run_id, so)
    has_global = any(isinstance(s, GlobalStage) for s in pipeline.stages)
    checkpoint = checkpoint_before_global(pipeline.stages)
    # where and how it runs (ray:, run:) does not change what it writes: not part of the key
    # (nor do the expectations: a rerun after a failed gate reuses the shards it wrote)
    what = {k: v for k, v in pipeline.resolved().items() if k not in ("ray", "run", "expectations")}
    key = journal.journal_key(json.dumps(what, sort_keys=True, default=str), [(t["path"], t["size"], t["mtime"], t["start"], t["rows"]) for t in inputs.tasks + fed_back], main_uri, out.mode)
    jr: journal.Journal | None = None
    if resume and (checkpoint or not has_global):
        jr = journal.Journal.open(main_uri, key, run_id, so)
        if jr.reused and _journal_committed(main_uri, key, so):
            log.info("journal %s belongs to a committed version: starting afresh", key)
            jr.discard_all()
            jr = journal.Journal.open(main_uri, key, run_id, so)
    reused = jr.reused if jr is not None else {}
    tasks = [t for t in inputs.tasks if int(t["task"]) not in reused] + fed_back
    # rows an earlier attempt kept aside (failed for a transient reason) go in again, not its drops
    again, again_counts = pending.reused_pending(reused) if not has_global else ([], [])
    tasks += pending.journal_task_rows(main_uri, again, labels, first=len(fed_back))
    if reused:
        msg = f"resuming: {len(reused)} of {len(inputs.tasks)} read tasks were finished by an earlier run ({', '.join(jr.reused_from) if jr else ''})"
        log.info(msg)
        console.print(msg, highlight=False)

    from .execution import ExecPlan, WriteTarget, execute

    target = WriteTarget(
        main_uri=main_uri, dropped_uri=dropped_uri, run_id=run_id, shard_rows=out.shard_rows,
        shard_bytes=int(out.shard_bytes), compression=out.compression, storage_options=so,
        journal_uri=jr.attempt_uri if jr is not None and not has_global else None,
    )
    ckpt_uri = fs.join(jr.attempt_uri, "checkpoint") if jr is not None and checkpoint else None
    plan = ExecPlan(
        tasks=tasks, input_cfg=cfg.input, stages=pipeline.stages, labels=labels, target=target,
        journal_uri=jr.attempt_uri if jr is not None else None, checkpoint_uri=ckpt_uri,
        reused_checkpoints=[fs.join(fs.join(jr.root, w["attempt"]), "checkpoint", f["path"]) for rec in reused.values() for w in rec.writes for f in w["files"] if f["kind"] == "ckpt"] if jr else [],
    )
    if jr is not None:
        jr.start({"run_id": run_id, "key": key, "pipeline": os.path.abspath(pipeline.source)})

    main_files: list[dict[str, Any]] = []
    dropped_files: list[dict[str, Any]] = []
    totals: dict[str, Any] = {}
    from .execution.writer import merge_counts

    pending_files: list[dict[str, Any]] = []
    if not has_global:
        for rec in reused.values():
            for w in rec.writes:
                main_files += [f for f in w["files"] if f["kind"] == "main"]
                dropped_files += [f for f in w["files"] if f["kind"] == "dropped"]
                merge_counts(totals, w["counts"])
        for counts in again_counts:
            merge_counts(totals, counts, sign=-1)

    stats_holder: dict[str, Any] = {}

    last_beat = [time.time()]

    def poll() -> dict[str, dict[str, Any]]:
        if time.time() - last_beat[0] > 20:
            last_beat[0] = time.time()
            try:
                vacuum.mark_run_alive(main_uri, run_id, so)  # the heartbeat of a run on another host
                if jr is not None:
                    jr.heartbeat()
            except OSError as exc:
                log.warning("journal heartbeat failed: %r", exc)
        actor = stats_holder.get("actor")
        return ray.get(actor.snapshot.remote(), timeout=5) if actor is not None else {}

    show = cfg.run.progress if progress is None else progress
    t_ray = time.time()
    with ray_session(pipeline) as resources:
        t_ray_up = time.time()
        log.info("ray started in %.1fs: %s", t_ray_up - t_ray, resources)
        check_gpus(pipeline, labels, resources)
        check_cpus(pipeline, labels, resources)
        check_fits(pipeline, labels, resources)
        _explain_actor_restart_line(pipeline, console)
        watchdog = Watchdog(poll, cfg.run.stall_timeout, log.warning)
        try:
            with ProgressDisplay(poll, labels, console, show, log.info), watchdog:
                for phase, batch in execute(plan, cluster=resources, log=log.info, on_stats=lambda a: stats_holder.__setitem__("actor", a)):
                    watchdog.beat()
                    final = phase == "final" or not has_global
                    for row in batch.to_pylist():
                        if row["kind"] == "counts":
                            if final:
                                merge_counts(totals, json.loads(row["info"]))
                        elif row["kind"] == "main":
                            main_files.append(row)
                        elif row["kind"] == "dropped":
                            dropped_files.append(row)
                        elif row["kind"] == "pending" and final:
                            pending_files.append(row)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) and watchdog.stalled:
                stalled = watchdog.error(labels)
                log.error("%s", stalled)
                raise stalled from None
            inner = _unwrap(exc)
            log.error("run failed: %r", inner, exc_info=not isinstance(inner, CurateError))
            if isinstance(inner, CurateError):
                raise inner from None
            raise
        try:
            live_stats = poll()
        except Exception as exc:  # the data is done: a slow stats actor must not fail the run
            log.warning("final live stats unavailable (%r); worker seconds omitted", exc)
            live_stats = {}
        t_exec = time.time()
        pending.drop_zero_counts(totals)
        stage_stats = _stage_stats(labels, pipeline, totals, live_stats)
        _check_transient(pipeline, labels, stage_stats, totals, jr if has_global else None)
        gate = None
        if pipeline.expectations:  # the publish gate, on the staged shards, in Ray tasks: raises if it fails
            from .execution.gate import ray_mapper
            from .expectations.gate import gate_staged

            gate = gate_staged(pipeline.expectations, main_uri, main_files, mode=out.mode, storage_options=so, log_file=log_file,
                               run_id=run_id, console=console, mapper=ray_mapper)

    try:  # ids shared by several rows make duplicate_of ambiguous: counted, and warned about
        duplicate_ids: int | None = store.count_duplicate_ids(main_uri, main_files, so)
    except Exception as exc:
        log.warning("could not count duplicate ids: %r", exc)
        duplicate_ids = None
    kept = int(totals.get("kept", 0))
    total_in = int(totals.get("inputs", 0))
    metadata = {
        "run_id": run_id,
        "run_key": run_key,
        "curate_version": __version__,
        "pipeline_file": os.path.abspath(pipeline.source),
        "config": pipeline.resolved(),
        "config_fingerprint": pipeline.fingerprint(),
        "inputs": inputs.lineage,
        "stages": stage_stats,
        "stage_metadata": {label: s.metadata() for label, s in zip(labels, pipeline.stages) if s.metadata()},
        "rows": kept,
        "rows_in": total_in,
        "duplicate_ids": duplicate_ids,
        "pending": pending.summary(pending_files, totals),
        "retried": {"rows_from_version": inputs.pending_version, "files": len(fed_back), "files_from_journal": len(again)} if fed_back or again else None,
        "journal": {"key": key, "resumed_tasks": len(reused), "attempts": [*(jr.reused_from if jr else []), run_id]} if jr else None,
        "timings": {"ray_start_s": round(t_ray_up - t_ray, 3), "execute_s": round(t_exec - t_ray_up, 3)},
        "ray": {"address": cfg.ray.address or "local", "resources": resources},
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "started_at": datetime.fromtimestamp(t_start, timezone.utc).isoformat(),
        **({"expectations": gate} if gate is not None else {}),
    }
    try:  # alive until committed (a run on another host is judged by its heartbeat)
        vacuum.mark_run_alive(main_uri, run_id, so)
    except OSError as exc:
        log.warning("run marker heartbeat failed: %r", exc)
    pause = float(os.environ.get("CURATE_PAUSE_BEFORE_COMMIT", "0") or 0)
    if pause > 0:  # a failure-injection point for tests: every shard is written, nothing committed
        log.info("pausing %.1fs before the commit (CURATE_PAUSE_BEFORE_COMMIT)", pause)
        time.sleep(pause)
    dropped_version = None
    # The dropped-rows table is committed first: the main commit, which makes the run visible,
    # names the dropped version, so a crash between the two never points at a missing version.
    from .execution.writer import DROPPED_SCHEMA

    if dropped_uri is not None:
        dropped_version = store.commit(
            dropped_uri, dropped_files, mode=out.mode, metadata={"run_id": run_id, "of_dataset": main_uri},
            storage_options=so, default_schema=DROPPED_SCHEMA, name=None,
        )
        metadata["dropped_dataset"] = {"path": dropped_uri, "version": dropped_version}
    metadata["timings"]["commit_s"] = round(time.time() - t_exec, 3)
    metadata["timings"]["total_s"] = round(time.time() - t_start, 3)
    default_schema = pa.schema([("id", pa.string()), *([("text", pa.string())] if "text" in inputs.columns else [])])
    try:
        version = store.commit(
            main_uri, main_files, mode=out.mode, metadata=metadata, storage_options=so,
            default_schema=default_schema, name=cfg.name, run_key=run_key,
        )
    except BaseException as exc:
        # one run = one version of both tables or of neither: undo the dropped-rows commit
        if dropped_uri is not None and dropped_version is not None:
            _undo_commit(dropped_uri, dropped_version, run_id, so)
        if not isinstance(exc, store.RunKeyCommittedError):
            log.error("the commit of %s failed: %r", main_uri, exc, exc_info=True)
            raise
        # another run with the same key committed while this one ran: it published, this does not
        msg = f"run key {run_key!r} was committed by another run while this one ran: nothing published ({exc.message})"
        log.info(msg)
        console.print(msg, highlight=False)
        if jr is not None:
            jr.discard()
        return RunResult(run_id, None, None, 0, 0, stage_stats, log_file, time.time() - t_start, skipped=True)
    log.info("committed %s version %d (%d rows, %d files)", main_uri, version, kept, len(main_files))
    if jr is not None:
        jr.discard()
    _remove_dead_runs_shards(main_uri, so, console)
    if jr is not None:
        for earlier in jr.reused_from:  # killed runs whose work this version published
            _end_marker(main_uri, earlier, so, failed=False)
    elapsed = time.time() - t_start
    n_dropped = sum(st["dropped"] for st in stage_stats)  # not rows in - kept: Expand stages make rows
    result = RunResult(run_id, version, dropped_version, kept, n_dropped, stage_stats, log_file, elapsed, resumed_tasks=len(reused),
                       expectations=gate)
    console.print(summary_table(stage_stats, f"run {run_id}"))
    console.print(
        f"wrote [bold]{out.dataset}[/] version [bold]{version}[/]: {kept:,} rows in {len(main_files)} shards"
        + (f"; {n_dropped:,} dropped rows in {out.dropped_path} version {dropped_version}" if dropped_version is not None else "")
        + f" ({elapsed:.1f}s, of which Ray start {t_ray_up - t_ray:.1f}s, processing {t_exec - t_ray_up:.1f}s)",
        highlight=False,
    )
    if duplicate_ids:
        msg = (f"{duplicate_ids:,} of the {kept:,} rows of version {version} have an id another of its rows has too "
               "(duplicate_of cannot tell them apart): give every input record its own id (the field input.id_field "
               "names; a record without it gets the hash of its text)")
        log.warning(msg)
        console.print(f"[yellow]warning:[/] {escape(msg)}", highlight=False)
    if pending_files:
        msg = pending.kept_aside_message(pending.summary(pending_files, totals) or {})
        log.warning(msg)
        console.print(f"[yellow]warning:[/] {escape(msg)}", highlight=False)
    if kept == 0:
        log.warning("version %d of %s holds no rows", version, out.dataset)
        console.print(f"[yellow]warning:[/] no row was kept: version {version} of {out.dataset} is empty", highlight=False)
    console.print(f"log: {log_file}", highlight=False)
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
