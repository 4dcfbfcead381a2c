"""Try stages on a table in this process, without Ray, with the engine's own code paths.

    import pyarrow as pa
    from curate.testing import run
    from curate.pipelines.stages.exact_dedup import ExactDedup

    kept, dropped = run([ExactDedup(ExactDedup.Params())], pa.table({"id": ["a", "b"], "text": ["x", "x"]}))
    # kept: row a; dropped: row b with stage, rule, reason and duplicate_of

Every kind of stage runs: map stages and filters (``apply_stage``), Expand stages
(``apply_expand``: children with their ids and positions), and global stages, whose keys, hash
partitions, ``reduce`` and ``resolve`` run as :func:`curate.pipelines.execution.shuffle.run_global_local`
(the functions the engine's Ray tasks run, on a copy of the stage as a worker gets one), their drops
then marked by position as the engine marks them. Batches are ``batch_size`` rows, as a stage
declares. For tests and notebooks: the whole table is in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.pipelines.execution.apply import apply_expand, apply_stage, ensure_setup, is_live, with_engine_columns
from curate.pipelines.execution.shuffle import mark_global_drops, run_global_local, sorted_drops
from curate.pipelines.plan import stage_labels
from curate.pipelines.rows import DROP_REASON, DROP_RULE, DROP_STAGE, DUPLICATE_OF, EXPANDED, INTERNAL_COLUMNS
from curate.pipelines.stage import Expand, GlobalStage, Stage

__all__ = ["run"]


def run(stages: Sequence[Stage[Any]], table: pa.Table, *, output_uri: str = "") -> tuple[pa.Table, pa.Table]:
    """Run ``stages`` in order on ``table`` (an ``id`` column is expected, as from a reader);
    returns ``(kept, dropped)``: the kept rows with their columns, and the dropped rows with
    ``stage``, ``rule``, ``reason`` and ``duplicate_of``. ``output_uri``: where a stage keeping
    state beside the dataset (a saved dedup index) writes it."""
    batch = with_engine_columns(table)
    for stage, label in zip(stages, stage_labels(list(stages))):
        if isinstance(stage, GlobalStage):
            batch = _run_global(stage, label, batch, output_uri)
        else:
            batch = _run_batches(stage, label, batch)
    live = is_live(batch)
    user = [c for c in batch.schema.names if c not in INTERNAL_COLUMNS]
    kept = batch.filter(live).select(user)
    gone = batch.filter(pc.invert(live))
    gone = gone.filter(pc.not_equal(pc.fill_null(gone.column(DROP_RULE), ""), EXPANDED))  # parents replaced by children
    dropped = gone.select(user)
    for name, column in (("stage", DROP_STAGE), ("rule", DROP_RULE), ("reason", DROP_REASON), ("duplicate_of", DUPLICATE_OF)):
        dropped = dropped.append_column(name, gone.column(column))
    return kept, dropped


def _run_batches(stage: Stage[Any], label: str, batch: pa.Table) -> pa.Table:
    ensure_setup(stage)
    step = max(1, stage.settings.batch_size)
    apply = apply_expand if isinstance(stage, Expand) else apply_stage
    parts = [apply(stage, label, batch.slice(start, step))[0] for start in range(0, batch.num_rows, step)]  # type: ignore[arg-type]
    return pa.concat_tables(parts, promote_options="permissive") if parts else batch


def _run_global(stage: GlobalStage[Any], label: str, batch: pa.Table, output_uri: str) -> pa.Table:
    step = max(1, stage.settings.batch_size)
    blocks = [batch.slice(start, step) for start in range(0, batch.num_rows, step)]
    drops = run_global_local(stage, label, blocks, output_uri=output_uri)
    pos_sorted, ordered = sorted_drops(drops)
    return mark_global_drops(batch, label, pos_sorted, ordered)[0]
