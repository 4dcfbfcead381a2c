"""Rows a stage drops for a transient reason (an engine down, a timeout) are never lost and never
a silent success: the run fails past the stage's max_failed_fraction and publishes nothing, the
rows are retried by the next run (from a failed run's journal, or from the version that kept
them aside, with `since_version: last`) without redoing the work of the stages before, and each
row ends up published exactly once. Real local Ray through `curate run`; Delta read back with
polars. The annotation pipeline with a real llama.cpp server is in test_annotation_outage.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from curate.pipelines.execution.apply import run_on_table
from curate.pipelines.execution.writer import WriteTarget, write_block
from curate.pipelines.stage import DROP_RETRY, DROP_RULE, RESUME_AT, DropRow, Drops, Filter, Params, Stage, StageOutput
from helpers import run_cli, write_pipeline

PLUGINS = Path(__file__).parent / "engine_plugins" / "curate_test_plugins.py"


class _Half(Filter[Params]):
    name = "half"

    def keep(self, row: dict[str, object]) -> bool:
        if str(row["id"]).endswith("1"):
            raise DropRow("engine_down", "timeout", transient=True)
        if str(row["id"]).endswith("2"):
            raise DropRow("bad_prompt", "HTTP 400")
        return True


def test_a_transient_drop_is_marked_and_written_aside_with_what_the_row_had(tmp_path: Path) -> None:
    table = pa.table({"id": ["a0", "a1", "a2"], "text": ["x", "y", "z"], "work": ["X", "Y", "Z"]})
    out = run_on_table(_Half(Params()), table)
    by_id = {r["id"]: r for r in out.to_pylist()}
    assert (by_id["a1"][DROP_RULE], by_id["a1"][DROP_RETRY]) == ("engine_down", True)
    assert (by_id["a2"][DROP_RULE], by_id["a2"][DROP_RETRY]) == ("bad_prompt", None)
    assert by_id["a0"][DROP_RULE] is None
    target = WriteTarget(main_uri=str(tmp_path / "out"), dropped_uri=str(tmp_path / "out.dropped"), run_id="r1",
                         shard_rows=100, shard_bytes=1 << 20, compression="zstd", storage_options={})
    written = write_block(out, target).to_pylist()
    kinds = {r["kind"]: r for r in written}
    assert kinds["main"]["rows"] == 1 and kinds["dropped"]["rows"] == 1 and kinds["pending"]["rows"] == 1
    counts = json.loads(kinds["counts"]["info"])
    assert counts["retry"] == {"half": 1} and counts["retry_reason"] == {"half": "engine_down: timeout"}
    pending = pl.read_parquet(next((tmp_path / "out" / "_curate_pending").glob("*.parquet")))
    assert pending["id"].to_list() == ["a1"] and pending["work"].to_list() == ["Y"]  # what earlier stages made is kept
    assert pending[RESUME_AT].to_list() == ["half"]
    dropped = pl.read_parquet(next((tmp_path / "out.dropped").glob("*.parquet")))
    assert dropped["id"].to_list() == ["a2"]  # dropped for good: only the permanent failure


class _Upper(Stage[Params]):
    name = "upper"
    writes = ("up",)

    def process(self, batch: pa.Table) -> pa.Table | StageOutput:
        return batch.append_column("up", pa.array([t.upper() for t in batch.column("text").to_pylist()]))


def test_a_row_fed_back_passes_the_stages_before_the_one_it_failed_in() -> None:
    table = pa.table({"id": ["new", "back"], "text": ["a", "b"], "up": [None, "KEPT"], RESUME_AT: [None, "half"]})
    out = run_on_table(_Upper(Params()), table, label="upper")
    rows = {r["id"]: r for r in out.to_pylist()}
    assert rows["new"]["up"] == "A" and rows["back"]["up"] == "KEPT"  # not recomputed
    assert rows["back"][RESUME_AT] == "half"  # still waiting
    out = run_on_table(_Half(Params()), out.select(["id", "text", "up", RESUME_AT]), label="half")
    assert {r["id"]: r[RESUME_AT] for r in out.to_pylist()} == {"new": None, "back": None}  # reached it: cleared


def _write_source(path: Path, ids: list[str], mode: str) -> None:
    from deltalake import write_deltalake

    write_deltalake(str(path), pa.table({"id": ids, "text": [f"text of {i}" for i in ids]}), mode=mode)


def _pipeline(tmp_path: Path, fail_ids: list[str] | None = None, limit: float | None = None) -> Path:
    shutil.copy(PLUGINS, tmp_path / PLUGINS.name)
    flaky = {"down_file": str(tmp_path / "DOWN"), **({"fail_ids": fail_ids} if fail_ids else {})}
    run = f"\n    run: {{max_failed_fraction: {limit}}}" if limit is not None else ""
    return write_pipeline(tmp_path / "p.yaml", f"""input: {{format: delta, paths: [{tmp_path}/src], since_version: last}}
