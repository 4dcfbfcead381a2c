"""Daily web curation: one curate run of a pipeline YAML (default: the quickstart example) per day.

Tasks: ``plan`` computes the run key (config fingerprint + input fingerprint + logical date) once;
``run`` runs the pipeline with it, so a retried ``run`` finds its key committed and publishes
nothing twice. Params: ``pipeline`` (a YAML relative to the Variable ``curate_pipelines_dir``, or
absolute), ``ray_address`` (empty: the Variable ``curate_ray_address``, else the pipeline's own).
Variables and defaults: see dags/README.md. Nothing heavy is imported at parse time.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from airflow.sdk import dag

if str(Path(__file__).resolve().parent) not in sys.path:  # Airflow's processors put the DAG folder there; a bare DagBag may not
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tasks  # noqa: E402  (the plan and run tasks every curate DAG shares)


@dag(
    dag_id="curate_web_daily",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["curate"],
    doc_md=__doc__,
    params=_tasks.params("quickstart.yaml"),
)
def curate_web_daily() -> None:
    _tasks.run(_tasks.plan())  # type: ignore[arg-type]  # TaskFlow hands run the XCom of plan


curate_web_daily()
