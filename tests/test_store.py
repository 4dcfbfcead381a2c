"""The dataset store and the filesystem helper, on real Delta tables read back with polars.

Races run in real processes (spawned, released together by a barrier), several rounds each; after
every round each committed version is checked row by row and a losing run's files must be in no
version.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from curate.pipelines import fs, store
from curate.pipelines.errors import ConcurrentWriteError, CurateError, DatasetError, RunKeyCommittedError
from deltalake import DeltaTable, write_deltalake

SCHEMA = pa.schema([("id", pa.string()), ("text", pa.string())])


# ---------------------------------------------------------------- helpers


def write_shard(uri: str, ids: list[str], extra: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """A Parquet shard in the table folder, described as the writer tasks describe theirs."""
    filesystem, base = fs.filesystem(uri, None, create=True)
    table = pa.table({"id": ids, "text": [f"text of {i}" for i in ids], **(extra or {})})
    name = f"part-test-{uuid.uuid4().hex[:12]}.zstd.parquet"
    pq.write_table(table, fs.join(base, name), filesystem=filesystem, compression="zstd")
    size = filesystem.get_file_info(fs.join(base, name)).size
    return {
        "kind": "main",
        "path": name,
        "size": int(size),
        "rows": table.num_rows,
        "info": json.dumps({"numRecords": table.num_rows, "modification_time": int(time.time() * 1000)}),
    }


def do_commit(uri: str, ids: list[str] | None, mode: str = "overwrite", run_id: str = "r", **kw: Any) -> int:
    files = [write_shard(uri, ids)] if ids else []
    return store.commit(uri, files, mode=mode, metadata={"run_id": run_id}, storage_options={}, default_schema=SCHEMA, **kw)


def ids_at(uri: str, version: int) -> list[str]:
    return sorted(pl.read_delta(uri, version=version)["id"].to_list())


def latest(uri: str) -> int:
    return int(DeltaTable(uri).version())


def all_referenced_paths(uri: str) -> set[str]:
    """Every file any version of the table ever added (read from the log)."""
    out = set()
    for name in fs.list_dir(fs.join(uri, "_delta_log")):
        if name.endswith(".json"):
            for line in fs.read_bytes(fs.join(uri, "_delta_log", name)).splitlines():
                action = json.loads(line)
                if "add" in action:
                    out.add(action["add"]["path"])
    return out


def ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


# ---------------------------------------------------------------- fs


@pytest.fixture(params=["local", "memory"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "root")
    return f"memory://curate-test-{uuid.uuid4().hex[:8]}/root"


def test_fs_paths() -> None:
    assert fs.table_uri("s3://b/t") == "s3://b/t"
    assert fs.table_uri("rel/t") == os.path.abspath("rel/t")
    assert fs.join("/a/b/", "c", "/d/", "", "e.json") == "/a/b/c/d/e.json"
    assert fs.join("s3://bucket/t", "_delta_log") == "s3://bucket/t/_delta_log"
    assert fs.join("memory://", "x") == "memory://x"
    assert fs.join("/a") == "/a"
    assert fs.is_url("gs://b") and not fs.is_url("/x")
    assert fs.scheme("S3://b/k") == "s3" and fs.scheme("/x") == ""


def test_fs_filesystem_branches(tmp_path: Path) -> None:
    local, path = fs.filesystem(str(tmp_path / "new" / "folder"), {}, create=True)
    assert isinstance(local, pafs.LocalFileSystem) and os.path.isdir(path)
    _, path = fs.filesystem(str(tmp_path / "other"), None)
    assert not os.path.exists(path)  # only created when asked
    local, path = fs.filesystem(f"file://{tmp_path}", None)
    assert isinstance(local, pafs.LocalFileSystem) and path == str(tmp_path)
    # a URL without options whose scheme pyarrow has no filesystem for, and one with options: fsspec
    for options in (None, {"skip_instance_cache": "false"}):
        mem, path = fs.filesystem("memory://bucket/x", options)
        assert isinstance(mem, pafs.PyFileSystem) and path.endswith("bucket/x")


def test_fs_read_write_list_remove(root: str) -> None:
    assert not fs.exists(root) and fs.list_dir(root) == []
    fs.remove_tree(root)  # nothing to remove: fine
    with pytest.raises(FileNotFoundError):
        fs.read_bytes(fs.join(root, "missing.json"))
    target = fs.join(root, "a", "b", "rec.json")
    fs.write_bytes(target, b'{"v": 1}')  # parents created
    assert fs.read_bytes(target) == b'{"v": 1}'
    fs.write_bytes(target, b'{"v": 2}', {})  # replaced
    assert fs.read_bytes(target, {}) == b'{"v": 2}'
    fs.makedirs(fs.join(root, "c"))
    fs.makedirs(fs.join(root, "c"))  # exists: fine
    fs.write_bytes(fs.join(root, "z.bin"), b"")
    assert fs.list_dir(root) == ["a", "c", "z.bin"]
    assert fs.list_dir(fs.join(root, "a", "b")) == ["rec.json"]
    assert fs.list_dir(target) == []  # a file is not a folder
    assert fs.exists(target) and fs.exists(fs.join(root, "c")) and not fs.exists(fs.join(root, "nope"))
    fs.remove_tree(fs.join(root, "z.bin"))
    fs.remove_tree(fs.join(root, "a"))
    assert fs.list_dir(root) == ["c"] and not fs.exists(target)
    fs.remove_tree(root)
    assert not fs.exists(root)


def test_fs_write_bytes_is_atomic(root: str) -> None:
    target = fs.join(root, "rec.json")
    fs.write_bytes(target, b"old")
    # a temporary file a crash left behind is never listed, so it never passes for a record
    fs.write_bytes(fs.join(root, f".rec.json{fs.TMP_MARK}deadbeef"), b"half")
    assert fs.list_dir(root) == ["rec.json"]
    with pytest.raises(TypeError):
        fs.write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert fs.read_bytes(target) == b"old"  # a failed write leaves the old content...
    filesystem, path = fs.filesystem(root)
    names = [i.path for i in filesystem.get_file_info(pafs.FileSelector(path))]
    assert len(names) == 2  # ... and no new temporary file


def test_fs_local_write_leaves_no_temp(tmp_path: Path) -> None:
    for i in range(5):
        fs.write_bytes(str(tmp_path / "r.json"), str(i).encode())
    assert os.listdir(tmp_path) == ["r.json"] and (tmp_path / "r.json").read_bytes() == b"4"


# ---------------------------------------------------------------- commit


def test_commit_versions_rows_and_metadata(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    assert do_commit(uri, ids("a", 3), run_id="r0", name="web") == 0
    assert do_commit(uri, ids("b", 2), mode="append", run_id="r1") == 1
    assert do_commit(uri, ids("c", 4), run_id="r2") == 2
    assert do_commit(uri, None, mode="append", run_id="r3") == 3  # an empty run still makes a version
    assert ids_at(uri, 0) == ids("a", 3)
    assert ids_at(uri, 1) == sorted(ids("a", 3) + ids("b", 2))
    assert ids_at(uri, 2) == ids_at(uri, 3) == ids("c", 4)
    assert DeltaTable(uri).metadata().name == "web"
    hist = store.history(uri)
    assert [h["version"] for h in hist] == [3, 2, 1, 0]
    assert [h["run"]["run_id"] for h in hist] == ["r3", "r2", "r1", "r0"]
    assert store.run_metadata(uri, 1)["run_id"] == "r1"
    assert store.commit_info(uri, 2)[store.METADATA_KEY]  # type: ignore[index]
    assert store.commit_info(uri, 9) is None
    with pytest.raises(DatasetError, match="no version 9"):
        store.run_metadata(uri, 9)
    with pytest.raises(DatasetError, match="no curate dataset"):
        store.open_table(str(tmp_path / "nothing"))
    assert store.parse_dataset_ref("out/web@3") == ("out/web", 3)
    assert store.parse_dataset_ref("s3://b/x@y") == ("s3://b/x@y", None)


def test_commit_empty_overwrite_uses_default_schema_and_append_checks_columns(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    assert do_commit(uri, None) == 0
    assert pl.read_delta(uri).schema == pl.Schema({"id": pl.String, "text": pl.String})
    do_commit(uri, ids("a", 2), mode="append")
    extra = write_shard(uri, ["x"], {"lang": ["en"]})
    with pytest.raises(DatasetError, match=r"columns the dataset does not have \(lang\)"):
        store.commit(uri, [extra], mode="append", metadata={}, storage_options={}, default_schema=SCHEMA)
    assert latest(uri) == 1
    assert store.commit(uri, [extra], mode="overwrite", metadata={}, storage_options={}, default_schema=SCHEMA) == 2
    assert pl.read_delta(uri).to_dicts() == [{"id": "x", "text": "text of x", "lang": "en"}]
    # an append without the new column is fine (the column is null for those rows)
    do_commit(uri, ["y"], mode="append")
    assert sorted(pl.read_delta(uri)["lang"].to_list(), key=lambda v: (v is None, v)) == ["en", None]
    with pytest.raises(DatasetError, match="unknown write mode"):
        do_commit(uri, None, mode="upsert")


def _interleave(monkeypatch: pytest.MonkeyPatch, times: int, other: Any) -> list[int]:
    """After commit() loads the table (the first ``times`` times), another writer commits (for real)."""
    original = store.open_latest
    done: list[int] = []

    def opened(uri: str, storage_options: Any) -> Any:
        dt = original(uri, storage_options)
        if len(done) < times:
            monkeypatch.setattr(store, "open_latest", original)  # the other writer loads normally
            try:
                done.append(other())
            finally:
                monkeypatch.setattr(store, "open_latest", opened)
        return dt

    monkeypatch.setattr(store, "open_latest", opened)
    return done


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_commit_returns_its_own_version_when_others_commit_in_between(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    uri = str(tmp_path / "ds")
    do_commit(uri, ids("base", 2))
    n = iter(range(100))
    others = _interleave(monkeypatch, 2, lambda: do_commit(uri, ids(f"other{next(n)}", 3), mode=mode, run_id="other"))
    mine = do_commit(uri, ids("mine", 4), mode=mode, run_id="mine")
    assert others == [1, 2] and mine == 3  # two attempts lost to real commits, the third landed
    assert store.run_metadata(uri, mine)["run_id"] == "mine"
    if mode == "overwrite":
        assert ids_at(uri, 1) == ids("other0", 3) and ids_at(uri, 2) == ids("other1", 3)
        assert ids_at(uri, 3) == ids("mine", 4)  # rebuilt on version 2: none of the other run's rows
    else:
        assert ids_at(uri, 3) == sorted(ids("base", 2) + ids("other0", 3) + ids("other1", 3) + ids("mine", 4))


def test_commit_create_race_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = str(tmp_path / "ds")
    others = _interleave(monkeypatch, 1, lambda: do_commit(uri, ids("first", 2), run_id="first"))
    assert do_commit(uri, ids("second", 3), run_id="second") == 1 and others == [0]
    assert ids_at(uri, 0) == ids("first", 2) and ids_at(uri, 1) == ids("second", 3)


def test_commit_lost_race_publishes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = str(tmp_path / "ds")
    do_commit(uri, ids("base", 2))
    _interleave(monkeypatch, 1, lambda: do_commit(uri, ids("other", 1), run_id="other"))
    files = [write_shard(uri, ids("mine", 2))]
    with pytest.raises(ConcurrentWriteError, match="another run committed version 1 of .*published nothing") as err:
        store.commit(uri, files, mode="overwrite", metadata={}, storage_options={}, default_schema=SCHEMA, max_attempts=1)
    assert err.value.version == 1 and err.value.exit_code == 4 and "rerun" in str(err.value)
    assert latest(uri) == 1 and files[0]["path"] not in all_referenced_paths(uri)
    # expected_version: no rebasing at all
    with pytest.raises(ConcurrentWriteError, match="expected version 0"):
        store.commit(uri, files, mode="append", metadata={}, storage_options={}, default_schema=SCHEMA, expected_version=0)
    assert store.commit(uri, files, mode="append", metadata={}, storage_options={}, default_schema=SCHEMA, expected_version=1) == 2


def test_commit_error_that_is_not_a_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed commit after which the table has not moved is an error, not a lost race: no retry."""
    import deltalake
    from deltalake.exceptions import CommitFailedError

    uri = str(tmp_path / "ds")
    do_commit(uri, ids("a", 1))
    calls = []

    def fail(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise CommitFailedError("Generic error: the store is read-only\nmore detail")

    monkeypatch.setattr(deltalake.DeltaTable, "create_write_transaction", fail)
    # the whole message, on one line (issue 12: messages cut off at their first line)
    with pytest.raises(DatasetError, match="cannot commit to .*: Generic error: the store is read-only more detail$") as err:
        do_commit(uri, ids("b", 1), mode="append")
    assert not isinstance(err.value, ConcurrentWriteError) and calls == [1] and latest(uri) == 0


def test_commit_that_landed_but_raised_is_not_repeated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error raised after the log entry was written (a post-commit hook) returns that version."""
    import deltalake
    from deltalake.exceptions import CommitFailedError

    uri = str(tmp_path / "ds")
    do_commit(uri, ids("a", 1))
    real = deltalake.DeltaTable.create_write_transaction

    def commit_then_fail(self: Any, *args: Any, **kwargs: Any) -> None:
        real(self, *args, **kwargs)
        raise CommitFailedError("checkpoint failed")

    monkeypatch.setattr(deltalake.DeltaTable, "create_write_transaction", commit_then_fail)
    assert do_commit(uri, ids("b", 2), mode="append") == 1
    assert latest(uri) == 1 and ids_at(uri, 1) == sorted(ids("a", 1) + ids("b", 2))


# ---------------------------------------------------------------- run keys


def _txn_actions(uri: str, version: int) -> list[dict[str, Any]]:
    raw = fs.read_bytes(fs.join(uri, "_delta_log", f"{version:020d}.json"))
    return [json.loads(line)["txn"] for line in raw.splitlines() if "txn" in json.loads(line)]


def test_run_key_recorded_found_and_never_committed_twice(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    assert store.committed_run_key(uri, "k1") is None  # no table
    assert do_commit(uri, ids("a", 2), run_key="k1") == 0  # the key in the creating commit
    assert do_commit(uri, ids("b", 2), mode="append", run_key="k2") == 1
    assert do_commit(uri, ids("c", 2), mode="append") == 2
    assert store.committed_run_key(uri, "k1") == 0
    assert store.committed_run_key(uri, "k2") == 1
    assert store.committed_run_key(uri, "k3") is None
    assert [(t["appId"], t["version"]) for t in _txn_actions(uri, 1)] == [("curate.run_key:k2", 1)]
    info = store.commit_info(uri, 1)
    assert info is not None and info[store.RUN_KEY_METADATA] == "k2"
    assert store.run_metadata(uri, 1)["run_key"] == "k2"
    files = [write_shard(uri, ids("again", 2))]
    with pytest.raises(RunKeyCommittedError, match=r"run key 'k2' is already committed to .* \(version 1\)") as err:
        store.commit(uri, files, mode="overwrite", metadata={}, storage_options={}, default_schema=SCHEMA, run_key="k2")
    assert err.value.version == 1 and err.value.run_key == "k2" and err.value.exit_code == 0
    assert isinstance(err.value, DatasetError)
    again = pickle.loads(pickle.dumps(err.value))  # errors travel pickled (Ray)
    assert (again.version, again.run_key, again.message) == (1, "k2", err.value.message)
    assert latest(uri) == 2 and files[0]["path"] not in all_referenced_paths(uri)
    # keys survive an overwrite (app transactions are table state, not file state)
    do_commit(uri, ids("d", 1))
    assert store.committed_run_key(uri, "k1") == 0


def test_run_key_race_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = str(tmp_path / "ds")
    do_commit(uri, ids("base", 1))
    _interleave(monkeypatch, 1, lambda: do_commit(uri, ids("winner", 2), mode="append", run_key="same", run_id="winner"))
    with pytest.raises(RunKeyCommittedError) as err:
        do_commit(uri, ids("loser", 2), mode="append", run_key="same", run_id="loser")
    assert err.value.version == 1 and latest(uri) == 1
    assert ids_at(uri, 1) == sorted(ids("base", 1) + ids("winner", 2))


# ---------------------------------------------------------------- races between processes

_BARRIER: Any = None


def _init_worker(barrier: Any) -> None:
    global _BARRIER
    _BARRIER = barrier


def _race_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Write a shard, wait for the other process, commit at the same moment."""
    files = [write_shard(job["uri"], job["ids"])]
    _BARRIER.wait(timeout=60)
    try:
        version = store.commit(
            job["uri"],
            files,
            mode=job["mode"],
            metadata={"run_id": job["tag"]},
            storage_options={},
            default_schema=SCHEMA,
            run_key=job.get("run_key"),
            expected_version=job.get("expected_version"),
        )
        return {"tag": job["tag"], "ok": True, "version": version, "paths": [f["path"] for f in files]}
    except CurateError as exc:
        return {"tag": job["tag"], "ok": False, "error": type(exc).__name__, "version": getattr(exc, "version", None),
                "message": str(exc), "paths": [f["path"] for f in files]}


@pytest.fixture(scope="module")
def race_pool() -> Any:
    ctx = multiprocessing.get_context("spawn")  # deltalake's runtime does not survive a fork
    barrier = ctx.Barrier(2)
    with ctx.Pool(2, initializer=_init_worker, initargs=(barrier,)) as pool:
        yield pool


ROUNDS = 4


def _race(pool: Any, uri: str, mode: str, **job: Any) -> list[dict[str, Any]]:
    jobs = [{"uri": uri, "mode": mode, "tag": tag, "ids": ids(f"{tag}-{uuid.uuid4().hex[:6]}", n), **job}
            for tag, n in (("p1", 3), ("p2", 5))]
    results = pool.map(_race_worker, jobs, chunksize=1)
    for r, j in zip(results, jobs):
        r["ids"] = sorted(j["ids"])
    return results


def _check_round(uri: str, mode: str, before: list[str], results: list[dict[str, Any]]) -> None:
    """Every committed version holds exactly what its mode says; a loser's files are in no version."""
    referenced = all_referenced_paths(uri)
    ok = sorted((r for r in results if r["ok"]), key=lambda r: r["version"])
    versions = [r["version"] for r in ok]
    assert len(set(versions)) == len(versions), results
    rows = before
    for r in ok:
        assert store.run_metadata(uri, r["version"])["run_id"] == r["tag"]
        rows = r["ids"] if mode == "overwrite" else sorted(rows + r["ids"])
        assert ids_at(uri, r["version"]) == rows, (r, results)
    for r in results:
        if not r["ok"]:
            assert r["error"] in ("ConcurrentWriteError", "RunKeyCommittedError"), r
            assert not set(r["paths"]) & referenced, r
    assert latest(uri) == (max(versions) if versions else latest(uri))


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_race_create_table(tmp_path: Path, race_pool: Any, mode: str) -> None:
    for i in range(ROUNDS):
        uri = str(tmp_path / f"ds{i}")
        results = _race(race_pool, uri, mode)
        assert sorted(r["version"] for r in results if r["ok"]) == [0, 1], results  # both land, in turn
        _check_round(uri, mode, [], results)


@pytest.mark.parametrize("mode", ["overwrite", "append"])
def test_race_same_table(tmp_path: Path, race_pool: Any, mode: str) -> None:
    uri = str(tmp_path / "ds")
    do_commit(uri, ids("seed", 2))
    for _ in range(ROUNDS):
        before = ids_at(uri, latest(uri))
        base = latest(uri)
        results = _race(race_pool, uri, mode)
        assert sorted(r["version"] for r in results) == [base + 1, base + 2], results
        _check_round(uri, mode, before, results)


def test_race_strict_loser_fails_and_publishes_nothing(tmp_path: Path, race_pool: Any) -> None:
    uri = str(tmp_path / "ds")
    do_commit(uri, ids("seed", 2))
    for _ in range(ROUNDS):
        base = latest(uri)
        before = ids_at(uri, base)
        results = _race(race_pool, uri, "append", expected_version=base)
        won = [r for r in results if r["ok"]]
        lost = [r for r in results if not r["ok"]]
        assert len(won) == 1 and won[0]["version"] == base + 1, results
        assert lost[0]["error"] == "ConcurrentWriteError" and lost[0]["version"] == base + 1, results
        assert f"another run committed version {base + 1}" in lost[0]["message"]
        _check_round(uri, "append", before, results)


@pytest.mark.parametrize("create", [False, True])
def test_race_same_run_key(tmp_path: Path, race_pool: Any, create: bool) -> None:
    for i in range(ROUNDS):
        uri = str(tmp_path / f"ds{i}")
        if not create:
            do_commit(uri, ids("seed", 2))
        base = latest(uri) if not create else -1
        before = [] if create else ids_at(uri, base)
        key = f"key-{i}"
        results = _race(race_pool, uri, "append", run_key=key)
        won = [r for r in results if r["ok"]]
        lost = [r for r in results if not r["ok"]]
        assert len(won) == 1 and len(lost) == 1, results
        assert won[0]["version"] == base + 1 and latest(uri) == base + 1
        assert lost[0]["error"] == "RunKeyCommittedError" and lost[0]["version"] == base + 1, results
        assert store.committed_run_key(uri, key) == base + 1
        _check_round(uri, "append", before, results)


# ---------------------------------------------------------------- delta inputs


def _sizes(paths: list[tuple[str, int]]) -> list[int]:
    return [os.path.getsize(p) for p, _ in paths]


def test_resolve_delta_input_whole_version(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    do_commit(uri, ids("a", 2))
    do_commit(uri, ids("b", 3), mode="append")
    got = store.resolve_delta_input(uri, storage_options={})
    assert (got.uri, got.version, got.since_version) == (uri, 1, None)
    assert [p for p, _ in got.files] == DeltaTable(uri).file_uris()  # same files, same order as deltalake's
    assert [s for _, s in got.files] == _sizes(got.files)
    assert sorted(pl.read_parquet([p for p, _ in got.files])["id"].to_list()) == ids_at(uri, 1)
    v0 = store.resolve_delta_input(uri, 0)
    assert v0.version == 0 and len(v0.files) == 1
    assert got.lineage() == {"uri": uri, "version": 1, "since_version": None, "files": 2}
    with pytest.raises(DatasetError, match="no curate dataset"):
        store.resolve_delta_input(str(tmp_path / "nothing"))
    with pytest.raises(DatasetError, match="at version 7"):
        store.resolve_delta_input(uri, 7)


def test_resolve_delta_input_encoded_paths(tmp_path: Path) -> None:
    uri = str(tmp_path / "parted")
    write_deltalake(uri, pa.table({"k": ["a b", "c/d%"], "id": ["1", "2"]}), partition_by=["k"])
    got = store.resolve_delta_input(uri)
    assert sorted(p for p, _ in got.files) == sorted(DeltaTable(uri).file_uris())
    assert all(os.path.exists(p) for p, _ in got.files) and [s for _, s in got.files] == _sizes(got.files)


def test_resolve_delta_input_since_version(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    do_commit(uri, ids("a", 2))  # 0
    do_commit(uri, ids("b", 3), mode="append")  # 1
    do_commit(uri, ids("c", 1), mode="append")  # 2
    do_commit(uri, None, mode="append")  # 3: an empty append
    new = store.resolve_delta_input(uri, since_version=0)
    assert (new.version, new.since_version) == (3, 0)
    assert pl.read_parquet([p for p, _ in new.files])["id"].to_list() == ids("b", 3) + ids("c", 1)  # commit order
    assert [s for _, s in new.files] == _sizes(new.files)
    only_c = store.resolve_delta_input(uri, version=2, since_version=1)
    assert only_c.version == 2 and pl.read_parquet([p for p, _ in only_c.files])["id"].to_list() == ids("c", 1)
    assert store.resolve_delta_input(uri, since_version=3).files == []
    with pytest.raises(DatasetError, match="since_version 5 .* not a version from 0 to 3"):
        store.resolve_delta_input(uri, since_version=5)
    # an overwrite after N: since_version N no longer means "the rows added since"
    do_commit(uri, ids("d", 2))  # 4
    do_commit(uri, ids("e", 2), mode="append")  # 5
    with pytest.raises(DatasetError, match="only works for append-only history, but version 4 .* removed 3 file"):
        store.resolve_delta_input(uri, since_version=1)
    assert len(store.resolve_delta_input(uri, version=3, since_version=1).files) == 1  # before the overwrite: fine
    after = store.resolve_delta_input(uri, since_version=4)
    assert pl.read_parquet([p for p, _ in after.files])["id"].to_list() == ids("e", 2)


def test_resolve_delta_input_after_delete(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    do_commit(uri, ids("a", 2))
    do_commit(uri, ids("b", 2), mode="append")
    DeltaTable(uri).delete("id = 'a-0'")  # another tool rewrites a file: version 2
    do_commit(uri, ids("c", 2), mode="append")
    with pytest.raises(DatasetError, match="version 2 .* removed 1 file"):
        store.resolve_delta_input(uri, since_version=0)
