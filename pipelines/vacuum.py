"""Cleaning a dataset after killed runs: which runs are alive, and ``curate vacuum``.

A run marks itself alive in the dataset (a run marker with host, pid and heartbeat) while it
writes shards into the table folder, and removes the marker when it ends; a killed run leaves its
marker behind, dead. :func:`plan_vacuum` lists the Parquet files no Delta version references
(shards of killed or failed runs), keeping those of live runs and, for runs of unknown state,
those younger than ``older_than_minutes``; :func:`apply_vacuum` removes them without adding a
Delta version (the version history stays as curate wrote it). The ``.dropped`` sibling table is
cleaned in the same call.
"""

from __future__ import annotations

import dataclasses
import json
import time
from urllib.parse import unquote

from . import fs
from .errors import DatasetError
from .fs import table_uri
from .store import latest_version, log_paths, open_latest, run_metadata

#: ``<dataset>/_curate_journal/_runs/<run id>/attempt.json``: a run is writing shards into the
#: dataset (host, pid, heartbeat, as a journal attempt); removed when the run ends, left behind
#: (dead) when it is killed. ``curate vacuum`` keeps the shards of live runs.
RUNS_DIR = "_runs"
#: files of runs of unknown state younger than this many minutes are kept by ``curate vacuum``
VACUUM_MINUTES = 60


def run_marker(dataset_uri: str, run_id: str) -> str:
    from .journal import JOURNAL_DIR

    return fs.join(dataset_uri, JOURNAL_DIR, RUNS_DIR, run_id)


def mark_run_alive(dataset_uri: str, run_id: str, storage_options: dict[str, str] | None) -> None:
    import os
    import socket

    data = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}
    fs.write_bytes(fs.join(run_marker(dataset_uri, run_id), "attempt.json"), json.dumps(data).encode(), storage_options)


def unmark_run(dataset_uri: str, run_id: str, storage_options: dict[str, str] | None, *, failed: bool = False) -> None:
    """The run ended: its marker goes (it committed every shard it wrote), or, if it failed, says
    it ended, so that ``curate vacuum`` removes its shards at once. Nothing if it had no marker."""
    from .journal import JOURNAL_DIR

    marker = run_marker(dataset_uri, run_id)
    if not fs.exists(fs.join(marker, "attempt.json"), storage_options):
        return
    if failed:
        data = {"run_id": run_id, "ended": time.time()}  # no host, pid or heartbeat: dead
        fs.write_bytes(fs.join(marker, "attempt.json"), json.dumps(data).encode(), storage_options)
        return
    fs.remove_tree(marker, storage_options)
    runs = fs.join(dataset_uri, JOURNAL_DIR, RUNS_DIR)
    if not fs.list_dir(runs, storage_options):
        fs.remove_tree(runs, storage_options)  # (the journal folder stays, as a finished journal leaves it)


def dead_run_markers(dataset_uri: str, storage_options: dict[str, str] | None) -> list[str]:
    """Run ids whose marker says the run ended without removing it (killed or failed)."""
    from . import journal as jn

    runs = fs.join(dataset_uri, jn.JOURNAL_DIR, RUNS_DIR)
    return [r for r in fs.list_dir(runs, storage_options) if not jn.attempt_alive(fs.join(runs, r), storage_options or {})]


def _referenced(uri: str, storage_options: dict[str, str] | None) -> set[str]:
    """Every data file any version of the table names (adds, removes, change files of every log
    entry, and the latest version's files): relative paths, decoded."""
    out: set[str] = set()
    log_dir = fs.join(uri, "_delta_log")
    for name in fs.list_dir(log_dir, storage_options):
        if not name.endswith(".json"):
            continue
        for line in fs.read_bytes(fs.join(log_dir, name), storage_options).splitlines():
            try:
                action = json.loads(line)
            except ValueError:
                continue
            for kind in ("add", "remove", "cdc"):
                if isinstance(action.get(kind), dict) and action[kind].get("path"):
                    out.add(unquote(str(action[kind]["path"])))
    dt = open_latest(uri, storage_options)
    if dt is not None:  # versions summarised by a checkpoint whose JSON entries were cleaned up
        out.update(unquote(p) for p in log_paths(dt))
    return out


def _data_files(uri: str, storage_options: dict[str, str] | None) -> list[tuple[str, int, float | None]]:
    """``(path relative to the table, size, mtime)`` of the Parquet files in the table folder,
    outside ``_delta_log/``, ``_curate_journal/`` and hidden folders."""
    import pyarrow.fs as pafs

    from .journal import JOURNAL_DIR

    filesystem, base = fs.filesystem(uri, storage_options)
    if filesystem.get_file_info(base).type != pafs.FileType.Directory:
        return []
    base = base.rstrip("/")
    out = []
    for info in filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File:
            continue
        rel = info.path[len(base) + 1 :] if info.path.startswith(base + "/") else info.path
        top = rel.split("/", 1)[0]
        if top in ("_delta_log", JOURNAL_DIR) or top.startswith((".", "_")) or not rel.endswith(".parquet") or fs.TMP_MARK in rel:
            continue
        mtime = info.mtime.timestamp() if info.mtime is not None else None
        out.append((rel, int(info.size or 0), mtime))
    return out


@dataclasses.dataclass
class VacuumPlan:
    """What ``curate vacuum`` deletes and what it keeps, and why."""

    delete: list[tuple[str, int]] = dataclasses.field(default_factory=list)  # (uri, size)
    kept: dict[str, int] = dataclasses.field(default_factory=dict)  # reason -> files
    tables: list[str] = dataclasses.field(default_factory=list)
    versions: dict[str, int] = dataclasses.field(default_factory=dict)
    dead_markers: list[str] = dataclasses.field(default_factory=list)
    dead_attempts: list[str] = dataclasses.field(default_factory=list)


