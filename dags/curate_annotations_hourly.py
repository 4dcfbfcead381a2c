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

import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import dag, task

if str(Path(__file__).resolve().parent) not in sys.path:  # Airflow's processors put the DAG folder there; a bare DagBag may not
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tasks  # noqa: E402  (the plan and run tasks every curate DAG shares)


@dag(
    dag_id="curate_annotations_hourly",
    schedule="@hourly",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["curate", "annotation"],
    doc_md=__doc__,
    params=_tasks.params("annotations.yaml"),
)
def curate_annotations_hourly() -> None:
    @task(retries=2, retry_delay=timedelta(minutes=1))
    def export() -> dict[str, Any]:
        """``curate annotate export``: the clips submitted since the last export, appended to the
        clips dataset as one version (idempotent: a retry never appends a clip twice). Where the
        app keeps them: CURATE_ANNOTATION_DB / _STORE / _DATASET (Variable curate_env), else
        annotation-data/ in the working folder."""
        from airflow.sdk.exceptions import AirflowSkipException
        from curate.annotation.db import Database
        from curate.annotation.export import export_clips
        from curate.annotation.settings import default_dataset, default_db_url, default_store_url
        from curate.annotation.store import BlobStore
        from deltalake import DeltaTable

        with _tasks.scheduled().inside():
            db = Database(default_db_url())
            try:
                db.create_all()
                result = export_clips(db, BlobStore(default_store_url()), default_dataset())
            finally:
                db.dispose()
        if result.version is None and not DeltaTable.is_deltatable(result.dataset):
            raise AirflowSkipException(f"no clip was ever exported to {result.dataset}: nothing to transcribe yet")
        return {"dataset": result.dataset, "clips": result.rows, "version": result.version}

    planned = _tasks.plan()
    export() >> planned
    _tasks.run(planned)  # type: ignore[arg-type]  # TaskFlow hands run the XCom of plan


curate_annotations_hourly()
