"""The Airflow DAGs in dags/ under a real Airflow, and the run keys they publish with.

Airflow runs in subprocesses with AIRFLOW_HOME in a temporary folder (its settings, logs and
SQLite metadata database go there, never into the repository or ~), so it configures no logging
or state in the test process. The run-key tests need neither Airflow nor Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from curate.pipelines import api, scheduling
from curate.pipelines.errors import (
    ConcurrentWriteError,
    ConfigError,
    DatasetError,
    ExpectationsFailedError,
    InputDataError,
    RunStalledError,
    StageError,
    TransientFailureError,
)
from deltalake import DeltaTable

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
DAG_IDS = {"curate_web_daily", "curate_annotations_hourly", "curate_synth"}
DAY1 = datetime(2026, 12, 1, tzinfo=timezone.utc)
#: the interpreter Airflow runs under (with curate installed): this one, or Airflow's own venv
#: should Airflow's pins ever clash with curate's
AIRFLOW_PYTHON = os.environ.get("CURATE_AIRFLOW_PYTHON") or sys.executable


# ---------------------------------------------------------------- run keys (no Airflow, no Ray)


def _pipeline(tmp_path: Path, **stage_params: Any) -> Any:
    return api.load({
        "input": {"format": "jsonl", "paths": [str(tmp_path / "in" / "*.jsonl")]},
        "stages": [{"length_filter": {"min_chars": stage_params.get("min_chars", 5)}}],
        "output": {"dataset": str(tmp_path / "out" / "ds")},
    })


def _write_input(tmp_path: Path, n: int) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    path = tmp_path / "in" / "a.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "text": f"document number {i}"}) + "\n" for i in range(n)))
    return path


def test_run_key_is_the_same_for_the_same_config_inputs_and_date(tmp_path: Path) -> None:
    _write_input(tmp_path, 3)
    key = api.run_key_for(_pipeline(tmp_path), DAY1)
    assert key == api.run_key_for(_pipeline(tmp_path), DAY1)
    date, config, inputs = key.split("/")
    assert date == "2026-12-01T00:00:00+00:00"
    assert config.startswith("config:") and inputs.startswith("inputs:")
    # a naive datetime is UTC; the same instant in another zone is the same date key
    assert api.run_key_for(_pipeline(tmp_path), datetime(2026, 12, 1)) == key
    # where and how it runs is not part of it: another cluster does the same work
    elsewhere = scheduling.with_ray_address(_pipeline(tmp_path), "ray://head:10001")
    assert elsewhere.config.ray.address == "ray://head:10001"
    assert api.run_key_for(elsewhere, DAY1) == key


def test_run_key_changes_with_the_date_the_config_and_the_inputs(tmp_path: Path) -> None:
    path = _write_input(tmp_path, 3)
    key = api.run_key_for(_pipeline(tmp_path), DAY1)
    assert api.run_key_for(_pipeline(tmp_path), datetime(2026, 12, 2, tzinfo=timezone.utc)) != key
    assert api.run_key_for(_pipeline(tmp_path), "manual__2026-12-03T07:00:00+00:00").startswith("manual__2026-12-03T07:00:00+00:00/")
    changed_config = api.run_key_for(_pipeline(tmp_path, min_chars=6), DAY1)
    assert changed_config != key and changed_config.split("/")[2] == key.split("/")[2]  # same inputs
    _write_input(tmp_path, 4)  # a file that changed (size, mtime)
    os.utime(path, (1_800_000_000, 1_800_000_000))
    changed_inputs = api.run_key_for(_pipeline(tmp_path), DAY1)
    assert changed_inputs != key and changed_inputs.split("/")[1] == key.split("/")[1]  # same config
    (tmp_path / "in" / "b.jsonl").write_text(json.dumps({"text": "another file"}) + "\n")
    assert api.run_key_for(_pipeline(tmp_path), DAY1) != changed_inputs


def test_run_key_needs_a_date_and_existing_inputs(tmp_path: Path) -> None:
    _write_input(tmp_path, 1)
    with pytest.raises(ValueError, match="logical date"):
        api.run_key_for(_pipeline(tmp_path), "  ")
    (tmp_path / "in" / "a.jsonl").unlink()
    with pytest.raises(ConfigError, match="in/"):
        api.run_key_for(_pipeline(tmp_path), DAY1)


def test_a_run_key_on_an_output_that_is_a_file_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The output is checked before the run key is looked up in it (that lookup raised deltalake's
    own error, which a scheduler would retry), and before Ray starts."""
    monkeypatch.chdir(tmp_path)  # the run's log folder (.curate/runs) goes here, not into the checkout
    _write_input(tmp_path, 2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "ds").write_text("not a dataset")
    with pytest.raises(ConfigError, match="is a file, not a dataset folder") as info:
        api.run(_pipeline(tmp_path), run_key="2026-12-01")
    assert not scheduling.should_retry(info.value)


