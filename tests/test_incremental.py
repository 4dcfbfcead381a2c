"""``since_version: last`` on a delta input, through `curate run` on real Delta tables: the first run
reads everything, a run after an append reads only the new rows, a run with nothing new appends an
empty version, and an input whose history was rewritten is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from helpers import run_cli, write_pipeline

pytestmark = pytest.mark.slow


def _rows(ids: list[str]) -> pa.Table:
    # no text column: a table of records (like the annotation app's clips)
    return pa.table({"id": ids, "n": pa.array([len(i) for i in ids], pa.int64())})


def _last_run(dataset: Path) -> dict:
    out = run_cli("versions", str(dataset), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]


def test_since_last_reads_what_is_new_then_nothing_then_refuses_a_rewritten_input(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_deltalake(str(src), _rows(["a", "b"]))  # input version 0
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: delta, paths: [{src}], since_version: last}}
output: {{dataset: {out}, mode: append}}
ray: {{num_cpus: 1}}
""")

    first = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert sorted(pl.read_delta(str(out))["id"].to_list()) == ["a", "b"]
    lineage = _last_run(out)["run"]["inputs"][0]
    assert lineage["delta"] == str(src) and lineage["version"] == 0 and lineage["since_version"] is None
    assert lineage["since"] == {"last": True, "output_version": None}

    write_deltalake(str(src), _rows(["c", "d", "e"]), mode="append")  # input version 1
    second = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    run = _last_run(out)
    assert run["version"] == 1 and run["run"]["rows_in"] == 3  # only the new rows were read
    assert (run["run"]["inputs"][0]["version"], run["run"]["inputs"][0]["since_version"]) == (1, 0)
    assert run["run"]["inputs"][0]["since"] == {"last": True, "output_version": 0}
    df = pl.read_delta(str(out))
    assert sorted(df["id"].to_list()) == ["a", "b", "c", "d", "e"]  # appended, nothing read twice

    dry = run_cli("run", str(pipe), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and ": 0 input files" in dry.stdout, dry.stdout + dry.stderr
    assert "(since_version: last): what was added after version 1 (read by the output's version 1)" in " ".join(dry.stdout.split())

    third = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)  # nothing new
    assert third.returncode == 0, third.stderr
    run = _last_run(out)
    assert run["version"] == 2 and run["run"]["rows_in"] == 0 and run["run"]["rows"] == 0
    assert run["run"]["inputs"][0]["since_version"] == 1
    assert pl.read_delta(str(out)).height == 5 and pl.read_delta(str(out), version=1).height == 5
    assert pl.read_delta(str(out)).columns == df.columns  # the empty version keeps the schema

    # the input rewritten after the version last read: "what is new" is unknowable, so refuse
    write_deltalake(str(src), _rows(["x"]), mode="overwrite")  # input version 2 removes files
    fourth = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert fourth.returncode == 2  # a config error, before Ray starts
    assert "since_version: last = 1" in fourth.stderr and "version 2 of" in fourth.stderr and "removed 2 file(s)" in fourth.stderr, fourth.stderr
    assert _last_run(out)["version"] == 2  # nothing published


def _commit(dataset: Path, src: Path | None, version: int | None) -> None:
    """A version of ``dataset`` whose run metadata says it read ``src`` at ``version`` (or nothing)."""
    from curate.pipelines.store import METADATA_KEY
    from deltalake import CommitProperties

    run = {"inputs": [{"delta": str(src), "version": version, "since_version": None}]} if src is not None else {"inputs": []}
    write_deltalake(str(dataset), _rows(["z"]), mode="append", commit_properties=CommitProperties(custom_metadata={METADATA_KEY: json.dumps(run)}))


def test_last_read_version_from_the_output_history_and_its_errors(tmp_path: Path) -> None:
    from curate.pipelines import store
    from curate.pipelines.config import load_pipeline
    from curate.pipelines.errors import ConfigError, DatasetError
    from curate.pipelines.preflight import plan_run_inputs

    src, other, out = tmp_path / "src", tmp_path / "other", tmp_path / "out"
    assert store.last_read_version(str(out), str(src)) is None  # no output yet: read everything
    _commit(out, src, 0)  # out v0 read src v0
    _commit(out, other, 7)  # out v1 read another table
    _commit(out, None, None)  # out v2: a run without inputs
    assert store.last_read_version(str(out), str(src)) == (0, 0)  # the newest version that read src
    assert store.last_read_version(str(out), str(other)) == (7, 1)
    assert store.last_read_version(str(out), str(tmp_path / "never")) is None

    # src recreated with fewer versions than the output says were read: a clear error, before Ray
    write_deltalake(str(src), _rows(["a"]))
    _commit(out, src, 3)
    pipe = write_pipeline(tmp_path / "p.yaml", f"input: {{format: delta, paths: [{src}], since_version: last}}\noutput: {{dataset: {out}, mode: append}}\n")
    with pytest.raises(ConfigError, match=r"since_version: last = 3.*not a version from 0 to 0"):
        plan_run_inputs(load_pipeline(pipe))

    # the output's log entries that would say it are gone (a checkpoint, then log cleanup): a clear error too
    from deltalake import DeltaTable

    _commit(out, None, None)  # out v4 reads nothing
    DeltaTable(str(out)).create_checkpoint()
    for v in range(4):
        (out / "_delta_log" / f"{v:020d}.json").unlink()
    with pytest.raises(DatasetError, match=r"log entry of version 3 of .* is gone"):
        store.last_read_version(str(out), str(src))
