"""The stage interface.

A stage is a small typed class that transforms Arrow batches. It declares

- ``name``: the type name used in pipeline YAML (``- normalize: {}``),
- ``Params``: a pydantic model of its parameters (validated before Ray starts),
- ``resources``: CPUs, GPUs and memory one worker of the stage needs,
- ``batch_size``: rows per call,
- ``stateful``: whether it holds state (a model) and so runs in an actor pool.

Stages never import Ray: :mod:`curate.pipelines.ray_adapter` maps them onto Ray Data.

There are three kinds:

``Stage``
    ``process(batch) -> pa.Table | StageOutput``: transforms a batch (adds or rewrites columns)
    and may drop rows by returning a :class:`StageOutput` with :class:`Drops`.
``Filter``
    The common case, as in datatrove: implement ``keep(doc) -> bool | (False, reason)`` for one
    document, or ``keep_batch(batch)`` vectorised. The framework records stats and every dropped
    row with stage, rule and reason.
``GlobalStage``
    Needs the whole dataset (deduplication): ``keys`` emits hash keys per row, rows sharing a
    bucket of keys meet in ``reduce``, ``resolve`` decides which rows to drop. The adapter runs
    these distributed (hash-partitioned shuffle of the small key rows, never of the text).

Every row carries the internal column ``_curate_pos`` (int64): a position unique in the run
and stable across runs (input file index and byte offset or row number), used as the
deterministic order ("first occurrence") and as the join key for global stages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

#: internal columns carried along the stream, removed before writing
POS = "_curate_pos"
DROP_STAGE = "_drop_stage"
DROP_RULE = "_drop_rule"
DROP_REASON = "_drop_reason"
DUPLICATE_OF = "_duplicate_of"
DROP_COLUMNS = (DROP_STAGE, DROP_RULE, DROP_REASON, DUPLICATE_OF)
INTERNAL_COLUMNS = (POS, *DROP_COLUMNS)


class Params(BaseModel):
    """Base of every stage's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs. ``memory`` is in bytes."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory: int | None = None


@dataclasses.dataclass
class Drops:
    """Rows a stage removes: ``mask[i]`` is True for a dropped row.

    ``rule`` and ``reason`` are one string for all dropped rows or one entry per row
    (entries of kept rows are ignored). ``duplicate_of`` names the id a row duplicates.
    """

    mask: np.ndarray
    rule: str | Sequence[str | None]
    reason: str | Sequence[str | None] | None = None
    duplicate_of: Sequence[str | None] | None = None


@dataclasses.dataclass
class StageOutput:
    """A stage's result for one batch: the (possibly transformed) rows, the drops, counters."""

    table: pa.Table
    drops: Drops | None = None
    counters: dict[str, int] = dataclasses.field(default_factory=dict)


P = TypeVar("P", bound=Params)


class Stage(Generic[P]):
    """A transformation of Arrow batches. Subclass, set the class attributes, implement ``process``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    resources: ClassVar[Resources] = Resources()
    batch_size: ClassVar[int] = 4096
    stateful: ClassVar[bool] = False
    #: columns this stage reads; the reader checks they exist where it can
    requires: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, params: P) -> None:
        self.params = params

    def setup(self) -> None:
        """Load models or build lookup tables. Called once per worker before the first batch."""

    def process(self, batch: pa.Table) -> pa.Table | StageOutput:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """Extra facts recorded in the commit metadata (e.g. a model's path and hash)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


class Filter(Stage[P]):
    """A stage that keeps or drops rows.

    Implement one of:

    - ``keep(doc)``: ``doc`` is a dict of the row; return ``True`` to keep, ``False`` or
      ``(False, "reason")`` to drop. Simple and slow (a Python call per row).
    - ``keep_batch(batch)``: return a boolean keep mask (NumPy/Arrow), ``(mask, reasons)`` with
      one reason per row, or ``(mask, rules, reasons)`` with a rule name per row too.
      Vectorised; preferred for built-in filters.

    The drop rule recorded is the per-row rule, else ``rule`` (default: the stage's name);
    for ``keep()`` returning ``(False, reason)`` the reason is also the rule, as in datatrove.
    """

    rule: ClassVar[str] = ""

    def keep(self, doc: dict[str, Any]) -> bool | tuple[bool, str]:
        raise NotImplementedError

    def keep_batch(self, batch: pa.Table) -> Any:
        keeps = np.ones(batch.num_rows, dtype=bool)
        reasons: list[str | None] = [None] * batch.num_rows
        rules: list[str | None] = [None] * batch.num_rows
        default = self.rule or self.name
        for i, doc in enumerate(batch.to_pylist()):
            verdict = self.keep(doc)
            if isinstance(verdict, tuple):
                keeps[i] = bool(verdict[0])
                if not verdict[0]:
                    reasons[i] = verdict[1]
                    rules[i] = verdict[1] or default
            else:
                keeps[i] = bool(verdict)
                if not keeps[i]:
                    rules[i] = default
        return keeps, rules, reasons

    def process(self, batch: pa.Table) -> StageOutput:
        result = self.keep_batch(batch)
        reasons: Any = None
        rules: Any = self.rule or self.name
        if isinstance(result, tuple):
            if len(result) == 3:
                result, rules, reasons = result
            else:
                result, reasons = result
        keep = _as_bool_array(result, batch.num_rows)
        return StageOutput(batch, Drops(mask=~keep, rule=rules, reason=reasons))


class GlobalStage(Stage[P]):
    """A stage that must see the whole dataset, such as deduplication.

    The adapter runs it in three steps:

    1. ``keys(batch) -> pa.Table``: for each live row, zero or more key rows. Must contain a
       ``key`` column (uint64) and ``POS``; any other payload columns may be added. Key rows are
       small: the text is never shuffled.
    2. ``reduce(rows) -> pa.Table``: called on hash partitions of the key rows; every key row with
       the same ``key`` is in the same call (a call usually holds many keys). Returns anything
       ``resolve`` understands, typically candidate edges.
    3. ``resolve(reduced) -> pa.Table``: all of ``reduce``'s output at once; returns the rows to
       drop as columns ``POS`` (int64), ``rule``, ``reason``, ``duplicate_of`` (strings).
    """

    def keys(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def reduce(self, rows: pa.Table) -> pa.Table:
        raise NotImplementedError

    def resolve(self, reduced: pa.Table) -> pa.Table:
        raise NotImplementedError

    def process(self, batch: pa.Table) -> pa.Table:  # pragma: no cover - not called for global stages
        raise TypeError(f"{type(self).__name__} is a GlobalStage: the adapter calls keys/reduce/resolve")


def _as_bool_array(mask: Any, n: int) -> np.ndarray:
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    if isinstance(mask, pa.Array):
        mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    arr = np.asarray(mask, dtype=bool)
    if arr.shape != (n,):
        raise ValueError(f"a keep mask must have one entry per row ({n}), got shape {arr.shape}")
    return arr


DROP_RESULT_SCHEMA = pa.schema(
    [
        pa.field(POS, pa.int64()),
        pa.field("rule", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("duplicate_of", pa.string()),
    ]
)
