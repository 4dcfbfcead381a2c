"""The engine's contract through `curate run` on a real local Ray: columns beyond text, Expand
(1 -> N) stages, pipelines without input, per-stage run settings (GPU actor pools, async
stages), run keys, faults, resume after a kill, and the side-effect-free Python API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import curate_exe, run_cli, write_jsonl, write_pipeline

PLUGINS = Path(__file__).parent / "engine_plugins" / "curate_test_plugins.py"
P = "curate_test_plugins"


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    shutil.copy(PLUGINS, tmp_path / PLUGINS.name)
    return tmp_path


def history(dataset: Path) -> list[dict]:
    out = run_cli("versions", str(dataset), "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def stage_counts(dataset: Path, version: int | None = None) -> dict[str, dict]:
    entries = history(dataset)
    run = entries[0]["run"] if version is None else next(e for e in entries if e["version"] == version)["run"]
    return {s["stage"]: s for s in run["stages"]}


# ------------------------------------------------------------------ plan check (no Ray)


def test_plan_check_names_the_stage_and_the_missing_column(work: Path) -> None:
    write_jsonl(work / "in.jsonl", [{"id": "a", "text": "x"}])
    pipe = write_pipeline(
        work / "p.yaml",
        f"""input: {{format: jsonl, paths: [{work}/in.jsonl]}}
stages:
  - normalize: {{}}
  - {P}:ByteSize: {{column: image}}
output: {{dataset: {work}/out}}
""",
    )
    out = run_cli("validate", str(pipe), cwd=work)
    assert out.returncode == 2
    assert "p.yaml:4" in out.stderr and "'byte_size'" in out.stderr and "'image'" in out.stderr
    assert "available: id (input), text (input)" in out.stderr


def test_run_settings_are_validated_with_their_line(work: Path) -> None:
    write_jsonl(work / "in.jsonl", [{"id": "a", "text": "x"}])
    pipe = write_pipeline(
        work / "p.yaml",
        f"""input: {{format: jsonl, paths: [{work}/in.jsonl]}}
stages:
  - normalize: {{}}
    run: {{batch_size: 0, gpus: 1}}
output: {{dataset: {work}/out}}
""",
    )
    out = run_cli("validate", str(pipe), cwd=work)
    assert out.returncode == 2
    assert "p.yaml:4" in out.stderr and "stages[0].run.batch_size" in out.stderr and "greater than 0" in out.stderr


# ------------------------------------------------------------------ rows beyond text


def test_parquet_without_text_and_a_plugin_stage_over_a_binary_column(work: Path) -> None:
    rng = np.random.default_rng(0)
    blobs = [rng.bytes(int(n)) for n in rng.integers(10, 5000, 300)]
    pq.write_table(pa.table({"key": [f"img{i}" for i in range(300)], "image": pa.array(blobs, pa.binary())}), work / "images.parquet")
    pipe = write_pipeline(
        work / "p.yaml",
        f"""input: {{format: parquet, paths: [{work}/images.parquet], id_field: key, read_batch_rows: 64}}
stages:
  - {P}:ByteSize: {{column: image}}
output: {{dataset: {work}/out, keep_dropped: true}}
""",
    )
    out = run_cli("run", str(pipe), "--no-progress", cwd=work)
    assert out.returncode == 0, out.stderr
    df = pl.read_delta(str(work / "out")).sort("id")
    assert set(df.columns) == {"id", "image", "nbytes", "sha256"}
    import hashlib

    expected = {f"img{i}": (len(b), hashlib.sha256(b).hexdigest(), b) for i, b in enumerate(blobs)}
    assert len(df) == 300
    for row in df.iter_rows(named=True):
        n, digest, blob = expected[row["id"]]
        assert (row["nbytes"], row["sha256"], row["image"]) == (n, digest, blob)


# ------------------------------------------------------------------ Expand


def _sentences(work: Path) -> list[dict]:
    rows = []
    for i in range(120):
        k = i % 5
        text = ". ".join(f"doc {i} sentence {j}" for j in range(k))  # k = 0: no sentences
        if i % 17 == 3:
            text = "FAIL. " + text
        rows.append({"id": f"d{i}", "text": text or " "})
    return rows


def _expand_pipeline(work: Path, name: str, batch_size: int, cpus: int) -> Path:
    return write_pipeline(
        work / f"{name}.yaml",
        f"""input: {{format: jsonl, paths: [{work}/docs-*.jsonl], read_batch_rows: 25}}
