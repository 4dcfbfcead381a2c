"""Datasets: a Delta Lake table per dataset, one atomic commit (= one version) per run.

Workers write Parquet shards into the table folder; nothing is visible until the driver's single
commit adds them to the Delta log. A run that dies before the commit leaves only unreferenced
files, which no reader sees (``curate vacuum`` removes them: pipelines/vacuum.py).

Commit metadata (``curate.run``, a JSON string in the commit's custom metadata) records the
run id, the resolved config and its fingerprint, the input files with sizes and modification
times, curate's version, per-stage counts, timings and the dropped-rows table's version.

Commits are safe to race and to retry (:func:`commit`):

- **The version is the one this commit created.** deltalake's ``create_write_transaction`` and
  ``create_table_with_add_actions`` return nothing (1.x), and re-reading the table afterwards may
  see another writer's later version. So every attempt is made with ``max_commit_retries=0``:
  delta-rs then writes the log entry at exactly *read version + 1* (atomic put-if-absent) or fails
  without writing, never at a later version. The version is therefore known from the snapshot the
  attempt was built on, before the commit, and is returned as it is.
- **Concurrent writers.** delta-rs' own retry would rebase the prepared actions onto the newer
  version *without recomputing them*: an overwrite would keep the files the other writer added (a
  mixed version), and a lost "create the table" race is replayed as a second create without any
  conflict check. With retries off, curate retries itself: it reloads the latest version and builds
  the commit again (an overwrite removes every file of *that* version, an append adds to it, the
  schema is checked against it, the run key is looked up again). Each version is then exactly what
  its mode says: an overwrite's version holds exactly its rows, an append's the previous version's
  rows plus its own. ``expected_version`` turns rebasing off (the run depends on the version it
  read); a run that cannot commit (that, or ``max_attempts`` spent) raises
  :class:`ConcurrentWriteError` and has published nothing.
- **Run keys.** ``run_key`` is recorded in the same commit as a Delta application transaction
  (``txn`` action, app id ``curate.run_key:<key>``, version = the table version of the commit) and
  in the commit metadata (``curate.run_key``). A commit whose key the latest version already
  holds raises :class:`RunKeyCommittedError` (exit code 0, carrying the version that committed
  it) and publishes nothing; as the key is looked up in the very snapshot the commit is built on
  and the commit only lands on top of that snapshot, two runs racing with one key cannot both
  commit: the loser's attempt fails, its retry finds the key. (delta-rs' conflict checker would
  also refuse a commit whose app id a concurrent commit set.)
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import uuid
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from . import fs
from .errors import ConcurrentWriteError, DatasetError, RunKeyCommittedError
from .fs import table_uri

METADATA_KEY = "curate.run"
#: custom commit metadata: the key the run was committed with, and a unique id of the commit()
RUN_KEY_METADATA = "curate.run_key"
COMMIT_ID_METADATA = "curate.commit_id"
#: app id of the Delta application transaction that records a run key
RUN_KEY_APP_PREFIX = "curate.run_key:"
#: attempts of one commit() before a lasting stream of concurrent commits makes it give up
COMMIT_ATTEMPTS = 20
MODES = ("overwrite", "append")


def run_key_app_id(key: str) -> str:
    return RUN_KEY_APP_PREFIX + key


def _schema_of_files(uri: str, files: list[dict[str, Any]], storage_options: dict[str, str] | None) -> pa.Schema:
    import pyarrow.parquet as pq

    filesystem, base = fs.filesystem(uri, storage_options)
    schemas = []
    for f in files:
        schemas.append(pq.read_schema(fs.join(base, f["path"]), filesystem=filesystem))
    try:
        return pa.unify_schemas(schemas)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DatasetError(f"the shards written for {uri} have incompatible schemas: {exc}") from None


def open_latest(uri: str, storage_options: dict[str, str] | None) -> Any:
    """The table at its latest version, or None if there is no table yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri, storage_options=storage_options or None)
    except TableNotFoundError:
        return None


def latest_version(uri: str, storage_options: dict[str, str] | None) -> int | None:
    dt = open_latest(uri, storage_options)
    return None if dt is None else int(dt.version())