def test_only_failures_another_try_can_fix_are_retried() -> None:
    for exc in (ConfigError("bad key"), InputDataError("bad line"), DatasetError("no such table"), ExpectationsFailedError("gate failed")):
        assert not scheduling.should_retry(exc)
        assert "not retried" in scheduling.no_retry_message(exc) and f"exit code {exc.exit_code}" in scheduling.no_retry_message(exc)
    for retryable in (StageError("worker lost"), ConcurrentWriteError("raced"), OSError("disk full"), ConnectionError("ray head gone"),
                      TransientFailureError("caption engine down"), RunStalledError("no progress")):
        assert scheduling.should_retry(retryable)


def test_scheduled_settings_defaults_and_overrides() -> None:
    variables: dict[str, str] = {}
    s = scheduling.Scheduled.from_settings({"pipeline": "quickstart.yaml", "ray_address": ""}, variables.get, default_workdir="/repo")
    assert (s.workdir, s.pipelines_dir, s.env, s.ray_address) == ("/repo", "pipelines/examples", {}, "")
    assert s.pipeline_path == "/repo/pipelines/examples/quickstart.yaml"
    variables.update(curate_workdir="/srv/curate", curate_pipelines_dir="/srv/pipelines", curate_out="s3://bucket/curated", curate_ray_address="auto")
    s = scheduling.Scheduled.from_settings({"pipeline": "web.yaml", "ray_address": ""}, variables.get, default_workdir="/repo")
    assert (s.workdir, s.pipeline_path, s.env, s.ray_address) == ("/srv/curate", "/srv/pipelines/web.yaml", {"CURATE_OUT": "s3://bucket/curated"}, "auto")
    s = scheduling.Scheduled.from_settings({"pipeline": "/abs/p.yaml", "ray_address": "ray://head:10001"}, variables.get, default_workdir="/repo")
    assert (s.pipeline_path, s.ray_address) == ("/abs/p.yaml", "ray://head:10001")
    with pytest.raises(ConfigError, match="param 'pipeline'"):
        scheduling.Scheduled.from_settings({"pipeline": " "}, variables.get, default_workdir="/repo")
    variables["curate_env"] = '{"CURATE_ANNOTATIONS": "s3://bucket/annotations", "WORKERS": 4}'
    s = scheduling.Scheduled.from_settings({"pipeline": "a.yaml"}, variables.get, default_workdir="/repo")
    assert s.env == {"CURATE_ANNOTATIONS": "s3://bucket/annotations", "WORKERS": "4", "CURATE_OUT": "s3://bucket/curated"}
    for bad in ("{not json", '["a list"]', '{"A": {"nested": 1}}'):
        variables["curate_env"] = bad
        with pytest.raises(ConfigError, match="curate_env"):
            scheduling.Scheduled.from_settings({"pipeline": "a.yaml"}, variables.get, default_workdir="/repo")


class _Skip(Exception):
    pass


class _Fail(Exception):
    pass


