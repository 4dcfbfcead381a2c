"""Issue 12, the rest: errors inside Ray tasks name the file and the real error (no Ray retry advice,
no colour codes, nothing cut off), `curate vacuum` after a killed run, silent conversions and skips
made visible (numeric Parquet text, blank JSONL lines, duplicate ids), validation reporting every
problem, `curate versions` at 80 columns. Tests through `curate run` start a local Ray (30-60 s
each on a loaded machine): there are few of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curate.pipelines import store
from curate.pipelines.config import InputConfig
from curate.pipelines.errors import ConfigError, InputDataError
from curate.pipelines.readers import plan_inputs, read_task, split_tasks
from curate.pipelines.stage import DROP_RULE, DROP_STAGE
from deltalake import DeltaTable
from helpers import curate_exe, run_cli, write_jsonl, write_pipeline

RAY_ADVICE = "To change retry attempts"


def read_all(cfg: InputConfig) -> pa.Table:
    tables = [t for task in split_tasks(plan_inputs(cfg), cfg) for t in read_task(task, cfg)]
    return pa.concat_tables(tables)


def corrupt_parquet(path: Path, rows: int = 20000) -> Path:
    table = pa.table({"id": [str(i) for i in range(rows)], "text": [f"some text {i}" for i in range(rows)]})
    pq.write_table(table, path, row_group_size=5000)
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 2000):  # inside a data page of a later row group
        data[i] = 0xAB
    path.write_bytes(bytes(data))
    return path


def assert_clean(stderr: str) -> None:
    assert RAY_ADVICE not in stderr and "Failed to apply UDF" not in stderr, stderr
    assert "\x1b[" not in stderr and "[36m" not in stderr, "no terminal colour codes in messages"


# ------------------------------------------------------------------ item 3/4: errors inside Ray tasks

SETUP_FAILS = '''
from curate.pipelines.stage import Params, Stage

class NoModel(Stage[Params]):
    """A stage whose model cannot be loaded (raises in setup, inside a Ray task)."""
    Params = Params

    def setup(self):
        raise RuntimeError("model file /models/missing.bin is not there: " + "x" * 150 + " END")

    def process(self, batch):
        return batch
'''


def test_errors_raised_in_ray_tasks_name_the_file_and_the_real_error(tmp_path: Path) -> None:
    corrupt_parquet(tmp_path / "bad.parquet")
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: parquet, paths: [{tmp_path}/bad.parquet]}}
stages: [{{normalize: {{}}}}]
output: {{dataset: {tmp_path}/out}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, env={"COLUMNS": "80"})
    assert out.returncode == 3, out.stderr  # bad input data
    assert "bad.parquet: the Parquet file is corrupt after row" in out.stderr and "Corrupt snappy compressed data" in out.stderr
    assert "on_error: skip" in out.stderr
    assert_clean(out.stderr)

    # any other exception raised in a Ray task: its type and whole message, and where it was raised
    write_jsonl(tmp_path / "in.jsonl", [{"id": "1", "text": "some text"}])
    (tmp_path / "nomodel.py").write_text(SETUP_FAILS)
    pipe = write_pipeline(tmp_path / "q.yaml", f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages: [{{nomodel:NoModel: {{}}}}]
output: {{dataset: {tmp_path}/out2}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, env={"COLUMNS": "80"})
    assert out.returncode == 1, out.stderr
    text = " ".join(out.stderr.split())  # the terminal may wrap long lines: nothing is cut off
    assert "the run failed: RuntimeError: model file /models/missing.bin is not there" in text and " END" in text, out.stderr
    assert "raised at nomodel.py" in text and "in setup" in text
    assert "traceback is in" in text
    assert_clean(out.stderr)


def test_corrupt_parquet_with_skip_keeps_the_rows_before_the_break(tmp_path: Path) -> None:
    path = corrupt_parquet(tmp_path / "bad.parquet")
    with pytest.raises(InputDataError, match=r"bad\.parquet: the Parquet file is corrupt after row \d+"):
        read_all(InputConfig(format="parquet", paths=[str(path)]))
    t = read_all(InputConfig(format="parquet", paths=[str(path)], on_error="skip", read_batch_rows=1000))
    bad = t.filter(pa.compute.is_valid(t.column(DROP_STAGE)))
    assert bad.column(DROP_RULE).to_pylist() == ["corrupt_file"]
    kept = t.num_rows - 1
    assert kept > 0 and kept % 1000 == 0 and t.column("id").to_pylist()[:kept] == [str(i) for i in range(kept)]


# ------------------------------------------------------------------ item 8: silent conversions and skips


def test_numeric_parquet_text_is_treated_like_numeric_jsonl_text(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["a", "b"], "text": [1, 2]}), tmp_path / "n.parquet")
    write_jsonl(tmp_path / "n.jsonl", [{"id": "a", "text": 1}])
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: parquet, paths: [{tmp_path}/n.parquet]}}
stages: [{{normalize: {{}}}}]
output: {{dataset: {tmp_path}/out}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)  # fails before Ray starts
    assert out.returncode == 3, out.stderr
    assert "n.parquet: column 'text' is int64, not a string" in out.stderr and "JSONL" in out.stderr
    with pytest.raises(InputDataError, match="is a int, not a string"):
        read_all(InputConfig(format="jsonl", paths=[str(tmp_path / "n.jsonl")]))
    # on_error: skip drops them with the rule a JSONL record with numeric text gets
    t = read_all(InputConfig(format="parquet", paths=[str(tmp_path / "n.parquet")], on_error="skip"))
    assert t.column(DROP_RULE).to_pylist() == ["bad_text", "bad_text"] and t.column("text").to_pylist() == ["1", "2"]
    j = read_all(InputConfig(format="jsonl", paths=[str(tmp_path / "n.jsonl")], on_error="skip"))
    assert j.column(DROP_RULE).to_pylist() == ["bad_text"]


def test_blank_lines_are_counted_and_duplicate_ids_warned_about(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "text": "first document text"}),
        "",
        "   ",
        json.dumps({"id": "a", "text": "second document, same id"}),
        json.dumps({"id": "b", "text": "third document text"}),
        "\t",
        json.dumps({"id": "b", "text": "fourth document text"}),
        json.dumps({"id": "c", "text": "fifth document text"}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages: [{{length_filter: {{min_chars: 1}}}}]
output: {{dataset: {tmp_path}/out, keep_dropped: true}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    meta = json.loads(run_cli("versions", str(tmp_path / "out"), "--json").stdout)[0]["run"]
    read = next(s for s in meta["stages"] if s["stage"] == "read")
    line_count = (tmp_path / "in.jsonl").read_bytes().count(b"\n")
    assert read["in"] == line_count == 8  # in = out + dropped, checkable against `wc -l`
    assert read["dropped_by_rule"] == {"blank_line": 3} and meta["rows"] == 5
    dropped = pl.read_delta(str(tmp_path / "out.dropped"))
    assert sorted(dropped["id"].to_list()) == ["in.jsonl:2", "in.jsonl:3", "in.jsonl:6"]
    assert set(dropped["rule"]) == {"blank_line"}
    # duplicate ids: counted in the commit and warned about
    assert meta["duplicate_ids"] == 2
    assert "2 of the 5 rows of version 0 have an id another of its rows has too" in " ".join(out.stderr.split())


# ------------------------------------------------------------------ item 6: curate vacuum


def _kill_before_commit(tmp_path: Path, pipe: Path, tables: list[Path], *args: str) -> None:
    before = {t: set(t.glob("*.parquet")) for t in tables}
    earlier_logs = set((tmp_path / ".curate" / "runs").glob("*.log"))
    proc = subprocess.Popen([*curate_exe(), "run", str(pipe), "--no-progress", *args], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "CURATE_PAUSE_BEFORE_COMMIT": "120"})
    try:
        # the run logs "pausing ... before the commit" once every shard is written: wait for that line
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            logs = set((tmp_path / ".curate" / "runs").glob("*.log")) - earlier_logs  # this run's
            if any("before the commit (CURATE_PAUSE_BEFORE_COMMIT)" in log.read_text(errors="replace") for log in logs):
                break
            time.sleep(0.2)
        assert all(set(t.glob("*.parquet")) - before[t] for t in tables), "the run wrote no shard before its pause"
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def test_vacuum_cleans_a_killed_run_in_one_command_and_keeps_history_readable(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": "x" * (i % 40)} for i in range(200)])
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages: [{{length_filter: {{min_chars: 10}}}}]
output: {{dataset: {tmp_path}/out, keep_dropped: true, shard_rows: 40}}
""")
    assert run_cli("run", str(pipe), "--no-progress", cwd=tmp_path).returncode == 0
    main, dropped = tmp_path / "out", tmp_path / "out.dropped"
    committed = {t: set(t.glob("*.parquet")) for t in (main, dropped)}
    _kill_before_commit(tmp_path, pipe, [main, dropped], "--no-resume")
    stray = {t: set(t.glob("*.parquet")) - committed[t] for t in (main, dropped)}
    assert stray[main] and stray[dropped]

    # right after the kill, the default settings list the killed run's shards of both tables
    listed = run_cli("vacuum", str(main), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {str(p) for s in stray.values() for p in s}
    deleted = run_cli("vacuum", str(main), "--delete", cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert "none added" in deleted.stderr
    for t in (main, dropped):
        assert set(t.glob("*.parquet")) == committed[t], "only the killed run's shards are gone"
    # no VACUUM versions: the history and `curate show` are as before
    versions = json.loads(run_cli("versions", str(main), "--json").stdout)
    assert [v["version"] for v in versions] == [0] and versions[0]["run"]["rows"] == 150
    shown = run_cli("show", str(main), cwd=tmp_path)
    assert shown.returncode == 0 and "not written by curate run" not in shown.stdout
    assert pl.read_delta(str(main)).height == 150 and pl.read_delta(str(dropped)).height == 50
    assert not list(main.glob("_curate_journal/*")), "no run marker or journal left behind"

    # without vacuum, the next run removes a killed run's shards itself
    _kill_before_commit(tmp_path, pipe, [main, dropped], "--no-resume")
    again = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "unreferenced shards of earlier runs that were killed or failed" in again.stderr
    for t in (main, dropped):
        assert {p.name for p in t.glob("*.parquet")} == {Path(u).name for u in DeltaTable(str(t)).file_uris()} | {p.name for p in committed[t]}
    committed = {t: set(t.glob("*.parquet")) for t in (main, dropped)}

    # shards an unfinished run's journal names are kept (the next run reuses them) unless --journals
    attempt = main / "_curate_journal" / "k" / "20260101T000000Z-dead00"
    (attempt / "write").mkdir(parents=True)
    (attempt / "attempt.json").write_text(json.dumps({"host": os.uname().nodename, "pid": 2**22 + 12345, "heartbeat": 0}))
    shard = main / "part-20260101T000000Z-dead00-000000000000.zstd.parquet"
    shard.write_bytes(next(iter(committed[main])).read_bytes())
    (attempt / "write" / "0-h.json").write_text(json.dumps({"task": 0, "weight": 1, "files": [{"kind": "main", "path": shard.name}], "counts": {}}))
    kept = run_cli("vacuum", str(main), "--delete", cwd=tmp_path)
    assert kept.returncode == 0 and shard.exists()
    assert "kept 1 unreferenced files named by an unfinished run's journal" in " ".join(kept.stderr.split())
    gone = run_cli("vacuum", str(main), "--delete", "--journals", cwd=tmp_path)
    assert gone.returncode == 0 and not shard.exists() and not list(main.glob("_curate_journal/*"))


def test_vacuum_keeps_young_files_of_runs_not_known_to_have_ended(tmp_path: Path) -> None:
    table = pa.table({"id": ["a"], "text": ["x"]})
    (tmp_path / "ds").mkdir()
    pq.write_table(table, tmp_path / "ds" / "part-R0-a.zstd.parquet")
    store.commit(str(tmp_path / "ds"), [{"path": "part-R0-a.zstd.parquet", "size": 1, "rows": 1, "info": "{}"}],
                 mode="overwrite", metadata={"run_id": "R0"}, storage_options=None, default_schema=table.schema)
    young = tmp_path / "ds" / "part-R9-b.zstd.parquet"  # a run (without a marker) that may still be writing
    pq.write_table(table, young)
    out = run_cli("vacuum", str(tmp_path / "ds"), "--delete")
    assert out.returncode == 0 and young.exists() and "younger than 60 minutes" in out.stderr
    out = run_cli("vacuum", str(tmp_path / "ds"), "--delete", "--older-than", "0")
    assert out.returncode == 0 and not young.exists()
    # a dropped-rows table given by itself: vacuumed with its dataset
    (tmp_path / "ds.dropped").mkdir()
    store.commit(str(tmp_path / "ds.dropped"), [], mode="overwrite", metadata={"run_id": "R0", "of_dataset": str(tmp_path / "ds")},
                 storage_options=None, default_schema=table.schema)
    stray = tmp_path / "ds.dropped" / "part-R8-c.zstd.parquet"
    pq.write_table(table, stray)
    out = run_cli("vacuum", str(tmp_path / "ds.dropped"), "--older-than", "0")
    assert out.returncode == 0 and out.stdout.split() == [str(stray)] and f"{tmp_path / 'ds'} (1 versions)" in out.stderr


# ------------------------------------------------------------------ item 9: smaller


def test_validation_reports_every_bad_stage_and_every_missing_path(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "t"}])
    pipe = write_pipeline(tmp_path / "p.yaml", """input: {format: jsonl, paths: [nope1.jsonl, a.jsonl, nope2*.jsonl]}
stages:
  - length_filter: {min_chars: fifty}
  - exact_dedupe: {}
  - normalize: {form: XYZ}
output: {dataset: out}
""")
    out = run_cli("validate", str(pipe), cwd=tmp_path)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "stages[0].length_filter.min_chars" in errors[0]
    assert "stages[1]: unknown stage type 'exact_dedupe'" in errors[1] and "stages[2].normalize.form" in errors[2]
    assert "did you mean 'exact_dedup'?" in out.stderr
    pipe.write_text(pipe.read_text().replace("fifty", "5").replace("exact_dedupe", "exact_dedup").replace("XYZ", "NFC"))
    out = run_cli("validate", str(pipe), cwd=tmp_path)
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: input.paths[0]: no input files match 'nope1.jsonl'", "error: input.paths[2]: no input files match 'nope2*.jsonl'"]
    with pytest.raises(ConfigError):
        plan_inputs(InputConfig(format="jsonl", paths=[str(tmp_path / "x.jsonl")]))


def test_versions_is_readable_at_80_columns(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.string())])
    for _ in range(2):
        store.commit(str(tmp_path / "ds"), [], mode="overwrite", storage_options=None, default_schema=schema,
                     metadata={"run_id": "20261203T045220Z-68c5d9", "rows": 12_345_678, "rows_in": 12_400_000,
                               "inputs": [{}] * 3, "config_fingerprint": "0123456789abcdef"})
    out = run_cli("versions", str(tmp_path / "ds"), env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert all(len(line.rstrip()) <= 80 for line in lines), out.stdout
    assert "…" not in out.stdout and "20261203T045220Z-68c5d9" in out.stdout and "12,345,678" in out.stdout
    assert sum("20261203T045220Z-68c5d9" in line for line in lines) == 2  # one line per version


def test_readme_tables_are_not_broken_by_blank_lines() -> None:
    from helpers import ROOT

    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        lines = md.read_text().splitlines()
        broken = [i + 1 for i in range(2, len(lines)) if lines[i].startswith("|") and not lines[i - 1].strip() and lines[i - 2].startswith("|")]
        assert not broken, f"{md.name}: a blank line inside a table before line(s) {broken}"