stages:
  - curate_test_plugins:Costly: {{log: {tmp_path}/costly.log}}
  - curate_test_plugins:Flaky: {json.dumps(flaky)}{run}
output: {{dataset: {tmp_path}/out, mode: append, keep_dropped: true}}
ray: {{num_cpus: 2}}
""")


def _costly_ids(tmp_path: Path) -> list[str]:
    return sorted((tmp_path / "costly.log").read_text().split())


def _last_run(tmp_path: Path) -> dict[str, object]:
    out = run_cli("versions", str(tmp_path / "out"), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]["run"]  # type: ignore[no-any-return]


def test_an_outage_fails_the_run_then_every_row_is_published_once_without_redoing_work(tmp_path: Path) -> None:
    _write_source(tmp_path / "src", ["r0", "r1", "r2", "r3"], "overwrite")
    (tmp_path / "DOWN").touch()
    pipe = _pipeline(tmp_path)
    # 1. the service is down: every row fails for a transient reason -> exit 6, nothing published
    first = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert first.returncode == 6, first.stderr
    assert "published nothing" in first.stderr and "4 of 4 rows" in first.stderr
    assert "http://127.0.0.1:9/v1/completions: connection refused" in first.stderr and "max_failed_fraction 0" in first.stderr
    assert not (tmp_path / "out" / "_delta_log").exists()
    assert _costly_ids(tmp_path) == ["r0", "r1", "r2", "r3"]

    # 2. it is back: the failed run's rows are retried from its journal; Costly's work is reused
    (tmp_path / "DOWN").unlink()
    second = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    df = pl.read_delta(str(tmp_path / "out")).sort("id")
    assert df["id"].to_list() == ["r0", "r1", "r2", "r3"] and df["work"].to_list() == [f"TEXT OF R{i}" for i in range(4)]
    assert _costly_ids(tmp_path) == ["r0", "r1", "r2", "r3"]  # not done again
    run = _last_run(tmp_path)
    assert run["pending"] is None and run["retried"]["files_from_journal"] >= 1  # type: ignore[index]
    assert {s["stage"]: s["out"] for s in run["stages"]}["flaky"] == 4  # type: ignore[union-attr]

    # 3. two new rows, one fails while the limit allows it: published, the row kept aside
    _write_source(tmp_path / "src", ["r4", "r5"], "append")
    (tmp_path / "DOWN").touch()
    pipe = _pipeline(tmp_path, fail_ids=["r5"], limit=0.5)
    third = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "1 rows failed for a transient reason and are kept aside" in third.stderr.replace("\n", " ")
    assert sorted(pl.read_delta(str(tmp_path / "out"))["id"]) == ["r0", "r1", "r2", "r3", "r4"]
    run = _last_run(tmp_path)
    assert run["pending"]["rows"] == 1 and run["pending"]["by_stage"] == {"flaky": 1}  # type: ignore[index]
    assert "r5" not in set(pl.read_delta(str(tmp_path / "out.dropped"))["id"])  # not dropped for good
    # a scheduler planning the next run sees the kept row as work: the run is not skipped
    from curate.pipelines import scheduling

    planned = scheduling.plan_run(scheduling.Scheduled(pipeline=str(pipe), workdir=str(tmp_path), pipelines_dir=".", env={}), "2026-12-08")
    assert planned["read_tasks"] == 1
    shown = " ".join(run_cli("show", str(tmp_path / "out")).stdout.split())
    assert "pending: 1 rows failed for a transient reason, kept aside for the next run: flaky 1 (service_down: http://127.0.0.1:9" in shown

    # 4. one new row, and the service is back: since_version: last retries the kept row with it
    #    (the two reach the stages together: the new row has no `work` yet, the kept one has)
    _write_source(tmp_path / "src", ["r6"], "append")
    (tmp_path / "DOWN").unlink()
    fourth = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert fourth.returncode == 0, fourth.stderr
    df = pl.read_delta(str(tmp_path / "out"))
    assert sorted(df["id"]) == ["r0", "r1", "r2", "r3", "r4", "r5", "r6"] and df["id"].n_unique() == 7
    assert df.filter(pl.col("id").is_in(["r5", "r6"])).sort("id")["work"].to_list() == ["TEXT OF R5", "TEXT OF R6"]
    assert _costly_ids(tmp_path) == ["r0", "r1", "r2", "r3", "r4", "r5", "r6"]  # r5's work was not redone
    run = _last_run(tmp_path)
    assert run["pending"] is None and run["retried"]["files"] == 1 and run["rows"] == 2  # type: ignore[index]

    # 5. and again: nothing pending, nothing new -> nothing more is published
    fifth = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert fifth.returncode == 0, fifth.stderr
    assert pl.read_delta(str(tmp_path / "out")).height == 7


def test_an_unreachable_generation_engine_fails_the_run_naming_the_url(tmp_path: Path) -> None:
    pipe = write_pipeline(tmp_path / "gen.yaml", f"""stages:
  - generate_textbooks:
      topics: [volcanoes, fractions]
      engine: {{name: openai, base_url: "http://127.0.0.1:9/v1", model: x, max_retries: 1, backoff: 0.01}}
