"""The plan check: before Ray starts, every column a stage reads must be produced by the input or
an earlier stage; stage labels; whether the work before a global stage is worth checkpointing.
No Ray here."""

from __future__ import annotations

from typing import Any

from .config import Pipeline
from .errors import ConfigError, combine_errors
from .rows import PARENT_ID
from .stage import Expand, GlobalStage, Stage, stage_kind


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
    """Walk the stages with the set of available columns; raise ConfigError naming the stage and
    the column when a stage reads a column nothing before it produces, or writes a column the
    input or an earlier stage produced without declaring that it rewrites it (its values would be
    silently replaced). Every such problem is reported at once. Returns the output rows' columns."""
    available: dict[str, str] = {c: input_name for c in input_columns}
    labels = stage_labels(pipeline.stages)
    problems: list[ConfigError] = []
    for i, (stage, label) in enumerate(zip(pipeline.stages, labels)):
        where = pipeline.where(("stages", i, pipeline.config.stages[i].type)) if i < len(pipeline.config.stages) else label
        for col in stage.input_columns():
            if col not in available:
                have = ", ".join(f"{c} ({src})" for c, src in available.items())
                hint = (
                    "set the stage's field param to a column that exists, add a stage that produces it, "
                    "or carry it from the input (input.keep_fields)"
                )
                problems.append(ConfigError(f"{where}: stage {label!r} reads column {col!r}, which nothing before it produces; available: {have}", hint=hint))
        rewrites = set(stage.rewritten_columns())
        if i == 0 and pipeline.config.input is None:  # a generator's source rows are its own
            rewrites |= {c for c, src in available.items() if src == input_name}
        for col in stage.output_columns():
            if col in available and col not in rewrites:
                problems.append(ConfigError(
                    f"{where}: stage {label!r} writes column {col!r}, which {available[col]} already produced: its values would be replaced",
                    hint=("leave the column out of the input (input.keep_fields)" if available[col] == input_name else
                          f"drop one of the two stages, or reorder them so {label!r} is not writing over {available[col]}'s {col!r}"),
                ))
            else:
                available.setdefault(col, f"stage {label}")
        if isinstance(stage, Expand):
            available.setdefault(PARENT_ID, f"stage {label}")
    if pipeline.expectations:  # the publish gate's columns are output columns
        from .expectations.spec import column_problems

        problems += column_problems(pipeline.expectations, list(available))
    if problems:
        raise combine_errors(problems)
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


def check_sources(pipeline: Pipeline) -> None:
    """A stage that makes its own rows (a generator in generation mode: ``source_rows()``) starts
    a pipeline without input: with an ``input:`` or after another stage, its rows would have no
    meaning (each input row is not a grid cell). Refused, naming both."""
    for i, stage in enumerate(pipeline.stages):
        if not isinstance(stage, Expand) or stage.source_rows() is None:
            continue
        where = pipeline.where(("stages", i, pipeline.config.stages[i].type)) if i < len(pipeline.config.stages) else pipeline.source
        label = stage_labels(pipeline.stages)[i]
        if pipeline.config.input is not None:
            raise ConfigError(
                f"{where}: stage {label!r} makes its own rows (its seeds, e.g. `topics:`), but the pipeline also has an input "
                f"({pipeline.where(('input',))}): a run has one source of rows",
                hint="remove `input:` to generate from the seeds, or use the stage's transformation mode (mode: transformation, "
                "no topics) to rewrite the input's rows",
            )
        if i > 0:
            raise ConfigError(f"{where}: stage {label!r} makes its own rows (its seeds), so it must be the first stage",
                              hint="move it to the top of stages:")


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
