"""Hourly annotations: transcribe and caption the clips recorded since the last run, and append them.

Runs a pipeline YAML (default: the annotations example, pipelines/examples/annotations.yaml:
transcription and caption cleanup of new clips, output mode append) once an hour. Tasks: ``plan``
computes the run key (config fingerprint + input fingerprint + logical date) once; ``run`` runs
the pipeline with it, so a retried ``run`` never appends the same clips twice; an hour with no
new input gets the same input fingerprint as before but a new date, and appends what the
pipeline reads (nothing, for a pipeline reading only new clips). Params: ``pipeline``,
``ray_address``. Variables and defaults: see dags/README.md. Nothing heavy is imported at parse time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task

#: the folder relative pipeline paths start from when the Variable curate_workdir is unset: the
#: checkout this dags/ folder belongs to
DEFAULT_WORKDIR = str(Path(__file__).resolve().parents[1])


def _scheduled() -> Any:
    from airflow.sdk import Variable, get_current_context

    from curate.pipelines.scheduling import Scheduled

    return Scheduled.from_settings(
        get_current_context()["params"], lambda name: Variable.get(name, default=None), default_workdir=DEFAULT_WORKDIR
    )


@dag(
    dag_id="curate_annotations_hourly",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["curate", "annotation"],
    doc_md=__doc__,
    params={
        "pipeline": Param("annotations.yaml", type="string", description="pipeline YAML, relative to curate_pipelines_dir (or absolute)"),
        "ray_address": Param("", type="string", description="Ray cluster (auto, ray://host:10001); empty: Variable curate_ray_address"),
    },
)
def curate_annotations_hourly() -> None:
    @task
    def plan() -> dict[str, str]:
        from airflow.sdk import get_current_context

        from curate.pipelines import scheduling

        context = get_current_context()
        return scheduling.plan_run(_scheduled(), context.get("logical_date") or context["dag_run"].run_id)

    @task(retries=2, retry_delay=timedelta(minutes=5))
    def run(planned: dict[str, str]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from curate.pipelines import scheduling

        # a bad config, unreadable input or a refused publish fails at once; the rest retries
        return scheduling.run_or_fail(_scheduled(), planned, no_retry=AirflowFailException)

    run(plan())


curate_annotations_hourly()
