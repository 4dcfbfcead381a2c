"""Hourly annotations: transcribe and caption new annotation clips, and append them.

Runs a pipeline YAML (default: pipelines/examples/annotations.yaml: Whisper transcription and
caption cleanup, output mode append) once an hour. Tasks: ``plan`` computes the run key (config
fingerprint + input fingerprint + logical date) once; ``run`` runs the pipeline with it, so a
retried ``run`` never appends the same hour twice. Each hour has its own key: what an hour
appends is what the pipeline reads, so its input should hold only the clips not yet processed.
Params: ``pipeline``, ``ray_address``. Variables and defaults: see dags/README.md. Nothing heavy
is imported at parse time.
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
    @task(retries=2, retry_delay=timedelta(minutes=1))
    def export() -> dict[str, Any]:
        """``curate annotate export``: the clips submitted since the last export, appended to the
        clips dataset as one version (idempotent: a retry never appends a clip twice). Where the
        app keeps them: CURATE_ANNOTATION_DB / _STORE / _DATASET (Variable curate_env), else
        annotation-data/ in the working folder."""
        from airflow.sdk.exceptions import AirflowSkipException
        from deltalake import DeltaTable

        from curate.annotation.db import Database
        from curate.annotation.export import export_clips
        from curate.annotation.settings import default_dataset, default_db_url, default_store_url
        from curate.annotation.store import BlobStore

        with _scheduled().inside():
            db = Database(default_db_url())
            try:
                db.create_all()
                result = export_clips(db, BlobStore(default_store_url()), default_dataset())
            finally:
                db.dispose()
        if result.version is None and not DeltaTable.is_deltatable(result.dataset):
            raise AirflowSkipException(f"no clip was ever exported to {result.dataset}: nothing to transcribe yet")
        return {"dataset": result.dataset, "clips": result.rows, "version": result.version}

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

    @task(retries=2, retry_delay=timedelta(minutes=5))
    def run(planned: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from curate.pipelines import scheduling

        # a bad config, unreadable input or a refused publish fails at once; the rest retries
        return scheduling.run_or_fail(_scheduled(), planned, no_retry=AirflowFailException)

    planned = plan()
    export() >> planned
    run(planned)  # type: ignore[arg-type]  # TaskFlow hands run the XCom of plan


curate_annotations_hourly()