def test_plan_fixes_the_key_and_skips_a_run_with_nothing_to_read(tmp_path: Path) -> None:
    """A Delta input with nothing added since ``since_version`` has no read tasks: the run is
    skipped (no empty version); the pipeline's relative paths and ${VAR}s resolve in the working
    folder with the scheduler's variables, and the process's folder and environment are restored."""
    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "clips"), pa.table({"id": ["a"], "text": ["some words"]}))
    (tmp_path / "p.yaml").write_text(
        "input:\n  format: delta\n  paths: [clips]\n  since_version: ${SINCE}\n"
        "stages: [{length_filter: {min_chars: 1}}]\n"
        "output: {dataset: out/ds, mode: append}\n"
    )
    cwd, env_before = os.getcwd(), dict(os.environ)
    new = scheduling.Scheduled(pipeline="p.yaml", workdir=str(tmp_path), pipelines_dir=".", env={"SINCE": "0"})
    with pytest.raises(_Skip, match="nothing to run"):
        scheduling.plan_or_skip(lambda: new, DAY1, skip=_Skip, no_retry=_Fail)
    everything = scheduling.Scheduled(pipeline="p.yaml", workdir=str(tmp_path), pipelines_dir=".", env={"SINCE": "null"})
    planned = scheduling.plan_or_skip(lambda: everything, DAY1, skip=_Skip, no_retry=_Fail)
    assert planned["read_tasks"] == 1 and planned["dataset"] == str(tmp_path / "out" / "ds")
    # the pipeline edited between plan and run: the planned key no longer describes it (no Ray started)
    (tmp_path / "p.yaml").write_text((tmp_path / "p.yaml").read_text().replace("min_chars: 1", "min_chars: 2"))
    with pytest.raises(ConfigError, match="changed after its run key") as info:
        scheduling.run_planned(everything, planned)
    assert not scheduling.should_retry(info.value)
    with pytest.raises(ConfigError, match="curate_workdir"):
        scheduling.plan_run(scheduling.Scheduled(pipeline="p.yaml", workdir=str(tmp_path / "missing"), pipelines_dir="."), DAY1)
    # in the plan task: bad settings and a missing input fail at once (no retry)
    with pytest.raises(_Fail, match="ConfigError \\(curate exit code 2\\).*param 'pipeline'"):
        scheduling.plan_or_skip(lambda: scheduling.Scheduled.from_settings({"pipeline": ""}, {}.get, default_workdir=str(tmp_path)), DAY1, skip=_Skip, no_retry=_Fail)
    (tmp_path / "p.yaml").write_text("input: {format: jsonl, paths: [missing/*.jsonl]}\noutput: {dataset: out/x}\n")
    with pytest.raises(_Fail, match="not retried"):
        scheduling.plan_or_skip(lambda: everything, DAY1, skip=_Skip, no_retry=_Fail)
    assert planned["run_key"] == f"{DAY1.isoformat()}/config:{planned['config_fingerprint']}/inputs:{planned['input_fingerprint']}"
    assert os.getcwd() == cwd and dict(os.environ) == env_before


# ---------------------------------------------------------------- the DAG files under Airflow


def _airflow_env(home: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    })
    env.update({f"AIRFLOW_VAR_{k.upper()}": v for k, v in variables.items()})
    return env


def _python(code: str, env: dict[str, str], cwd: Path, timeout: float) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON line starting with RESULT."""
    proc = subprocess.run([AIRFLOW_PYTHON, "-c", textwrap.dedent(code)], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def _no_airflow_files_in_the_repo() -> None:
    leftovers = [p for p in ("airflow.cfg", "airflow.db", "logs", "dags/logs", "dags/airflow.cfg", "webserver_config.py") if (ROOT / p).exists()]
    assert not leftovers, f"Airflow wrote into the repository: {leftovers}"


def test_importing_a_dag_file_imports_neither_ray_nor_the_engine(tmp_path: Path) -> None:
    result = _python(
        f"""
        import importlib.util, json, sys
        from pathlib import Path
        out = {{}}
        sys.path.insert(0, {str(DAGS)!r})  # as Airflow puts its DAG folder on sys.path
        for path in sorted(Path({str(DAGS)!r}).glob("curate_*.py")):  # (_tasks.py: shared tasks, not a DAG)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            out[path.name] = sorted(m for m in sys.modules if m == "ray" or m.startswith(("ray.", "curate.pipelines", "deltalake", "polars")))
        print("RESULT " + json.dumps(out))
        """,
        _airflow_env(tmp_path / "airflow"), tmp_path, timeout=120,
    )
    assert set(result) == {f"{d}.py" for d in DAG_IDS}
    assert all(heavy == [] for heavy in result.values()), result


def test_dagbag_loads_every_dag_without_errors(tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    result = _python(
        f"""
        import json
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(DAGS)!r})
        print("RESULT " + json.dumps({{
            "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
            "dags": {{d.dag_id: {{"file": d.fileloc, "schedule": str(d.schedule), "tasks": sorted(d.task_ids),
                                  "upstream": sorted(d.get_task("run").upstream_task_ids),
                                  "plan_upstream": sorted(d.get_task("plan").upstream_task_ids), "retries": d.get_task("run").retries,
                                  "params": sorted(d.params.keys()), "max_active_runs": d.max_active_runs}}
                      for d in bag.dags.values()}},
        }}))
        """,
        _airflow_env(home), tmp_path, timeout=120,
    )
    assert result["errors"] == {}
    assert set(result["dags"]) == DAG_IDS
    files = {Path(d["file"]).name for d in result["dags"].values()}
    assert files == {f"{d}.py" for d in DAG_IDS}, "one DAG per file, named like the file"
    for dag_id, d in result["dags"].items():
        assert d["tasks"] == (["export", "plan", "run"] if dag_id == "curate_annotations_hourly" else ["plan", "run"]), dag_id
        assert d["upstream"] == ["plan"] and d["plan_upstream"] == (["export"] if dag_id == "curate_annotations_hourly" else []), dag_id
        assert d["retries"] >= 1 and d["params"] == ["pipeline", "ray_address"] and d["max_active_runs"] == 1, dag_id
    assert result["dags"]["curate_web_daily"]["schedule"] == "@daily"
    assert result["dags"]["curate_annotations_hourly"]["schedule"] == "@hourly"
    assert result["dags"]["curate_synth"]["schedule"] == "None"  # triggered, not scheduled
    assert not (home / "airflow.db").exists(), "parsing the DAGs needs no metadata database"
    _no_airflow_files_in_the_repo()


_DAG_TEST = """
import json, os, sys
from datetime import datetime, timedelta, timezone
from airflow.dag_processing.dagbag import DagBag

