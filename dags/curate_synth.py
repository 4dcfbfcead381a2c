"""Synthetic data: generate textbook-style documents with curate's synth stages (on demand).

Runs a pipeline YAML (default: pipelines/examples/textbooks.yaml: textbooks and stories from
the bundled Gemma 3 270M on llama.cpp, quality checks, near-duplicate removal). No schedule:
trigger it (UI, ``airflow dags trigger curate_synth``, or from another DAG) when the topics or the
model change; a manual run without a logical date keys on its run id. Tasks: ``plan`` computes the
run key once; ``run`` runs the pipeline with it (a retry publishes nothing twice; completions
already generated are reused from the request cache beside the dataset). Params: ``pipeline``,
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
    dag_id="curate_synth",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["curate", "synth"],
    doc_md=__doc__,
    params={
        "pipeline": Param("textbooks.yaml", type="string", description="pipeline YAML, relative to curate_pipelines_dir (or absolute)"),
        "ray_address": Param("", type="string", description="Ray cluster (auto, ray://host:10001); empty: Variable curate_ray_address"),
    },
)
def curate_synth() -> None:
    @task(retries=2, retry_delay=timedelta(minutes=1))
    def plan() -> dict[str, Any]:
        from airflow.sdk import get_current_context
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from curate.pipelines import scheduling

        context = get_current_context()
        # the key is fixed here, once; no input at all skips the run (no empty version); a bad
        # config fails at once, a transient failure (an object store listing) is retried
        date = context.get("logical_date") or context["dag_run"].run_id
        return scheduling.plan_or_skip(_scheduled, date, skip=AirflowSkipException, no_retry=AirflowFailException)

    @task(retries=1, retry_delay=timedelta(minutes=5))
    def run(planned: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from curate.pipelines import scheduling

        # a bad config, unreadable input or a refused publish fails at once; the rest retries
        return scheduling.run_or_fail(_scheduled(), planned, no_retry=AirflowFailException)

    run(plan())  # type: ignore[arg-type]  # TaskFlow hands run the XCom of plan


curate_synth()