stages:
  - {P}:SplitSentences: {{}}
    run: {{batch_size: {batch_size}}}
  - length_filter: {{min_chars: 18}}
output: {{dataset: {work}/{name}, keep_dropped: true}}
ray: {{num_cpus: {cpus}}}
""",
    )


def test_expand_children_ids_are_stable_and_every_row_is_counted(work: Path) -> None:
    rows = _sentences(work)
    write_jsonl(work / "docs-0.jsonl", rows[:70])
    write_jsonl(work / "docs-1.jsonl", rows[70:])
    results = {}
    for name, bs, cpus in (("a", 1, 1), ("b", 7, 2)):
        out = run_cli("run", str(_expand_pipeline(work, name, bs, cpus)), "--no-progress", cwd=work)
        assert out.returncode == 0, out.stderr
        results[name] = pl.read_delta(str(work / name)).sort("id")
    a, b = results["a"], results["b"]
    assert a.equals(b), "children differ between batch sizes / worker counts"
    # ids derived from the parent, parent_id kept, texts right
    expected = []
    for r in rows:
        if "FAIL" in r["text"]:
            continue
        for j, s in enumerate(p for p in r["text"].split(". ") if p.strip()):
            if len(s) >= 18:
                expected.append((f"{r['id']}/{j}", r["id"], s, j))
    got = sorted(zip(a["id"], a["parent_id"], a["text"], a["sentence_no"]))
    assert got == sorted(expected)
    counts = stage_counts(work / "a")
    split = counts["split_sentences"]
    n_fail = sum("FAIL" in r["text"] for r in rows)
    n_empty = sum(1 for r in rows if "FAIL" not in r["text"] and not r["text"].strip())
    assert split["in"] == 120
    assert split["dropped_by_rule"] == {"failed_request": n_fail, "no_output": n_empty}
    assert split["expanded"] == 120 - n_fail - n_empty
    made = sum(len([p for p in r["text"].split(". ") if p.strip()]) for r in rows if "FAIL" not in r["text"])
    assert split["made"] == made and split["out"] == made
    assert counts["length_filter"]["in"] == made and counts["length_filter"]["out"] == len(expected)
    dropped = pl.read_delta(str(work / "a.dropped"))
    assert sorted(dropped.filter(pl.col("rule") == "failed_request")["id"].to_list()) == sorted(r["id"] for r in rows if "FAIL" in r["text"])


def test_pipeline_without_input_starts_from_source_rows(work: Path) -> None:
    pipe = write_pipeline(
        work / "gen.yaml",
        f"""stages:
  - {P}:Grid: {{topics: [algebra, birds, clouds], samples: 2}}
  - length_filter: {{min_chars: 10}}
output: {{dataset: {work}/gen}}
""",
    )
    assert run_cli("validate", str(pipe), cwd=work).returncode == 0
    out = run_cli("run", str(pipe), "--no-progress", cwd=work)
    assert out.returncode == 0, out.stderr
    df = pl.read_delta(str(work / "gen")).sort("id")
    assert len(df) == 3 * 2 * 2
    assert df["id"].to_list()[:2] == ["algebra|children/0", "algebra|children/1"]
    assert set(df["audience"]) == {"children", "college"} and df["parent_id"][0] == "algebra|children"
    assert df.filter(pl.col("id") == "birds|college/1")["text"].item() == "A text about birds for college, sample 1."


# ------------------------------------------------------------------ run settings


def test_gpu_stage_actor_pool_is_sized_by_gpus(work: Path) -> None:
    for f in range(4):  # several read tasks, so that blocks reach the pool while it works
        write_jsonl(work / f"in-{f}.jsonl", [{"id": f"r{f}-{i}", "text": f"row {i}"} for i in range(100)])
    pipe = write_pipeline(
        work / "p.yaml",
        f"""input: {{format: jsonl, paths: [{work}/in-*.jsonl], read_batch_rows: 20}}
stages:
  - {P}:WhereAmI: {{}}
    run: {{batch_size: 20}}
output: {{dataset: {work}/out}}
ray: {{num_cpus: 2, num_gpus: 2}}
""",
    )
    out = run_cli("run", str(pipe), "--no-progress", cwd=work)
    assert out.returncode == 0, out.stderr
    df = pl.read_delta(str(work / "out"))
    assert len(df) == 400
    assert set(df["gpu_ids"]) == {"0", "1"}, "one actor per GPU, each given its own GPU"
    assert df["worker_pid"].n_unique() == 2
    # asking for more GPUs than the cluster has is an error before any work
    pipe.write_text(pipe.read_text().replace("num_gpus: 2", "num_gpus: 0"))
    out = run_cli("run", str(pipe), "--no-progress", cwd=work)
    assert out.returncode == 2 and "needs 1 GPU(s)" in out.stderr


def test_async_expand_keeps_many_requests_in_flight(work: Path) -> None:
    write_jsonl(work / "in.jsonl", [{"id": f"r{i}", "text": "x"} for i in range(48)])
    pipe = write_pipeline(
        work / "p.yaml",
        f"""input: {{format: jsonl, paths: [{work}/in.jsonl]}}