def _txn_version(dt: Any, key: str) -> int | None:
    v = dt.transaction_version(run_key_app_id(key))
    return None if v is None else int(v)


def commit(
    uri: str,
    files: list[dict[str, Any]],
    *,
    mode: str,
    metadata: dict[str, Any],
    storage_options: dict[str, str] | None,
    default_schema: pa.Schema,
    name: str | None = None,
    run_key: str | None = None,
    expected_version: int | None = None,
    max_attempts: int = COMMIT_ATTEMPTS,
) -> int:
    """Atomically add ``files`` (written in the table folder) as one new version; returns the version
    this commit created (see the module docstring for races and run keys).

    ``files``: ``{"path": name relative to the table, "size": bytes, "rows": n, "info": JSON with
    "modification_time" (ms)}``. ``mode``: ``overwrite`` (the version holds exactly these files) or
    ``append`` (the previous version's files and these). ``expected_version``: commit only on top of
    this version (-1: only create the table), else :class:`ConcurrentWriteError`.

    Raises :class:`RunKeyCommittedError` if ``run_key`` is already committed to the table,
    :class:`ConcurrentWriteError` if concurrent commits kept this one from landing; in both cases
    nothing was published.
    """
    from deltalake.exceptions import DeltaError

    if mode not in MODES:
        raise DatasetError(f"unknown write mode {mode!r} (expected one of {', '.join(MODES)})")
    uri = table_uri(uri)
    schema = _schema_of_files(uri, files, storage_options) if files else default_schema
    actions = _add_actions(files)
    commit_id = uuid.uuid4().hex
    custom = _commit_metadata(metadata, run_key, commit_id)
    other: int | None = None  # the latest version another writer committed meanwhile
    for attempt in range(max(1, max_attempts)):
        dt = open_latest(uri, storage_options)
        target = _next_version(uri, dt, run_key, expected_version)
        try:
            _write_version(uri, dt, target, actions, schema, mode, bool(files), name, custom, run_key, storage_options)
            return target
        except (DeltaError, OSError) as exc:
            latest = latest_version(uri, storage_options)
            if latest is None or latest < target:
                raise DatasetError(f"cannot commit to {uri}: {_whole(exc)}") from None  # not a race
            # The table moved. Usually another writer took `target`; but an error raised after the
            # log entry was written (e.g. by a post-commit hook) must not commit the files twice.
            if _landed(uri, target, commit_id, [a.path for a in actions[:1]], storage_options):
                return target
            other = latest
            if attempt + 1 < max_attempts:
                time.sleep(min(1.0, random.uniform(0.01, 0.05) * (attempt + 1)))  # let the other writer finish
    raise _concurrent(uri, other, f"{max_attempts} attempts")


def _add_actions(files: list[dict[str, Any]]) -> list[Any]:
    """One Delta add action per shard (its size, modification time and row count)."""
    from deltalake.transaction import AddAction

    return [
        AddAction(
            path=f["path"],
            size=int(f["size"]),
            partition_values={},
            modification_time=int(json.loads(f.get("info") or "{}").get("modification_time", 0)),
            data_change=True,
            stats=json.dumps({"numRecords": int(f["rows"])}),
        )
        for f in files
    ]


def _commit_metadata(metadata: dict[str, Any], run_key: str | None, commit_id: str) -> dict[str, Any]:
    """The commit's custom metadata: the run's lineage (JSON), this commit's id, the run key."""
    run = dict(metadata)
    if run_key is not None:
        run.setdefault("run_key", run_key)
    custom: dict[str, Any] = {METADATA_KEY: json.dumps(run, sort_keys=True, default=str), COMMIT_ID_METADATA: commit_id}
    if run_key is not None:
        custom[RUN_KEY_METADATA] = run_key
    return custom


