"""`curate run` end to end through the CLI on a real local Ray, read back with polars, DuckDB and pyarrow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as pads
import pytest
from deltalake import DeltaTable
from helpers import ROOT, curate_exe, local_ray_cluster, run_cli, write_jsonl, write_pipeline

pytestmark = pytest.mark.slow

PIPELINE = """\
input:
  format: jsonl
  paths: [data/*.jsonl]
  read_batch_rows: {batch}
stages:
  - normalize: {{}}
  - length_filter: {{min_chars: 20}}
  - exact_dedup: {{}}
output:
  dataset: out/web
  keep_dropped: true
  shard_rows: 40
ray:
  num_cpus: 2
"""


def corpus(tmp_path: Path) -> dict[str, str]:
    """Two files with duplicates within and across files and batches; some short docs."""
    texts = {f"a{i}": f"Document {i} talks about topic {i % 13} at some length, enough to pass." for i in range(120)}
    rows_a = [{"id": k, "text": v} for k, v in texts.items()]
    rows_a += [{"id": "a-short", "text": "too short"}]
    rows_a += [{"id": "a-dup-inside", "text": texts["a3"]}]  # duplicate within the file
    rows_b = [{"id": f"b{i}", "text": texts[f"a{i * 7}"]} for i in range(10)]  # duplicates across files
    rows_b += [{"id": "b-ws", "text": "  Document 5 talks about\ttopic 5 at some length, enough to pass.  "}]  # same after normalize
    rows_b += [{"id": "b-new", "text": "A genuinely new document that nobody else has written."}]
    write_jsonl(tmp_path / "data" / "a.jsonl", rows_a)
    write_jsonl(tmp_path / "data" / "b.jsonl", rows_b)
    return texts


def test_run_twice_makes_versions_readable_everywhere(tmp_path: Path) -> None:
    corpus(tmp_path)
    write_pipeline(tmp_path / "pipeline.yaml", PIPELINE.format(batch=7))
    first = run_cli("run", "pipeline.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "wrote out/web version 0: 121 rows" in first.stderr
    second = run_cli("run", "pipeline.yaml", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "wrote out/web version 1: 121 rows" in second.stderr

    table = tmp_path / "out" / "web"
    df = pl.read_delta(str(table)).sort("id")
    # 120 originals + b-new; a-short dropped, a-dup-inside, b0..b9 and b-ws are duplicates
    assert df.height == 121
    assert set(df["id"]) == {f"a{i}" for i in range(120)} | {"b-new"}
    assert df.columns == ["id", "text"]
    assert pl.read_delta(str(table), version=0).height == 121
    assert pl.scan_delta(str(table)).select(pl.len()).collect().item() == 121

    dropped = pl.read_delta(str(table) + ".dropped").sort("id")
    by_id = {r["id"]: r for r in dropped.to_dicts()}
    assert set(by_id) == {"a-short", "a-dup-inside", "b-ws", *(f"b{i}" for i in range(10))}
    assert by_id["a-short"]["stage"] == "length_filter" and by_id["a-short"]["rule"] == "too_short"
    assert by_id["a-dup-inside"]["duplicate_of"] == "a3" and by_id["a-dup-inside"]["rule"] == "exact_duplicate"
    assert by_id["b3"]["duplicate_of"] == "a21"
    assert by_id["b-ws"]["duplicate_of"] == "a5"  # equal only after normalisation

    # the shards of a version are plain Parquet files: DuckDB and pyarrow read them from `show --files`
    files = run_cli("show", "out/web@1", "--files", cwd=tmp_path).stdout.split()
    assert len(files) >= 3  # shard_rows: 40
    paths = [f.removeprefix("file://") for f in files]
    assert duckdb.connect().execute(f"select count(*) from read_parquet({paths!r})").fetchone()[0] == 121
    assert pads.dataset(paths).count_rows() == 121

    # commit metadata: lineage and per-stage counts
    dt = DeltaTable(str(table))
    meta = json.loads(dt.history()[0]["curate.run"])
    assert meta["rows"] == 121 and meta["rows_in"] == 134
    stages = {s["stage"]: s for s in meta["stages"]}
    assert stages["length_filter"]["dropped_by_rule"] == {"too_short": 1}
    assert stages["exact_dedup"]["dropped_by_rule"] == {"exact_duplicate": 12}
    assert stages["exact_dedup"]["in"] == 133 and stages["exact_dedup"]["out"] == 121
    assert {Path(i["path"]).name for i in meta["inputs"]} == {"a.jsonl", "b.jsonl"}
    assert all(i["size"] > 0 and i["mtime"] for i in meta["inputs"])
    assert meta["config"]["stages"][1] == {"length_filter": {"min_chars": 20, "max_chars": None, "min_words": 0, "max_words": None}}
    assert meta["dropped_dataset"]["version"] == 1

    versions = run_cli("versions", "out/web", cwd=tmp_path)
    assert versions.returncode == 0
    assert meta["run_id"] in versions.stdout
    show = run_cli("show", "out/web@0", cwd=tmp_path)
    assert show.returncode == 0 and "version 0: 121 rows" in show.stdout and "exact_duplicate: 12" in show.stdout


def test_dedup_is_the_same_with_one_file_per_batch_or_one_batch(tmp_path: Path) -> None:
    """Blocks of 7 rows (duplicates across blocks and files) and one block per file keep and drop
    the same ids, each dropped one for the same reason and with the same kept original."""
    corpus(tmp_path)
    results = {}
    for batch in (7, 100000):
        name = f"out/b{batch}"
        write_pipeline(tmp_path / "pipeline.yaml", PIPELINE.format(batch=batch).replace("out/web", name))
        res = run_cli("run", "pipeline.yaml", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        kept = pl.read_delta(str(tmp_path / name)).sort("id")
        dropped = pl.read_delta(str(tmp_path / name) + ".dropped").sort("id")
        results[batch] = (
            kept.select("id", "text").rows(),
            dropped.select("id", "stage", "rule", "duplicate_of").rows(),
        )
    small, big = results[7], results[100000]
    assert len(small[0]) == 121 and len(small[1]) == 13
    assert small[0] == big[0]
    assert small[1] == big[1]


def test_bad_json_line_exits_3_and_writes_nothing(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"id": "1", "text": "fine text that is long enough"}, '{"id": 2, "text": '])
    write_pipeline(tmp_path / "pipeline.yaml", PIPELINE.format(batch=7))
    res = run_cli("run", "pipeline.yaml", cwd=tmp_path)
    assert res.returncode == 3, res.stderr
    assert "error: data/a.jsonl:2: malformed JSON" in res.stderr
    assert "on_error: skip" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out" / "web" / "_delta_log").exists()


def test_skip_policy_records_bad_lines_in_dropped_table(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"id": "1", "text": "fine text that is long enough"}, '{"id": 2, "text": '])
    write_pipeline(tmp_path / "pipeline.yaml", PIPELINE.format(batch=7).replace("  read_batch_rows: 7", "  read_batch_rows: 7\n  on_error: skip"))
    res = run_cli("run", "pipeline.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    dropped = pl.read_delta(str(tmp_path / "out" / "web.dropped")).to_dicts()
    assert dropped == [
        {
            "id": "data/a.jsonl:2",
            "text": '{"id": 2, "text": ',
            "stage": "read",
            "rule": "malformed_json",
            "reason": "data/a.jsonl:2: malformed JSON: unexpected end of data: line 1 column 18 (char 17)",
            "duplicate_of": None,
        }
    ]
    assert pl.read_delta(str(tmp_path / "out" / "web"))["id"].to_list() == ["1"]


SLOW_PLUGIN = '''
import time
from curate.pipelines.stage import Params, Stage

class SleepParams(Params):
    seconds: float = 0.5

class Sleepy(Stage[SleepParams]):
    """Sleeps per batch (a stand-in for a slow model stage)."""
    Params = SleepParams
    batch_size = 5

    def process(self, batch):
        time.sleep(self.params.seconds)
        return batch
'''


def _start_and_kill(tmp_path: Path, pipeline: str, env: dict[str, str], ready) -> None:
    proc = subprocess.Popen(
        [*curate_exe(), "run", pipeline, "--no-progress"], cwd=tmp_path, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env},
    )
    deadline = time.time() + 120
    try:
        while time.time() < deadline and not ready() and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        assert ready(), "the run never reached the point to kill it at"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_sigkill_leaves_previous_version_and_next_run_succeeds(tmp_path: Path) -> None:
    corpus(tmp_path)
    (tmp_path / "slow_plugin.py").write_text(SLOW_PLUGIN)
    write_pipeline(tmp_path / "fast.yaml", PIPELINE.format(batch=7))
    assert run_cli("run", "fast.yaml", cwd=tmp_path).returncode == 0
    table = tmp_path / "out" / "web"
    before = pl.read_delta(str(table)).sort("id")
    n_before = len(list(table.glob("*.parquet")))

    # 1. killed while a slow stage is processing
    slow = PIPELINE.format(batch=7).replace("  - exact_dedup: {}", "  - slow_plugin:Sleepy: {seconds: 1.0}")
    write_pipeline(tmp_path / "slow.yaml", slow)
    logs = tmp_path / ".curate" / "runs"
    n_logs = len(list(logs.glob("*.log")))
    _start_and_kill(tmp_path, "slow.yaml", {}, lambda: len(list(logs.glob("*.log"))) > n_logs and "ray started" in sorted(logs.glob("*.log"))[-1].read_text())
    assert DeltaTable(str(table)).version() == 0

    # 2. killed after every shard is written, just before the commit
    _start_and_kill(tmp_path, "fast.yaml", {"CURATE_PAUSE_BEFORE_COMMIT": "60"}, lambda: len(list(table.glob("*.parquet"))) > n_before)
    assert len(list(table.glob("*.parquet"))) > n_before  # the killed run's shards are on disk...
    assert DeltaTable(str(table)).version() == 0  # ...but not in any version
    assert pl.read_delta(str(table)).sort("id").equals(before)
    assert len(DeltaTable(str(table)).file_uris()) == n_before

    again = run_cli("run", "fast.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert DeltaTable(str(table)).version() == 1
    assert pl.read_delta(str(table)).sort("id").equals(before)


def test_plugin_stage_append_mode_and_delta_input(tmp_path: Path) -> None:
    corpus(tmp_path)
    (tmp_path / "slow_plugin.py").write_text(SLOW_PLUGIN)
    write_pipeline(tmp_path / "one.yaml", PIPELINE.format(batch=50).replace("  - exact_dedup: {}", "  - exact_dedup: {}\n  - slow_plugin:Sleepy: {seconds: 0}"))
    assert run_cli("run", "one.yaml", cwd=tmp_path).returncode == 0
    # a second pipeline reads version 0 of the first dataset and appends to another dataset twice
    second = """\
input:
  format: delta
  paths: [out/web@0]
stages:
  - length_filter: {min_chars: 60}
output:
  dataset: out/long
  mode: append
"""
    write_pipeline(tmp_path / "two.yaml", second)
    for _ in range(2):
        res = run_cli("run", "two.yaml", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    long_df = pl.read_delta(str(tmp_path / "out" / "long"))
    expected = pl.read_delta(str(tmp_path / "out" / "web")).filter(pl.col("text").str.len_chars() >= 60).height
    assert expected > 0 and long_df.height == 2 * expected
    assert pl.read_delta(str(tmp_path / "out" / "long"), version=0).height == expected


def test_in_process_run_uses_existing_ray(tmp_path: Path, ray_session, monkeypatch: pytest.MonkeyPatch) -> None:
    from curate.pipelines.config import load_pipeline
    from curate.pipelines.runner import run_pipeline

    corpus(tmp_path)
    write_pipeline(tmp_path / "pipeline.yaml", PIPELINE.format(batch=7))
    monkeypatch.chdir(tmp_path)
    result = run_pipeline(load_pipeline("pipeline.yaml"), progress=False)
    assert result.version == 0 and result.rows == 121 and result.dropped == 13
    assert ray_session.is_initialized()  # the caller's Ray is left running


def test_quickstart_example(tmp_path: Path) -> None:
    res = run_cli("run", str(ROOT / "pipelines" / "examples" / "quickstart.yaml"), cwd=ROOT, env={"CURATE_OUT": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    df = pl.read_delta(str(tmp_path / "quickstart"))
    assert df.height > 2000
    assert df["id"].n_unique() == df.height and df["text"].n_unique() == df.height
    assert df["text"].str.len_chars().min() >= 50


def test_join_an_existing_two_node_cluster(tmp_path: Path) -> None:
    """`ray.address` joins a running cluster (two nodes on loopback); the result is the same."""
    corpus(tmp_path)
    write_pipeline(tmp_path / "local.yaml", PIPELINE.format(batch=7).replace("out/web", "out/local"))
    with local_ray_cluster((1, 1)) as address:
        cluster = PIPELINE.format(batch=7).replace("out/web", "out/cluster").replace("  num_cpus: 2", f'  address: "{address}"')
        write_pipeline(tmp_path / "cluster.yaml", cluster)
        res = run_cli("run", "cluster.yaml", cwd=tmp_path, env={"RAY_AUTH_MODE": "token"})
        assert res.returncode == 0, res.stderr
    meta = json.loads(DeltaTable(str(tmp_path / "out" / "cluster")).history()[0]["curate.run"])
    assert meta["ray"]["address"] == address
    assert meta["ray"]["resources"]["CPU"] == 2.0  # both nodes
    assert run_cli("run", "local.yaml", cwd=tmp_path).returncode == 0
    a = pl.read_delta(str(tmp_path / "out" / "cluster")).sort("id")
    b = pl.read_delta(str(tmp_path / "out" / "local")).sort("id")
    assert a.height == 121 and a.equals(b)


def test_vacuum_removes_only_unreferenced_shards(tmp_path: Path) -> None:
    corpus(tmp_path)
    write_pipeline(tmp_path / "pipeline.yaml", PIPELINE.format(batch=50))
    for _ in range(2):
        assert run_cli("run", "pipeline.yaml", cwd=tmp_path).returncode == 0
    table = tmp_path / "out" / "web"
    stray = table / "part-killedrun-000.zstd.parquet"  # what a killed run leaves behind
    stray.write_bytes((next(table.glob("part-*.parquet"))).read_bytes())
    listed = run_cli("vacuum", "out/web", "--older-than", "0", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == [str(stray)] and stray.exists()
    deleted = run_cli("vacuum", "out/web", "--older-than", "0", "--delete", cwd=tmp_path)
    assert deleted.returncode == 0 and not stray.exists()
    assert pl.read_delta(str(table), version=0).height == 121  # time travel still works
    assert pl.read_delta(str(table), version=1).height == 121
