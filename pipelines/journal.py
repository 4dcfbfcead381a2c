"""The run journal: what a run has already done, so that a run killed at any point resumes.

Layout, inside the output dataset's folder (Delta readers ignore it; it is removed once the
run's version is committed)::

    _curate_journal/<key>/<attempt>/read/<task>.json     rows a read task produced (written when it ends)
    _curate_journal/<key>/<attempt>/write/<task>-<h>.json shards written for rows of one task

``key`` is a hash of the resolved config as JSON (without ``ray:``, ``run:`` and
``expectations:``), the read tasks (paths, sizes, modification times, starts, rows), the output and
its mode (:func:`curate.pipelines.runkey.journal_key`): a run with the same config and inputs
finds the journal of an earlier, unfinished run. Each run is an ``attempt``. A task is *complete* in an attempt when its read
record exists and the weights of its rows in that attempt's write records add up to the rows it
read: every row carries a weight (an input row ``ROW_WEIGHT``, children of an Expand stage split
their parent's exactly), so rows fanned out by Expand stages or spread over many blocks are
accounted for exactly, whatever the batching. Write records are named by a hash of the rows'
positions, so a task Ray retries rewrites the same record instead of adding one.

Complete tasks of any earlier attempt are reused: their shards go into the commit (or, before a
global stage, are read back from the checkpoint) and their read tasks are not run again. An
attempt whose run is still alive (``attempt.json``: host and pid, and a heartbeat for runs on
other hosts) is never reused: the same job started twice runs twice, and each commits its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import time
from typing import Any

from . import fs
from .rows import ROW_WEIGHT

JOURNAL_DIR = "_curate_journal"


def journal_key(config_json: str, inputs: list[tuple[Any, ...]], output: str, mode: str) -> str:
    """The hash of what :func:`curate.pipelines.runkey.journal_key` chose to key a journal by."""
    h = hashlib.sha256()
    h.update(json.dumps([config_json, inputs, output, mode], sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


@dataclasses.dataclass
class TaskRecord:
    """What one attempt did for one read task."""

    rows_read: int | None = None
    weight: int = 0
    writes: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.rows_read is not None and self.weight == self.rows_read * ROW_WEIGHT


@dataclasses.dataclass
class Journal:
    """One run's view of the journal: where it writes, and what earlier attempts finished."""

    root: str  # <dataset>/_curate_journal/<key>
    attempt: str
    storage_options: dict[str, str]
    reused: dict[int, TaskRecord] = dataclasses.field(default_factory=dict)
    reused_from: list[str] = dataclasses.field(default_factory=list)

    @property
    def attempt_uri(self) -> str:
        return fs.join(self.root, self.attempt)

    @classmethod
    def open(cls, dataset_uri: str, key: str, attempt: str, storage_options: dict[str, str]) -> "Journal":
        root = fs.join(dataset_uri, JOURNAL_DIR, key)
        j = cls(root, attempt, storage_options)
        for earlier in sorted(fs.list_dir(root, storage_options)):
            if earlier == attempt or attempt_alive(fs.join(root, earlier), storage_options):
                # a run still going (the same job started twice): its shards are its own
                continue
            for task, rec in load_attempt(fs.join(root, earlier), storage_options).items():
                for w in rec.writes:
                    w["attempt"] = earlier
                if rec.complete and task not in j.reused:
                    j.reused[task] = rec
                    if earlier not in j.reused_from:
                        j.reused_from.append(earlier)
        return j

    def start(self, info: dict[str, Any]) -> None:
        """Record who runs this attempt (host, pid) and when it was last seen alive."""
        data = {**info, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}
        fs.write_bytes(fs.join(self.attempt_uri, ATTEMPT_FILE), json.dumps(data).encode(), self.storage_options)
        self._info = data

    def heartbeat(self) -> None:
        info = getattr(self, "_info", None)
        if info is not None:
            info["heartbeat"] = time.time()
            fs.write_bytes(fs.join(self.attempt_uri, ATTEMPT_FILE), json.dumps(info).encode(), self.storage_options)

    def discard(self) -> None:
        """Remove this attempt and the attempts it reused (after the commit); attempts of other
        runs still going stay."""
        for name in {self.attempt, *self.reused_from}:
            fs.remove_tree(fs.join(self.root, name), self.storage_options)
        if not fs.list_dir(self.root, self.storage_options):
            fs.remove_tree(self.root, self.storage_options)

    def discard_all(self) -> None:
        fs.remove_tree(self.root, self.storage_options)


#: an attempt not seen alive for this long is dead (on another host; on this one, its pid tells)
HEARTBEAT_TIMEOUT_S = 120.0
ATTEMPT_FILE = "attempt.json"


def attempt_alive(uri: str, storage_options: dict[str, str]) -> bool:
    """Whether the run that owns an attempt folder is still running."""
    data = _load(fs.join(uri, ATTEMPT_FILE), storage_options)
    if data is None:
        return False
    if data.get("host") == socket.gethostname():
        try:
            os.kill(int(data["pid"]), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, KeyError):
            pass
        else:
            return int(data["pid"]) != os.getpid()
    return time.time() - float(data.get("heartbeat", 0)) < HEARTBEAT_TIMEOUT_S


def load_attempt(uri: str, storage_options: dict[str, str]) -> dict[int, TaskRecord]:
    records: dict[int, TaskRecord] = {}
    for name in fs.list_dir(fs.join(uri, "read"), storage_options):
        if not name.endswith(".json"):
            continue
        data = _load(fs.join(uri, "read", name), storage_options)
        if data is not None:
            records.setdefault(int(data["task"]), TaskRecord()).rows_read = int(data["rows"])
    for name in fs.list_dir(fs.join(uri, "write"), storage_options):
        if not name.endswith(".json"):
            continue
        data = _load(fs.join(uri, "write", name), storage_options)
        if data is None:
            continue
        rec = records.setdefault(int(data["task"]), TaskRecord())
        rec.weight += int(data["weight"])
        rec.writes.append(data)
    return records


def _load(uri: str, storage_options: dict[str, str]) -> dict[str, Any] | None:
    try:
        return json.loads(fs.read_bytes(uri, storage_options))
    except (OSError, ValueError):
        return None  # a record cut short by a crash: its task counts as unfinished


def record_read(attempt_uri: str, task: int, rows: int, storage_options: dict[str, str]) -> None:
    data = json.dumps({"task": task, "rows": rows}).encode()
    fs.write_bytes(fs.join(attempt_uri, "read", f"{task}.json"), data, storage_options)


def record_write(attempt_uri: str, task: int, rows_hash: str, record: dict[str, Any], storage_options: dict[str, str]) -> None:
    data = json.dumps({"task": task, **record}, sort_keys=True).encode()
    fs.write_bytes(fs.join(attempt_uri, "write", f"{task}-{rows_hash}.json"), data, storage_options)