def _next_version(uri: str, dt: Any, run_key: str | None, expected_version: int | None) -> int:
    """The version this commit would create on top of ``dt`` (None: no table yet); raises when the
    run key is already committed or the table is not at ``expected_version``."""
    base = -1 if dt is None else int(dt.version())
    if run_key is not None and dt is not None:
        done = _txn_version(dt, run_key)
        if done is not None:
            raise RunKeyCommittedError(
                f"run key {run_key!r} is already committed to {uri} (version {done}); this run published nothing",
                run_key=run_key,
                version=done,
            )
    if expected_version is not None and base != expected_version:
        raise _concurrent(uri, base, f"this run expected version {expected_version}")
    return base + 1


def _write_version(uri: str, dt: Any, target: int, actions: list[Any], schema: pa.Schema, mode: str, has_files: bool,
                   name: str | None, custom: dict[str, Any], run_key: str | None, storage_options: dict[str, str] | None) -> None:
    """Write the log entry of version ``target`` (creating the table when ``dt`` is None); fails
    rather than landing at another version."""
    from deltalake import CommitProperties, Transaction
    from deltalake import Schema as DeltaSchema
    from deltalake.transaction import create_table_with_add_actions

    props = CommitProperties(
        custom_metadata=custom,
        max_commit_retries=0,  # land at exactly `target` or fail: see the module docstring
        app_transactions=[Transaction(run_key_app_id(run_key), target)] if run_key is not None else None,
    )
    if dt is None:
        # mode="error": if another writer creates the table first, fail and rebuild as a write on it
        create_table_with_add_actions(
            uri, DeltaSchema.from_arrow(schema), actions, mode="error", name=name, storage_options=storage_options or None,
            commit_properties=props,
        )
    else:
        target_schema = _target_schema(pa.schema(dt.schema().to_arrow()), schema, mode, has_files)
        dt.create_write_transaction(actions, mode=mode, schema=target_schema, commit_properties=props)