output: {{dataset: {tmp_path}/out, keep_dropped: true}}
ray: {{num_cpus: 2}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path)
    assert out.returncode == 6, out.stderr
    text = " ".join(out.stderr.split())
    assert "stage generate_textbooks: 2 of 2 rows (100%) failed for a transient reason" in text
    assert "http://127.0.0.1:9/v1/completions" in text and "connection error" in text and "max_failed_fraction 0.05" in text
    # Ray's "E ... core_worker.cc" line about actor restarts, when it comes, is explained once in curate's words
    assert text.count("note: Ray may print an 'E ... core_worker.cc' line") == 1 and "it is not an error" in text
    if "core_worker.cc" in out.stderr.split("note: Ray may print")[0]:
        pytest.fail("Ray's line came before curate's note")
    assert not (tmp_path / "out" / "_delta_log").exists()


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_max_failed_fraction_is_a_share(tmp_path: Path, value: float) -> None:
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: jsonl, paths: [{tmp_path}/x.jsonl]}}
stages:
  - normalize: {{}}
    run: {{max_failed_fraction: {value}}}
output: {{dataset: {tmp_path}/out}}
""")
    out = run_cli("validate", str(pipe))
    assert out.returncode == 2 and "stages[0].run.max_failed_fraction" in out.stderr, out.stderr


def test_drops_transient_flags_per_row() -> None:
    d = Drops(mask=np.array([True, True]), rule="r", transient=[True, False])
    assert list(d.transient) == [True, False]  # type: ignore[arg-type]
    import pickle

    again = pickle.loads(pickle.dumps(DropRow("x", "y", transient=True)))
    assert (again.rule, again.reason, again.transient) == ("x", "y", True)


def test_a_stage_asking_for_more_than_the_cluster_has_fails_before_reading(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "hello"}\n', encoding="utf-8")
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages:
  - normalize: {{}}
    run: {{cpus: 3}}
output: {{dataset: {tmp_path}/out}}
ray: {{num_cpus: 2}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "stage 'normalize' asks for 3 CPUs per worker, but the Ray cluster has 2 CPUs" in " ".join(out.stderr.split())


def test_a_run_that_makes_no_progress_is_stopped_and_says_where(tmp_path: Path) -> None:
    import time

    shutil.copy(PLUGINS, tmp_path / PLUGINS.name)
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "hello"}\n', encoding="utf-8")
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages:
  - curate_test_plugins:Sleepy: {{}}
output: {{dataset: {tmp_path}/out}}
ray: {{num_cpus: 2}}
run: {{stall_timeout: 8}}
""")
    t0 = time.monotonic()
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=300)
    text = " ".join(out.stderr.split())
    assert out.returncode == 1, out.stderr
    assert "the run made no progress for 8s (run.stall_timeout) and was stopped; nothing was published" in text
    assert "read: 1 rows in" in text and time.monotonic() - t0 < 120
    assert not (tmp_path / "out" / "_delta_log").exists()


def test_ray_failing_to_start_a_worker_comes_with_advice() -> None:
    from curate.pipelines.failures import advice_for

    advice = advice_for("RuntimeError: Failed to startup worker after retrying 5 times")
    assert advice is not None and "RAY_worker_register_timeout_seconds" in advice and "resumes" in advice
    assert advice_for("ValueError: something else") is None