dag = DagBag(dag_folder={dags!r}).dags[{dag_id!r}]
# were a failure retried, the retries come at once (not after the DAG's minutes): the test fails
# on the count of tries instead of waiting
for task in dag.tasks:
    task.retry_delay = timedelta(seconds=1)
results = []
for day, variables, *conf in {cases!r}:
    for name, value in variables.items():  # Variables from the environment, read by the tasks
        os.environ["AIRFLOW_VAR_" + name.upper()] = value
    # day None: a manual run without a logical date, as Airflow 3 triggers them
    run = dag.test(logical_date=datetime(2026, 12, day, tzinfo=timezone.utc) if day else None, run_conf=conf[0] if conf else None)
    tis = {{ti.task_id: ti for ti in run.get_task_instances()}}
    results.append({{
        "state": str(run.state), "run_id": run.run_id, "logical_date": str(run.logical_date),
        "tasks": {{t: str(ti.state) for t, ti in tis.items()}},
        "tries": {{t: ti.try_number for t, ti in tis.items()}},
        **{{t: ti.xcom_pull(task_ids=t) for t, ti in tis.items()}},
    }})
print("RESULT " + json.dumps(results, default=str))
"""


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AIRFLOW_HOME with a migrated SQLite metadata database (what dag.test() needs)."""
    home = tmp_path_factory.mktemp("airflow")
    migrate = subprocess.run([AIRFLOW_PYTHON, "-m", "airflow", "db", "migrate"], env=_airflow_env(home), cwd=home,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    return home


@pytest.mark.slow
def test_web_dag_publishes_once_per_logical_date(tmp_path: Path, airflow_home: Path) -> None:
    """dag.test() under a real Airflow (SQLite metadata database in a temporary AIRFLOW_HOME): the
    web-curation DAG runs the quickstart to version 0; the same logical date again publishes
    nothing; the next date publishes version 1; a run whose output cannot be written fails at
    once, without a retry."""
    home, work, out = airflow_home, tmp_path / "work", tmp_path / "out"
    work.mkdir()
    (work / "pipelines").symlink_to(ROOT / "pipelines")  # the quickstart's relative input paths
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "quickstart").write_text("a file where the dataset folder should be")
    env = _airflow_env(home, curate_workdir=str(work))
    cases = [(1, {"curate_out": str(out)}), (1, {"curate_out": str(out)}), (2, {"curate_out": str(out)}), (3, {"curate_out": str(bad)})]
    results = _python(_DAG_TEST.format(dags=str(DAGS), dag_id="curate_web_daily", cases=cases), env, tmp_path, timeout=900)
    first, again, next_day, failed = results

    dataset = out / "quickstart"
    assert first["state"] == "success" and first["tasks"] == {"plan": "success", "run": "success"}, first
    assert first["run"]["version"] == 0 and not first["run"]["skipped"] and first["run"]["dataset"] == str(dataset)
    assert first["run"]["run_key"] == first["plan"]["run_key"] and first["plan"]["run_key"].startswith("2026-12-01T00:00:00+00:00/")
    v0 = pl.read_delta(str(dataset), version=0)
    assert v0.height == first["run"]["rows"] > 0 and v0["text"].null_count() == 0

    assert again["state"] == "success" and again["plan"]["run_key"] == first["plan"]["run_key"], again
    assert again["run"]["skipped"] and again["run"]["version"] is None

    assert next_day["state"] == "success" and next_day["run"]["version"] == 1, next_day
    assert next_day["plan"]["input_fingerprint"] == first["plan"]["input_fingerprint"]
    table = DeltaTable(str(dataset))
    assert table.version() == 1, "the rerun of day 1 published nothing"
    history = {h["version"]: h for h in table.history()}
    assert [history[v].get("curate.run_key") for v in (0, 1)] == [first["plan"]["run_key"], next_day["plan"]["run_key"]]
    assert pl.read_delta(str(dataset)).height == v0.height  # overwrite: the same rows again

    assert failed["state"] == "failed" and failed["tasks"] == {"plan": "success", "run": "failed"}, failed
    assert failed["tries"]["run"] == 1, "a config error is not retried"
    assert not (bad / "quickstart.dropped").exists() and (bad / "quickstart").is_file()

    assert (home / "airflow.cfg").exists() and (work / ".curate" / "runs").is_dir()
    _no_airflow_files_in_the_repo()


