"""The plan check: before Ray starts, every column a stage reads must be produced by the input or
an earlier stage; stage labels; whether the work before a global stage is worth checkpointing.
No Ray here."""

from __future__ import annotations

from typing import Any

from .config import Pipeline
from .errors import ConfigError
from .stage import PARENT_ID, Expand, GlobalStage, Stage, stage_kind


def stage_labels(stages: list[Stage[Any]]) -> list[str]:
    """Unique display names: ``normalize``, ``length_filter``, ``length_filter#2`` ..."""
    seen: dict[str, int] = {}
    labels = []
    for s in stages:
        base = s.name or type(s).__name__
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return labels


def check_columns(pipeline: Pipeline, input_columns: list[str], input_name: str) -> list[str]:
    """Walk the stages with the set of available columns; raise ConfigError naming the stage, the
    missing column and what is available. Returns the columns of the output rows."""
    available: dict[str, str] = {c: input_name for c in input_columns}
    labels = stage_labels(pipeline.stages)
    for i, (stage, label) in enumerate(zip(pipeline.stages, labels)):
        for col in stage.input_columns():
            if col not in available:
                where = pipeline.where(("stages", i, pipeline.config.stages[i].type)) if i < len(pipeline.config.stages) else label
                have = ", ".join(f"{c} ({src})" for c, src in available.items())
                hint = (
                    "set the stage's field param to a column that exists, add a stage that produces it, "
                    "or carry it from the input (input.keep_fields)"
                )
                raise ConfigError(f"{where}: stage {label!r} reads column {col!r}, which nothing before it produces; available: {have}", hint=hint)
        for col in stage.output_columns():
            available.setdefault(col, f"stage {label}")
        if isinstance(stage, Expand):
            available.setdefault(PARENT_ID, f"stage {label}")
    if pipeline.expectations:  # the publish gate's columns are output columns
        from .expectations.spec import check_columns as check_expectation_columns

        check_expectation_columns(pipeline.expectations, list(available))
    return list(available)


def source_stage(pipeline: Pipeline) -> Expand[Any]:
    """The first stage of a pipeline without input, which must provide the source rows."""
    first = pipeline.stages[0] if pipeline.stages else None
    if not isinstance(first, Expand) or first.source_rows() is None:
        got = f"{first.name!r} ({stage_kind(first)})" if first is not None else "no stage"
        raise ConfigError(
            f"{pipeline.source}: the pipeline has no input, and its first stage, {got}, does not produce source rows",
            hint="add an `input:` section, or start with a generator stage (an Expand stage whose source_rows() gives the seed rows)",
        )
    return first


def checkpoint_before_global(stages: list[Stage[Any]]) -> bool:
    """Checkpoint the rows before the first global stage when what precedes it is expensive to
    redo (an Expand stage, a model in an actor, a GPU): a killed run then resumes with those rows
    instead of recomputing them. Cheap stages are simply recomputed (no extra write/read)."""
    for stage in stages:
        if isinstance(stage, GlobalStage):
            return False if stage is stages[0] else any(_expensive(s) for s in stages[: stages.index(stage)])
    return False


def _expensive(stage: Stage[Any]) -> bool:
    return isinstance(stage, Expand) or stage.stateful or stage.settings.resources.gpus > 0