def plan_vacuum(path: str, older_than_minutes: float = VACUUM_MINUTES, journals: bool = False,
                storage_options: dict[str, str] | None = None, now: float | None = None) -> VacuumPlan:
    """The unreferenced shards of a dataset and its dropped-rows table, and which may go.

    Kept: files any version names (every version stays readable; nothing is committed, so the
    history gains no version); files of a run that is alive (its marker or journal attempt);
    files an unfinished run's journal names (the next run with the same config reuses them),
    unless ``journals`` (then those journal attempts go too); files younger than
    ``older_than_minutes`` whose run is not known to be dead (a run without a marker may still be
    writing them). Files of a run known dead (killed: its marker or attempt left behind) go at any age.
    """
    from . import journal as jn

    uri = table_uri(path)
    dt = open_latest(uri, storage_options)
    if dt is None:
        raise DatasetError(f"no curate dataset at {path}", hint="a dataset is created by `curate run`")
    try:  # a dropped-rows table: vacuum its dataset (where the run markers and journals are) and it
        main = run_metadata(uri, int(dt.version()), storage_options).get("of_dataset")
    except Exception:
        main = None
    if main and open_latest(table_uri(main), storage_options) is not None:
        uri = table_uri(main)
    plan = VacuumPlan()
    now = time.time() if now is None else now
    # runs: alive or dead, from the run markers and the journal attempts (both in the main folder)
    alive: set[str] = set()
    dead: set[str] = set()
    runs = fs.join(uri, jn.JOURNAL_DIR, RUNS_DIR)
    for run_id in fs.list_dir(runs, storage_options):
        if jn.attempt_alive(fs.join(runs, run_id), storage_options or {}):
            alive.add(run_id)
        else:
            dead.add(run_id)
            plan.dead_markers.append(fs.join(runs, run_id))
    journal_files: dict[tuple[str, str], str] = {}  # (kind, name) -> "alive" | "resumable"
    root = fs.join(uri, jn.JOURNAL_DIR)
    for key in fs.list_dir(root, storage_options):
        if key == RUNS_DIR:
            continue
        for attempt in fs.list_dir(fs.join(root, key), storage_options):
            a_uri = fs.join(root, key, attempt)
            live = jn.attempt_alive(a_uri, storage_options or {})
            (alive if live else dead).add(attempt)
            if not live and journals:
                plan.dead_attempts.append(a_uri)
            for rec in jn.load_attempt(a_uri, storage_options or {}).values():
                for w in rec.writes:
                    for f in w.get("files", []):
                        journal_files[(f.get("kind", ""), f.get("path", ""))] = "alive" if live else "resumable"
    dropped = _dropped_sibling(uri, storage_options)
    for kind, table in (("main", uri), ("dropped", dropped)):
        if table is None:
            continue
        dt = open_latest(table, storage_options)
        if dt is None:
            continue
        plan.tables.append(table)
        plan.versions[table] = int(dt.version()) + 1
        referenced = _referenced(table, storage_options)
        for rel, size, mtime in _data_files(table, storage_options):
            if rel in referenced:
                continue
            writer = _run_of(rel)
            state = journal_files.get((kind, rel))
            if state == "alive" or writer in alive:
                why = "of a run in progress"
            elif state == "resumable" and not journals:
                why = "named by an unfinished run's journal (the next run with the same config reuses them; --journals deletes them and that journal)"
            elif writer not in dead and state is None and mtime is not None and now - mtime < older_than_minutes * 60:
                why = f"younger than {older_than_minutes:g} minutes, of a run not known to have ended (--older-than)"
            else:
                plan.delete.append((fs.join(table, rel), size))
                continue
            plan.kept[why] = plan.kept.get(why, 0) + 1
    return plan


def _run_of(name: str) -> str | None:
    """The run id in a shard's name (``part-<run id>-<uuid>.<codec>.parquet``)."""
    base = name.rsplit("/", 1)[-1]
    if not base.startswith("part-"):
        return None
    head, _, _ = base[len("part-") :].rpartition("-")
    return head or None


def _dropped_sibling(uri: str, storage_options: dict[str, str] | None) -> str | None:
    """The dropped-rows table of a dataset: the one its latest run names, else ``DATASET.dropped``."""
    try:
        latest = latest_version(uri, storage_options)
        meta = run_metadata(uri, latest, storage_options) if latest is not None else {}
    except Exception:
        meta = {}
    named = (meta.get("dropped_dataset") or {}).get("path")
    for cand in (named, uri.rstrip("/") + ".dropped"):
        if cand and open_latest(table_uri(cand), storage_options) is not None:
            return table_uri(cand)
    return None


def apply_vacuum(plan: VacuumPlan, storage_options: dict[str, str] | None = None) -> None:
    """Delete the files the plan lists, the markers of dead runs and (with ``journals``) the
    journal attempts of unfinished runs; no version is committed."""
    from .journal import JOURNAL_DIR

    for file_uri, _ in plan.delete:
        fs.remove_tree(file_uri, storage_options)
    for folder in [*plan.dead_markers, *plan.dead_attempts]:
        fs.remove_tree(folder, storage_options)
    for table in plan.tables[:1]:
        root = fs.join(table, JOURNAL_DIR)
        for key in fs.list_dir(root, storage_options):  # emptied folders (the journal folder itself stays)
            if not fs.list_dir(fs.join(root, key), storage_options):
                fs.remove_tree(fs.join(root, key), storage_options)



__all__ = [
    "RUNS_DIR",
    "VACUUM_MINUTES",
    "VacuumPlan",
    "apply_vacuum",
    "dead_run_markers",
    "mark_run_alive",
    "plan_vacuum",
    "run_marker",
    "unmark_run",
]