stages:
  - {P}:SlowAsyncEcho: {{delay: 0.3}}
    run: {{batch_size: 48, concurrency: 1}}
output: {{dataset: {work}/out}}
""",
    )
    out = run_cli("run", str(pipe), "--no-progress", cwd=work)
    assert out.returncode == 0, out.stderr
    df = pl.read_delta(str(work / "out"))
    assert len(df) == 48
    peaks = [int(e.rsplit(":", 1)[1]) for e in df["echo"]]
    assert max(peaks) == 8, "max_in_flight bounds the requests in flight of one actor"
    busy = stage_counts(work / "out")["slow_async_echo"]["seconds"]
    assert busy < 48 * 0.3 / 3, f"requests overlapped: {busy:.1f}s in the stage for 48 requests of 0.3s"


# ------------------------------------------------------------------ run keys and faults


def test_run_key_commits_once(work: Path) -> None:
    write_jsonl(work / "in.jsonl", [{"id": f"r{i}", "text": f"row {i}"} for i in range(10)])
    pipe = write_pipeline(work / "p.yaml", f"input: {{format: jsonl, paths: [{work}/in.jsonl]}}\noutput: {{dataset: {work}/out, mode: append}}\n")
    first = run_cli("run", str(pipe), "--no-progress", "--run-key", "2026-12-03T00", cwd=work)
    assert first.returncode == 0, first.stderr
    again = run_cli("run", str(pipe), "--no-progress", "--run-key", "2026-12-03T00", cwd=work)
    assert again.returncode == 0, again.stderr
    assert "already committed" in again.stderr and "version 0" in again.stderr
    assert [e["version"] for e in history(work / "out")] == [0]
    other = run_cli("run", str(pipe), "--no-progress", "--run-key", "2026-12-03T01", cwd=work)
    assert other.returncode == 0
    assert len(pl.read_delta(str(work / "out"))) == 20
    assert history(work / "out")[0]["run"]["run_key"] == "2026-12-03T01"


def test_a_stage_that_raises_fails_the_run_naming_stage_and_row(work: Path) -> None:
    write_jsonl(work / "in.jsonl", [{"id": f"r{i}", "text": f"row {i}"} for i in range(50)])
    pipe = write_pipeline(
        work / "p.yaml",
        f"""input: {{format: jsonl, paths: [{work}/in.jsonl]}}
stages:
  - {P}:Boom: {{bad_id: r37}}