@pytest.mark.slow
def test_annotations_dag_exports_and_skips_hours_without_new_clips(tmp_path: Path, airflow_home: Path) -> None:
    """The hourly annotations DAG with the real export (the annotation app's SQLite database, created
    in its data folder) and no clip submitted: before any export the hour is skipped; once the
    clips dataset exists with nothing new, the export succeeds, plan skips the run, and no empty
    annotations version is appended."""
    pytest.importorskip("sqlalchemy", reason="needs the annotation extra")
    import pyarrow as pa
    from curate.annotation.export import SCHEMA
    from deltalake import write_deltalake

    data, out = tmp_path / "annotation-data", tmp_path / "out" / "annotations"
    curate_env = json.dumps({"CURATE_ANNOTATION_DATA": str(data), "CURATE_ANNOTATIONS": str(out)})
    env = _airflow_env(airflow_home, curate_workdir=str(tmp_path), curate_pipelines_dir=str(ROOT / "pipelines" / "examples"), curate_env=curate_env)
    script = _DAG_TEST.format(dags=str(DAGS), dag_id="curate_annotations_hourly", cases=[(1, {})])
    (before,) = _python(script, env, tmp_path, timeout=600)
    assert before["tasks"] == {"export": "skipped", "plan": "skipped", "run": "skipped"}, before
    assert (data / "annotation.db").is_file() and not (data / "clips").exists()

    write_deltalake(str(data / "clips"), pa.Table.from_pylist([], SCHEMA))  # the clips dataset, nothing in it yet
    script = _DAG_TEST.format(dags=str(DAGS), dag_id="curate_annotations_hourly", cases=[(2, {})])
    (quiet_hour,) = _python(script, env, tmp_path, timeout=600)
    assert quiet_hour["tasks"] == {"export": "success", "plan": "skipped", "run": "skipped"}, quiet_hour
    assert quiet_hour["export"] == {"dataset": str(data / "clips"), "clips": 0, "version": None}
    assert not out.exists(), "an hour with nothing new publishes nothing"
    _no_airflow_files_in_the_repo()


