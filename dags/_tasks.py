"""What every curate DAG shares: its settings, and its ``plan`` and ``run`` tasks (thin calls into
:mod:`curate.pipelines.scheduling`). Not a DAG file (``.airflowignore`` leaves it out of parsing);
nothing heavy is imported at parse time: curate and Airflow's runtime parts are imported inside
the tasks.

``plan`` computes the run key (config fingerprint + input fingerprint + logical date) once;
``run`` runs the pipeline with it, so a retried ``run`` finds its key committed and publishes
nothing twice.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, task

#: the folder relative pipeline paths start from when the Variable curate_workdir is unset: the
#: checkout this dags/ folder belongs to
DEFAULT_WORKDIR = str(Path(__file__).resolve().parents[1])


def params(pipeline: str) -> dict[str, Any]:
    """A curate DAG's params: the pipeline file (default ``pipeline``) and the Ray cluster."""
    return {
        "pipeline": Param(pipeline, type="string", description="pipeline YAML, relative to curate_pipelines_dir (or absolute)"),
        "ray_address": Param("", type="string", description="Ray cluster (auto, ray://host:10001); empty: Variable curate_ray_address"),
    }


def scheduled() -> Any:
    """The running DAG's pipeline and settings (its params, and the Variables)."""
    from airflow.sdk import Variable, get_current_context
    from curate.pipelines.scheduling import Scheduled

    return Scheduled.from_settings(
        get_current_context()["params"], lambda name: Variable.get(name, default=None), default_workdir=DEFAULT_WORKDIR
    )


@task(task_id="plan", retries=2, retry_delay=timedelta(minutes=1))
def plan() -> dict[str, Any]:
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
    from curate.pipelines import scheduling

    context = get_current_context()
    # the key is fixed here, once; no input at all skips the run (no empty version); a bad
    # config fails at once, a transient failure (an object store listing) is retried
    date = context.get("logical_date") or context["dag_run"].run_id
    return scheduling.plan_or_skip(scheduled, date, skip=AirflowSkipException, no_retry=AirflowFailException)


@task(task_id="run", retries=2, retry_delay=timedelta(minutes=5))
def run(planned: dict[str, Any]) -> dict[str, Any]:
    from airflow.sdk.exceptions import AirflowFailException
    from curate.pipelines import scheduling

    # a bad config, unreadable input or a refused publish fails at once; the rest retries
    return scheduling.run_or_fail(scheduled(), planned, no_retry=AirflowFailException)
