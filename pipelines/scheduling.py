"""What a scheduler (the Airflow DAGs in ``dags/``) needs from curate, with no scheduler imported.

- **Run keys** (:func:`run_key_for`, defined in :mod:`.runkey`): the fingerprint of what a run writes (the resolved config
  without ``ray:`` and ``run:``, as the resume journal keys it), of its inputs (each read task's
  file, size, modification time and range, or the source rows of a pipeline without input, and
  the resolved version of each Delta input) and the logical date. The same pipeline on the same
  inputs for the same date gives the same key, so a retried task finds its key committed and
  publishes nothing; changed inputs or config give a new key (a backfill after a fix publishes).
- **Scheduled runs** (:func:`plan_run`, :func:`run_planned`): a pipeline file resolved against a
  working folder, with extra environment for its ``${VAR}`` interpolation and an optional Ray
  address; the key is computed once (``plan_run``) and handed to every try of the run; a run
  with nothing to read is skipped (:func:`plan_or_skip`), so no empty version is published.
- **Retries** (:func:`should_retry`): which failures another try can fix.

Nothing here imports Ray; the run itself goes through :func:`curate.pipelines.api.run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import Pipeline
from .errors import ConcurrentWriteError, ConfigError, CurateError, RunStalledError, StageError, TransientFailureError
from .runkey import config_fingerprint, date_key, input_fingerprint, inputs_digest, key_of, run_key_for, with_ray_address


def no_retry_message(exc: BaseException) -> str:
    """The message a task fails with when :func:`should_retry` says no."""
    code = f" (curate exit code {exc.exit_code})" if isinstance(exc, CurateError) else ""
    return f"{type(exc).__name__}{code}: {exc}\nnot retried: another try would fail the same way; nothing was published"


def should_retry(exc: BaseException) -> bool:
    """Whether another try can fix a failed run. Not: a bad pipeline file, unreadable input, a
    missing or unreadable dataset, a publish gate that refused the output (every other
    :class:`CurateError`): the same input fails the same way. Yes: a stage that raised in a
    worker (a server or a node may have gone away), a concurrent commit, and anything that is not
    a curate error (a lost Ray cluster, a full disk)."""
    if isinstance(exc, (StageError, ConcurrentWriteError, TransientFailureError, RunStalledError)):
        return True  # (an engine down: the next try retries the rows, reusing the work done)
    return not isinstance(exc, CurateError)


@contextlib.contextmanager
def _inside(workdir: str | os.PathLike[str], env: Mapping[str, str]) -> Iterator[None]:
    """Inside ``workdir`` with ``env`` set; the working folder and the variables are restored."""
    folder = Path(workdir)
    if not folder.is_dir():
        raise ConfigError(f"the working folder {folder} does not exist", hint="set the Variable curate_workdir to the folder the pipelines' relative paths start from")
    cwd = os.getcwd()
    saved = {k: os.environ.get(k) for k in env}
    os.chdir(folder)
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclasses.dataclass(frozen=True)
class Scheduled:
    """Where and how a scheduled run runs. ``pipeline``: a YAML path, relative to
    ``pipelines_dir``; ``workdir``: the folder its relative paths start from; ``env``: extra
    variables for its ``${VAR}`` interpolation (``CURATE_OUT``); ``ray_address``: a cluster to
    run on (empty: the pipeline's ``ray:`` section)."""

    pipeline: str
    workdir: str
    pipelines_dir: str
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    ray_address: str = ""

    @property
    def pipeline_path(self) -> str:
        return str(Path(self.workdir, self.pipelines_dir, self.pipeline))

    @classmethod
    def from_settings(cls, params: Mapping[str, Any], variable: Callable[[str], str | None], *, default_workdir: str) -> Scheduled:
        """From a DAG run's params (``pipeline``, ``ray_address``) and the scheduler's variables
        (``variable(name)``, ``None`` or empty when unset), with these defaults:

        - ``curate_workdir``: ``default_workdir`` (the DAG's checkout); relative paths start there
        - ``curate_pipelines_dir``: ``pipelines/examples`` (relative to the working folder)
        - ``curate_out``: unset; else exported as ``CURATE_OUT`` for the pipelines' ``${CURATE_OUT}``
          (a folder or an object-store URL such as ``s3://bucket/curated``)
        - ``curate_ray_address``: unset (the pipeline's ``ray:``); the ``ray_address`` param wins
        - ``curate_env``: unset; else a JSON object of more variables set while the tasks run
          (``{"CURATE_ANNOTATIONS": "s3://bucket/annotations"}``)
        """
        pipeline = str(params.get("pipeline") or "").strip()
        if not pipeline:
            raise ConfigError("the DAG param 'pipeline' is empty", hint="give a pipeline YAML, relative to the Variable curate_pipelines_dir or absolute")
        env = _env_variable(variable("curate_env") or "")
        out = variable("curate_out") or ""
        if out:
            env["CURATE_OUT"] = out
        return cls(
            pipeline=pipeline,
            workdir=variable("curate_workdir") or default_workdir,
            pipelines_dir=variable("curate_pipelines_dir") or "pipelines/examples",
            env=env,
            ray_address=str(params.get("ray_address") or "").strip() or variable("curate_ray_address") or "",
        )

    def inside(self) -> contextlib.AbstractContextManager[None]:
        """In the working folder with ``env`` set (both restored afterwards)."""
        return _inside(self.workdir, self.env)

    def load(self) -> Pipeline:
        from .config import load_pipeline

        return load_pipeline(self.pipeline_path)


def _env_variable(text: str) -> dict[str, str]:
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the Variable curate_env is not JSON: {exc}", hint='give an object, e.g. {"CURATE_ANNOTATIONS": "s3://bucket/annotations"}') from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in value.items()):
        raise ConfigError(f"the Variable curate_env must be a JSON object of names to strings, got {text[:200]!r}")
    return {k: str(v) for k, v in value.items()}


def plan_run(scheduled: Scheduled, logical_date: datetime | str) -> dict[str, Any]:
    """The run key of ``scheduled`` for ``logical_date`` (and what went into it), computed once,
    before the first try: every retry runs with this key. ``read_tasks``: how many read tasks the
    run has (0: no input, e.g. no clips added since the last run)."""
    from .preflight import plan_run_inputs

    with scheduled.inside():
        pipeline = scheduled.load()
        inputs = plan_run_inputs(pipeline)
        config_fp, inputs_fp = config_fingerprint(pipeline), inputs_digest(inputs)
        dataset = pipeline.config.output.dataset
        return {
            "pipeline": os.path.abspath(scheduled.pipeline_path),
            "dataset": dataset if "://" in dataset else os.path.abspath(dataset),
            "config_fingerprint": config_fp,
            "input_fingerprint": inputs_fp,
            "read_tasks": len(inputs.tasks) + len(inputs.pending),  # rows kept aside by the last run are work too
            "run_key": key_of(logical_date, config_fp, inputs_fp),
        }


def plan_or_skip(
    scheduled: Callable[[], Scheduled], logical_date: datetime | str, *, skip: Callable[[str], BaseException],
    no_retry: Callable[[str], BaseException],
) -> dict[str, Any]:
    """:func:`plan_run` of ``scheduled()``; with no input to read, raises ``skip(message)``
    (Airflow's ``AirflowSkipException``: the run task is skipped, and no empty version is
    published; rows the last version kept aside for a transient failure are input). A failure another try cannot fix (bad settings, a bad pipeline file, a missing
    input) is raised as ``no_retry(message)``, as in :func:`run_or_fail`."""
    try:
        planned = plan_run(scheduled(), logical_date)
    except Exception as exc:
        if should_retry(exc):
            raise
        raise no_retry(no_retry_message(exc)) from exc
    if planned["read_tasks"] == 0:
        raise skip(f"no input to read for {planned['pipeline']} (nothing new since the last run): nothing to run")
    return planned


def run_planned(scheduled: Scheduled, planned: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``scheduled`` with the key :func:`plan_run` chose; returns what it did (for the
    scheduler's logs and XCom): ``version`` (``None`` when the key was already committed:
    ``skipped``), ``rows``, ``dropped``, ``run_id``, ``log_file``, ``dataset``, ``run_key``."""
    from .api import run

    with scheduled.inside():
        pipeline = with_ray_address(scheduled.load(), scheduled.ray_address)
        if config_fingerprint(pipeline) != planned["config_fingerprint"]:
            raise ConfigError(
                f"{scheduled.pipeline_path} changed after its run key {planned['run_key']!r} was planned",
                hint="clear the plan task too, so that the run gets the key of the pipeline as it is now",
            )
        result = run(pipeline, run_key=planned["run_key"])
    return {
        "dataset": planned["dataset"], "run_key": planned["run_key"], "version": result.version,
        "skipped": result.skipped, "rows": result.rows, "dropped": result.dropped,
        "run_id": result.run_id, "log_file": str(Path(scheduled.workdir, result.log_file)) if not os.path.isabs(result.log_file) else result.log_file,
        "seconds": round(result.seconds, 1),
    }


def run_or_fail(scheduled: Scheduled, planned: Mapping[str, Any], *, no_retry: Callable[[str], BaseException]) -> dict[str, Any]:
    """:func:`run_planned`; a failure another try cannot fix (:func:`should_retry`) is raised as
    ``no_retry(message)`` (Airflow's ``AirflowFailException``: the task fails without retrying),
    chained to the original error; any other failure is raised as it is (the task retries)."""
    try:
        return run_planned(scheduled, planned)
    except Exception as exc:
        if should_retry(exc):
            raise
        raise no_retry(no_retry_message(exc)) from exc


__all__ = [
    "Scheduled", "config_fingerprint", "input_fingerprint", "date_key", "run_key_for", "with_ray_address",
    "should_retry", "no_retry_message", "plan_run", "plan_or_skip", "run_planned", "run_or_fail",
]