output: {{dataset: {work}/out}}
""",
    )
    out = run_cli("run", str(pipe), "--no-progress", cwd=work)
    assert out.returncode == 1
    assert "stage boom failed on row 'r37'" in out.stderr and "ValueError: cannot handle this row" in out.stderr
    assert not (work / "out" / "_delta_log").exists()


# ------------------------------------------------------------------ resume


def _resume_inputs(work: Path, files: int = 12, rows: int = 100) -> None:
    for f in range(files):
        write_jsonl(work / "in" / f"part-{f:02d}.jsonl", [{"id": f"f{f}-{i}", "text": f"document {f} {i} " + "word " * (i % 7)} for i in range(rows)])


def _resume_pipeline(work: Path) -> Path:
    return write_pipeline(
        work / "p.yaml",
        f"""input: {{format: jsonl, paths: [{work}/in/*.jsonl]}}
stages:
  - {P}:Slow: {{seconds: 0.4}}
  - length_filter: {{min_chars: 16}}
output: {{dataset: {work}/out, keep_dropped: true}}
ray: {{num_cpus: 2}}
""",
    )


def test_a_killed_run_resumes_with_the_work_done_and_exact_counts(work: Path) -> None:
    _resume_inputs(work)
    pipe = _resume_pipeline(work)
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen([*curate_exe(), "run", str(pipe), "--no-progress"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    journal = work / "out" / "_curate_journal"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        # read tasks whose rows have reached the writer (some of them): about 60% of 12
        written = {p.name.split("-")[0] for p in journal.glob("*/*/write/*.json")} if journal.exists() else set()
        if len(written) >= 7:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "out" / "_delta_log").exists(), "nothing is published by a killed run"
    out = run_cli("run", str(pipe), "--no-progress", cwd=work)
    assert out.returncode == 0, out.stderr
    assert "resuming:" in out.stderr
    meta = history(work / "out")[0]["run"]
    assert meta["journal"]["resumed_tasks"] >= 1
    df = pl.read_delta(str(work / "out"))
    expected_ids = {f"f{f}-{i}" for f in range(12) for i in range(100) if len(f"document {f} {i} " + "word " * (i % 7)) >= 16}
    assert df["id"].n_unique() == len(df) == len(expected_ids) and set(df["id"]) == expected_ids
    counts = {s["stage"]: s for s in meta["stages"]}
    assert counts["read"]["in"] == 1200 and counts["length_filter"]["out"] == len(expected_ids)
    assert len(pl.read_delta(str(work / "out.dropped"))) == 1200 - len(expected_ids)
    assert not any(journal.iterdir()), "the journal is removed once the version is committed"


# ------------------------------------------------------------------ the Python API


def test_python_api_leaves_the_process_as_it_found_it(tmp_path: Path) -> None:
    script = tmp_path / "api.py"
    write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": f"row number {i}"} for i in range(30)])
    script.write_text(
        f"""
import json, logging, os, sys
import curate
RAY_VENDORED = os.path.join("ray", "thirdparty_files")  # importing Ray adds it for good
from curate.pipelines.errors import ConfigError
assert "ray" not in sys.modules  # importing curate imports no Ray
before_path = list(sys.path)
before = (list(logging.getLogger().handlers), list(logging.getLogger("curate").handlers), [p for p in sys.path if not p.endswith(RAY_VENDORED)], dict(os.environ),
          [list(logging.getLogger(n).handlers) for n in ("ray", "ray.data")])
res = curate.run({{"input": {{"format": "jsonl", "paths": ["{tmp_path}/in.jsonl"]}},
                  "stages": [{{"length_filter": {{"min_chars": 13}}}}],
                  "output": {{"dataset": "{tmp_path}/out"}}, "run": {{"log_dir": "{tmp_path}/logs"}}}})
after = (list(logging.getLogger().handlers), list(logging.getLogger("curate").handlers), [p for p in sys.path if not p.endswith(RAY_VENDORED)], dict(os.environ),
         [list(logging.getLogger(n).handlers) for n in ("ray", "ray.data")])
assert before[0] == after[0] and before[1] == after[1] and before[2] == after[2] and before[4] == after[4], "logging/sys.path changed"
assert before[3] == after[3], set(before[3].items()) ^ set(after[3].items())
# the one entry left is Ray's vendored-packages folder, there only because Ray is now imported
extra = [p for p in sys.path if p not in before_path]
assert [p.endswith(RAY_VENDORED) for p in extra] == [True] and "ray" in sys.modules, extra
try:
    curate.run({{"input": {{"format": "jsonl", "paths": ["{tmp_path}/nothing-*.jsonl"]}}, "output": {{"dataset": "{tmp_path}/x"}}}})
except ConfigError as exc:
    err = str(exc)
print(json.dumps({{"version": res.version, "rows": res.rows, "dropped": res.dropped, "err": err}}))
"""
    )
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["version"] == 0 and got["rows"] == 20 and got["dropped"] == 10
    assert "no input files match" in got["err"]
    assert out.stderr.strip() == "" or "Warning" not in out.stderr
    assert len(pl.read_delta(str(tmp_path / "out"))) == 20


def test_delta_input_since_version_reads_only_appended_rows(work: Path) -> None:
    for n in range(2):
        write_jsonl(work / f"batch{n}.jsonl", [{"id": f"b{n}-{i}", "text": f"batch {n} row {i}"} for i in range(5)])
        pipe = write_pipeline(work / "w.yaml", f"input: {{format: jsonl, paths: [{work}/batch{n}.jsonl]}}\noutput: {{dataset: {work}/src, mode: append}}\n")
        assert run_cli("run", str(pipe), "--no-progress", cwd=work).returncode == 0
    pipe = write_pipeline(
        work / "r.yaml",
        f"input: {{format: delta, paths: [{work}/src], since_version: 0}}\noutput: {{dataset: {work}/out}}\n",
    )
    out = run_cli("run", str(pipe), "--no-progress", cwd=work)
    assert out.returncode == 0, out.stderr
    assert sorted(pl.read_delta(str(work / "out"))["id"]) == [f"b1-{i}" for i in range(5)]
    lineage = history(work / "out")[0]["run"]["inputs"][0]
    assert lineage["delta"] == str(work / "src") and lineage["version"] == 1 and lineage["since_version"] == 0


def test_ctrl_c_exits_130_and_publishes_nothing(work: Path) -> None:
    _resume_inputs(work, files=6)
    pipe = _resume_pipeline(work)
    proc = subprocess.Popen([*curate_exe(), "run", str(pipe), "--no-progress"], cwd=work, env={**os.environ, "COLUMNS": "200"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    journal = work / "out" / "_curate_journal"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not list(journal.glob("*/*/read/*.json")):
        time.sleep(0.05)
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole foreground group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "no version was written" in err
    assert not (work / "out" / "_delta_log").exists()


def test_two_runs_writing_one_dataset_at_once_both_land_exactly(work: Path) -> None:
    _resume_inputs(work, files=4, rows=50)
    pipe = write_pipeline(
        work / "p.yaml",
        f"""input: {{format: jsonl, paths: [{work}/in/*.jsonl]}}
stages:
  - {P}:Slow: {{seconds: 0.1}}
output: {{dataset: {work}/out, mode: append}}
ray: {{num_cpus: 1}}
""",
    )
    env = {**os.environ, "COLUMNS": "200"}
    procs = [subprocess.Popen([*curate_exe(), "run", str(pipe), "--no-progress"], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    entries = history(work / "out")
    assert sorted(e["version"] for e in entries) == [0, 1]
    assert {e["run"]["run_id"] for e in entries} == {e["run"]["run_id"] for e in entries if e["run"]}
    v0 = pl.read_delta(str(work / "out"), version=0)
    v1 = pl.read_delta(str(work / "out"), version=1)
    assert len(v0) == 200 and v0["id"].n_unique() == 200, "each run's version holds exactly its own rows"
    assert len(v1) == 400 and sorted(v1["id"].to_list()) == sorted(v0["id"].to_list() * 2)
    reported = sorted(int(o[1].split(" version ")[1].split(":")[0]) for o in outs)
    assert reported == [0, 1], "each run reports the version it committed"


def test_an_empty_stream_gives_an_empty_version_not_a_crash(work: Path) -> None:
    (work / "empty.jsonl").write_text("")
    write_jsonl(work / "short.jsonl", [{"id": "s", "text": "tiny"}])
    for name, path in (("empty", "empty.jsonl"), ("all_dropped", "short.jsonl")):
        pipe = write_pipeline(
            work / f"{name}.yaml",
            f"""input: {{format: jsonl, paths: [{work}/{path}]}}
stages:
  - length_filter: {{min_chars: 50}}
  - exact_dedup: {{}}
  - normalize: {{}}
output: {{dataset: {work}/{name}, keep_dropped: true}}
""",
        )
        out = run_cli("run", str(pipe), "--no-progress", cwd=work)
        assert out.returncode == 0, out.stderr
        assert "no row was kept" in out.stderr
        assert len(pl.read_delta(str(work / name))) == 0
    assert pl.read_delta(str(work / "all_dropped.dropped"))["rule"].to_list() == ["too_short"]


def test_a_failed_main_commit_leaves_the_dropped_table_as_it_was(work: Path) -> None:
    write_jsonl(work / "in.jsonl", [{"id": "1", "text": "long enough text here"}, {"id": "2", "text": "x"}])
    pipe = write_pipeline(
        work / "p.yaml",
        f"""input: {{format: jsonl, paths: [{work}/in.jsonl]}}
stages: [{{length_filter: {{min_chars: 5}}}}]
output: {{dataset: {work}/out, keep_dropped: true, mode: append}}
""",
    )
    assert run_cli("run", str(pipe), "--no-progress", cwd=work).returncode == 0
    log_dir = work / "out" / "_delta_log"
    subprocess.run(["chattr", "+i", str(log_dir)], check=True)  # the main commit cannot be written
    try:
        out = run_cli("run", str(pipe), "--no-progress", cwd=work)
    finally:
        subprocess.run(["chattr", "-i", str(log_dir)], check=True)
    assert out.returncode == 4 and "cannot commit" in out.stderr, out.stderr
    assert len(pl.read_delta(str(work / "out"))) == 1
    assert len(pl.read_delta(str(work / "out.dropped"))) == 1, "the dropped rows of the failed run were taken back"
    log_file = sorted((work / ".curate" / "runs").glob("*.log"))[-1].read_text()
    assert "the commit of" in log_file and "Traceback" in log_file