@pytest.mark.slow
def test_a_failed_publish_gate_fails_the_task_without_a_retry(tmp_path: Path) -> None:
    """The run task's path with a real Ray run: the staged output breaks the pipeline's
    expectations, so curate raises ExpectationsFailedError (exit 5) in the driver; the task fails
    with the no-retry exception and curate's message, and nothing is published."""
    _write_input(tmp_path, 5)
    (tmp_path / "p.yaml").write_text(
        "input: {format: jsonl, paths: [in/*.jsonl]}\n"
        "stages: [{length_filter: {min_chars: 5}}]\n"
        "output: {dataset: out/ds}\n"
        "ray: {num_cpus: 1}\n"
        "expectations:\n"
        "  - expect_column_values_to_not_be_null: {column: text}\n"
        "  - expect_table_row_count_to_be_between: {min_value: 1000}\n"
    )
    scheduled = scheduling.Scheduled(pipeline="p.yaml", workdir=str(tmp_path), pipelines_dir=".")
    planned = scheduling.plan_run(scheduled, DAY1)
    with pytest.raises(_Fail) as info:
        scheduling.run_or_fail(scheduled, planned, no_retry=_Fail)
    message = str(info.value)
    assert message.startswith("ExpectationsFailedError (curate exit code 5): ") and "expect_table_row_count_to_be_between" in message, message
    assert "not retried" in message
    assert type(info.value.__cause__).__name__ == "ExpectationsFailedError"
    assert not (tmp_path / "out" / "ds" / "_delta_log").exists(), "the first run's failed gate published no version"


@pytest.mark.slow
def test_synth_dag_triggered_without_a_logical_date_keys_on_its_run_id(tmp_path: Path, airflow_home: Path) -> None:
    """The synthetic-data DAG, triggered by hand with a smaller textbooks pipeline as its
    ``pipeline`` param (absolute path): Airflow 3 gives the run no logical date, so the run key
    starts with the run id; the bundled Gemma on llama.cpp writes version 0."""
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the synth extra)")
    pipeline = tmp_path / "tiny-textbooks.yaml"
    pipeline.write_text(
        "stages:\n"
        "  - generate_textbooks: {topics: [photosynthesis], formats: [textbook], audiences: [young_children], sampling: {max_tokens: 16}}\n"
        "    run: {batch_size: 1}\n"
        "  - synth_checks: {drop_truncated: false, min_words: 1}\n"
        "output: {dataset: '${CURATE_OUT}/textbooks'}\n"
        "ray: {num_cpus: 2}\n"
    )
    env = _airflow_env(airflow_home, curate_workdir=str(tmp_path), curate_out=str(tmp_path / "out"))
    script = _DAG_TEST.format(dags=str(DAGS), dag_id="curate_synth", cases=[(None, {}, {"pipeline": str(pipeline)})])
    (triggered,) = _python(script, env, tmp_path, timeout=600)
    assert triggered["state"] == "success" and triggered["logical_date"] == "None", triggered
    assert triggered["plan"]["run_key"].startswith(triggered["run_id"] + "/config:")
    assert triggered["plan"]["read_tasks"] == 1 and triggered["run"]["version"] == 0 and triggered["run"]["rows"] == 1
    df = pl.read_delta(str(tmp_path / "out" / "textbooks"))
    assert df.height == 1 and df["text"][0].strip() and df["format"][0] == "textbook"
    history = DeltaTable(str(tmp_path / "out" / "textbooks")).history()
    assert history[0]["curate.run_key"] == triggered["plan"]["run_key"]
    _no_airflow_files_in_the_repo()


@pytest.mark.slow
def test_web_dag_runs_on_the_ray_cluster_its_param_names(tmp_path: Path, airflow_home: Path) -> None:
    """The ``ray_address`` param reaches the run: the task is the driver of a Ray cluster started
    beside it (a two-node cluster on loopback, token authentication on, as on a real cluster), and
    the version's metadata names that cluster and its two nodes' CPUs."""
    from helpers import local_ray_cluster

    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    (work / "pipelines").symlink_to(ROOT / "pipelines")
    with local_ray_cluster((1, 1)) as address:
        env = {**_airflow_env(airflow_home, curate_workdir=str(work), curate_out=str(out)), "RAY_AUTH_MODE": "token"}
        script = _DAG_TEST.format(dags=str(DAGS), dag_id="curate_web_daily", cases=[(5, {}, {"ray_address": address})])
        (result,) = _python(script, env, tmp_path, timeout=600)
    assert result["state"] == "success" and result["run"]["version"] == 0, result
    meta = json.loads(DeltaTable(str(out / "quickstart")).history()[0]["curate.run"])
    assert meta["ray"]["address"] == address and meta["ray"]["resources"]["CPU"] == 2.0
    assert pl.read_delta(str(out / "quickstart")).height == result["run"]["rows"] > 0
