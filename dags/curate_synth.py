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

import sys
from datetime import datetime, timezone
from pathlib import Path

from airflow.sdk import dag

if str(Path(__file__).resolve().parent) not in sys.path:  # Airflow's processors put the DAG folder there; a bare DagBag may not
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import _tasks  # noqa: E402  (the plan and run tasks every curate DAG shares)


@dag(
    dag_id="curate_synth",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    tags=["curate", "synth"],
    doc_md=__doc__,
    params=_tasks.params("textbooks.yaml"),
)
def curate_synth() -> None:
    _tasks.run.override(retries=1)(_tasks.plan())  # type: ignore[arg-type]  # TaskFlow hands run the XCom of plan


curate_synth()