def _concurrent(uri: str, version: int | None, why: str) -> ConcurrentWriteError:
    return ConcurrentWriteError(
        f"another run committed version {version} of {uri} while this run was committing ({why}); this run published nothing",
        hint="rerun it (its unreferenced shards are removed by `curate vacuum --delete`)",
        version=version,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _whole(exc: BaseException) -> str:
    """The whole message on one line (delta-rs' messages span lines: the first alone is cut off)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _target_schema(current: pa.Schema, new: pa.Schema, mode: str, has_files: bool) -> pa.Schema:
    if mode == "overwrite":
        return new
    if not has_files:
        return current  # nothing added: the table's schema stays
    extra = [f.name for f in new if f.name not in current.names]
    if extra:
        # delta-rs cannot change the schema in an append (create_write_transaction ignores it): the
        # columns would be written but invisible to every reader
        raise DatasetError(
            f"cannot append: the new rows have columns the dataset does not have ({', '.join(extra)})",
            hint="write them with mode: overwrite, or drop the columns",
        )
    try:
        pa.unify_schemas([current, new])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DatasetError(f"cannot append: the new rows' schema does not match the dataset's: {exc}") from None
    return current


def commit_info(uri: str, version: int, storage_options: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The ``commitInfo`` of exactly ``version``, read from its log entry (None if there is none).

    deltalake's ``history()`` is not used here: it lists the log entries as they are when it runs
    but numbers them from the loaded snapshot's version, so a commit landing in between (or a table
    loaded at an older version) shifts every number."""
    try:
        raw = fs.read_bytes(fs.join(table_uri(uri), "_delta_log", f"{version:020d}.json"), storage_options)
    except FileNotFoundError:
        return None
    for line in raw.splitlines():
        if line.strip():
            action = json.loads(line)
            if "commitInfo" in action:
                return dict(action["commitInfo"])
    return {}


def _landed(uri: str, version: int, commit_id: str, some_paths: list[str], storage_options: dict[str, str] | None) -> bool:
    """Whether ``version`` is the commit with ``commit_id`` (one of whose added paths is given)."""
    try:
        info = commit_info(uri, version, storage_options)
        return info is not None and info.get(COMMIT_ID_METADATA) == commit_id
    except Exception:
        pass  # the log entry cannot be read directly: look for this commit's files in that version
    if not some_paths:
        return False  # at worst an empty version is committed twice: the same rows either way
    from deltalake import DeltaTable

    dt = DeltaTable(uri, version=version, storage_options=storage_options or None)
    return some_paths[0] in {unquote(p) for p in log_paths(dt)}


def committed_run_key(uri: str, key: str, storage_options: dict[str, str] | None = None) -> int | None:
    """The table version that committed ``key``; None if no version did (or there is no table)."""
    dt = open_latest(table_uri(uri), storage_options)
    return None if dt is None else _txn_version(dt, key)


# ---------------------------------------------------------------- delta inputs


@dataclasses.dataclass(frozen=True)
class DeltaInput:
    """What a ``format: delta`` input reads: ``files`` (URI, bytes) of ``version``; with
    ``since_version`` only the files added after it."""

    uri: str
    version: int
    since_version: int | None
    files: list[tuple[str, int]]

    def lineage(self) -> dict[str, Any]:
        """For the run metadata: which table, which version, since which version."""
        return {"uri": self.uri, "version": self.version, "since_version": self.since_version, "files": len(self.files)}


def log_paths(dt: Any) -> list[str]:
    return [str(p) for p in dt.get_add_actions(flatten=False).column("path").to_pylist()]


def _file_uri(uri: str, log_path: str) -> str:
    # paths in the log are URL-encoded (relative to the table, or absolute URIs)
    return log_path if fs.is_url(log_path) else fs.join(uri, unquote(log_path))


def resolve_delta_input(
    uri: str, version: int | None = None, since_version: int | None = None, storage_options: dict[str, str] | None = None
) -> DeltaInput:
    """The files of ``uri`` at ``version`` (latest if None) with their sizes.

    ``since_version=N``: only the files added by versions N+1 .. ``version``, for datasets that
    other writers append to. Every version in between must only have added files: one that removed
    any (an overwrite, delete or compaction) raises :class:`DatasetError` naming it.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = table_uri(uri)
    opts = storage_options or None
    try:
        dt = DeltaTable(uri, version=version, storage_options=opts)
    except TableNotFoundError:
        raise DatasetError(f"no curate dataset at {uri} (no Delta table there)") from None
    except Exception as exc:  # deltalake raises generic errors for a missing version
        raise DatasetError(f"cannot open dataset {uri} at version {version}: {_first_line(exc)}") from None
    read_version = int(dt.version())
    adds = dt.get_add_actions(flatten=False)
    sizes = dict(zip((str(p) for p in adds.column("path").to_pylist()), (int(s or 0) for s in adds.column("size_bytes").to_pylist())))
    if since_version is None:
        return DeltaInput(uri, read_version, None, [(_file_uri(uri, p), s) for p, s in sizes.items()])
    if since_version < 0 or since_version > read_version:
        raise DatasetError(f"since_version {since_version} of {uri} is not a version from 0 to {read_version} (the version read)")
    try:
        step = DeltaTable(uri, version=since_version, storage_options=opts)
    except Exception as exc:
        raise DatasetError(f"cannot open dataset {uri} at since_version {since_version}: {_first_line(exc)}") from None
    seen = set(log_paths(step))
    added: list[str] = []
    for v in range(since_version + 1, read_version + 1):
        step.load_as_version(v)  # forward: applies just that commit
        now = log_paths(step)
        now_set = set(now)
        removed = seen - now_set
        if removed:
            raise DatasetError(
                f"since_version {since_version} only works for append-only history, but version {v} of {uri} "
                f"removed {len(removed)} file(s) (an overwrite, delete or compaction)",
                hint=f"read the whole version instead (no since_version), or a since_version of {v} or later",
            )
        added.extend(p for p in now if p not in seen)
        seen = now_set
    return DeltaInput(uri, read_version, since_version, [(_file_uri(uri, p), sizes[p]) for p in added if p in sizes])


def last_read_version(output: str, input_uri: str, storage_options: dict[str, str] | None = None) -> tuple[int, int] | None:
    """For ``since_version: last``: ``(input version, output version)`` from the newest version of
    the dataset ``output`` whose run read the Delta table ``input_uri`` (the ``inputs`` lineage in
    its commit metadata); None when no version of ``output`` read it, or there is no ``output`` yet.

    Raises :class:`DatasetError` when the answer is lost: a log entry of ``output`` is gone (log
    cleanup) before one that read the input is found."""
    out_uri = table_uri(output)
    latest = latest_version(out_uri, storage_options)
    if latest is None:
        return None
    target = table_uri(input_uri)
    for v in range(latest, -1, -1):
        info = commit_info(out_uri, v, storage_options)
        if info is None:
            raise DatasetError(
                f"since_version: last: the log entry of version {v} of {out_uri} is gone (log cleanup), and no later "
                f"version records which version of {target} was read",
                hint="set input.since_version to the last version of the input that was processed",
            )
        for entry in _decode_run(info.get(METADATA_KEY)).get("inputs") or []:
            if isinstance(entry, dict) and entry.get("delta") == target and entry.get("version") is not None:
                return int(entry["version"]), v
    return None


def delta_schema(uri: str, version: int | None = None, storage_options: dict[str, str] | None = None) -> pa.Schema:
    """The Arrow schema of a dataset's version (from its log: no data file is read)."""
    return pa.schema(open_table(uri, version, storage_options).schema().to_arrow())


# ---------------------------------------------------------------- reading datasets


def open_table(path: str, version: int | None = None, storage_options: dict[str, str] | None = None) -> Any:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = table_uri(path)
    try:
        return DeltaTable(uri, version=version, storage_options=storage_options or None)
    except TableNotFoundError:
        raise DatasetError(f"no curate dataset at {path}", hint="a dataset is created by `curate run`") from None
    except Exception as exc:
        if version is not None:
            raise DatasetError(f"dataset {path} has no version {version}: {exc}") from None
        raise


def parse_dataset_ref(ref: str) -> tuple[str, int | None]:
    base, sep, ver = ref.rpartition("@")
    if sep and ver.isdigit():
        return base, int(ver)
    return ref, None


def _decode_run(meta: Any) -> dict[str, Any]:
    if isinstance(meta, str):
        try:
            return dict(json.loads(meta))
        except ValueError:
            return {}
    return dict(meta or {})


def history(path: str, storage_options: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One entry per version, newest first, with curate's run metadata decoded."""
    dt = open_table(path, storage_options=storage_options)
    out = []
    for entry in dt.history():
        out.append(
            {
                "version": entry.get("version"),
                "timestamp": entry.get("timestamp"),
                "operation": entry.get("operation"),
                "run": _decode_run(entry.get(METADATA_KEY)),
            }
        )
    return out


def run_metadata(path: str, version: int, storage_options: dict[str, str] | None = None) -> dict[str, Any]:
    """curate's run metadata of ``version`` (empty if another tool wrote it)."""
    try:
        info = commit_info(path, version, storage_options)
    except Exception:
        info = None  # the log entry cannot be read directly here: fall back to deltalake's history
    if info is not None:
        return _decode_run(info.get(METADATA_KEY))
    for entry in history(path, storage_options):
        if entry["version"] == version:
            return entry["run"]
    raise DatasetError(f"dataset {path} has no version {version}")


def count_duplicate_ids(uri: str, files: list[dict[str, Any]], storage_options: dict[str, str] | None = None) -> int:
    """Rows of ``files`` (shards of ``uri``) whose ``id`` another of these rows has too: rows
    minus distinct ids (exact; reads only the id column)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if not files:
        return 0
    filesystem, base = fs.filesystem(table_uri(uri), storage_options)
    chunks = []
    for f in files:
        t = pq.read_table(f"{base.rstrip('/')}/{f['path']}", columns=["id"], filesystem=filesystem)
        chunks.extend(t.column("id").chunks)
    if not chunks:
        return 0
    ids = pa.chunked_array(chunks, pa.string())
    return len(ids) - int(pc.count_distinct(ids, mode="all").as_py())


# ---------------------------------------------------------------- runs alive, vacuum


__all__ = [
    "METADATA_KEY",
    "DeltaInput",
    "commit",
    "commit_info",
    "committed_run_key",
    "count_duplicate_ids",
    "history",
    "open_table",
    "parse_dataset_ref",
    "resolve_delta_input",
    "run_metadata",
    "table_uri",
]
