"""The stage interface: what a stage is, what it reads and writes, how it runs.

A stage is a small typed class over Arrow batches. It declares

- ``name``: the type name used in pipeline YAML (``- normalize: {}``),
- ``Params``: a pydantic model of its parameters (validated before Ray starts),
- ``reads`` / ``writes``: the columns it reads and the columns it adds (the plan is checked
  before Ray starts: a stage reading a column nothing produces is a config error), or
  :meth:`Stage.input_columns` / :meth:`Stage.output_columns` when they depend on the params,
- its default run settings: ``resources`` (CPUs, GPUs, memory per worker), ``batch_size``,
  ``concurrency``, ``max_retries``, ``stateful`` (holds a model: runs in an actor pool).
  A pipeline file overrides them per stage (``run: {gpus: 1, concurrency: 2}``), Python code
  with :meth:`Stage.with_`.

Stages never import Ray: :mod:`curate.pipelines.execution` maps them onto Ray Data.

There are four kinds:

``Stage``
    ``process(batch) -> pa.Table | StageOutput``: one row out per row in (adds or rewrites
    columns); may drop rows by returning a :class:`StageOutput` with :class:`Drops`.
``Filter``
    As in datatrove: implement ``keep(row) -> bool | (False, reason)`` for one row, or
    ``keep_batch(batch)`` vectorised. The framework records stats and every dropped row.
``Expand``
    1 -> N rows (generators, chunkers): ``expand(row) -> Iterable[dict]``, its async form
    ``aexpand`` (many requests in flight per actor, at most ``max_in_flight``) or the vectorised
    ``expand_batch``. Children get ids, positions and a ``parent_id`` derived from the parent.
    An Expand stage that implements ``source_rows()`` can start a pipeline with no ``input``.
``GlobalStage``
    Needs the whole dataset (deduplication): ``keys`` -> hash-partitioned ``reduce`` ->
    ``resolve`` on the driver, in one or more rounds (see the class).

Rows carry internal columns (removed before writing): ``_curate_pos`` (int64, unique in the run
and stable across runs: the deterministic order and the join key of global stages),
``_curate_task`` (the read task a row comes from), ``_curate_w`` (its share of an input row, for
the resume journal's exact accounting), ``_curate_born`` (the Expand stage that made it) and the
``_drop_*`` marks of dropped rows, which stay in the stream so every removal is counted from the
data (an expanded parent leaves a small marker row, so Expand stages are counted exactly too). Stages see the row's own columns plus
``_curate_pos``; the engine keeps the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict

from .rows import (  # re-exported: plugin code and tests name the drop columns and positions
    BORN,
    DROP_COLUMNS,
    DROP_REASON,
    DROP_RETRY,
    DROP_RULE,
    DROP_STAGE,
    DUPLICATE_OF,
    ENGINE_COLUMNS,
    EXPANDED,
    INTERNAL_COLUMNS,
    PARENT_ID,
    POS,
    RESUME_AT,
    ROW_WEIGHT,
    TASK,
    WEIGHT,
)

__all__ = [
    "Params",
    "Resources",
    "RunSettings",
    "Drops",
    "StageOutput",
    "DropRow",
    "snake_case",
    "Stage",
    "Filter",
    "ExpandOutput",
    "Expand",
    "RowError",
    "GlobalStage",
    "stage_kind",
    "DROP_RESULT_SCHEMA",
    "POS",
    "TASK",
    "WEIGHT",
    "BORN",
    "EXPANDED",
    "DROP_STAGE",
    "DROP_RULE",
    "DROP_REASON",
    "DUPLICATE_OF",
    "DROP_COLUMNS",
    "DROP_RETRY",
    "RESUME_AT",
    "ENGINE_COLUMNS",
    "INTERNAL_COLUMNS",
    "PARENT_ID",
    "ROW_WEIGHT",
]


class Params(BaseModel):
    """Base of every stage's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclasses.dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs. ``memory`` is in bytes."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory: int | None = None


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How a stage runs: its class defaults, overridden per pipeline (YAML ``run:``) or ``with_()``.

    ``concurrency``: actors in the pool of a stateful stage (default: as many as the cluster's
    CPUs, or GPUs for a GPU stage, allow), or the most tasks at once of a stateless one (default:
    no limit). ``max_retries``: retries of a task or actor lost to a system failure (a worker
    crash); an exception raised by the stage itself fails the run. ``max_failed_fraction``: the
    largest share of the rows reaching the stage that may be dropped for a transient reason
    (:class:`DropRow` ``transient``) before the run fails and publishes nothing.
    """

    batch_size: int
    resources: Resources
    concurrency: int | None = None
    max_retries: int = 3
    max_failed_fraction: float = 0.0


@dataclasses.dataclass
class Drops:
    """Rows a stage removes: ``mask[i]`` is True for a dropped row.

    ``rule`` and ``reason`` are one string for all dropped rows or one entry per row
    (entries of kept rows are ignored). ``duplicate_of`` names the id a row duplicates.
    ``transient``: the drop is not the row's fault (an engine down, a timeout, a connection
    refused), for all dropped rows or one entry per row: such rows are not dropped for good but
    kept aside and retried by the next run, and a run whose share of them at a stage exceeds the
    stage's ``max_failed_fraction`` fails and publishes nothing.
    """

    mask: np.ndarray
    rule: str | Sequence[str | None]
    reason: str | Sequence[str | None] | None = None
    duplicate_of: Sequence[str | None] | None = None
    transient: bool | Sequence[bool] | np.ndarray = False


@dataclasses.dataclass
class StageOutput:
    """A stage's result for one batch: the (possibly transformed) rows, the drops, counters."""

    table: pa.Table
    drops: Drops | None = None
    counters: dict[str, int] = dataclasses.field(default_factory=dict)


class DropRow(Exception):
    """Raised by ``keep``/``expand``/``aexpand`` for one row: the row is dropped with this rule and
    reason (recorded in the dropped-rows table) instead of failing the run.

    ``transient=True`` when the row is not at fault and another try may succeed (a generation
    request that failed after its retries because the engine is down, a timeout): the row is kept
    aside as pending, with what earlier stages computed, and retried by the next run; see
    :class:`Drops`."""

    def __init__(self, rule: str, reason: str | None = None, *, transient: bool = False) -> None:
        super().__init__(rule, reason)
        self.rule = rule
        self.reason = reason
        self.transient = transient

    def __reduce__(self) -> tuple[Any, ...]:
        return (_drop_row, (self.rule, self.reason, self.transient))


def _drop_row(rule: str, reason: str | None, transient: bool) -> "DropRow":
    return DropRow(rule, reason, transient=transient)


P = TypeVar("P", bound=Params)


def snake_case(name: str) -> str:
    """``NotMostlyCode`` -> ``not_mostly_code``, ``HTMLCleaner`` -> ``html_cleaner``."""
    import re

    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def _declared_params(cls: type) -> type[Params] | None:
    """The ``P`` a stage class was declared with (``class F(Filter[P])``), if any."""
    for base in getattr(cls, "__orig_bases__", ()):
        for arg in getattr(base, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, Params) and arg is not Params:
                return arg
    return None


class Stage(Generic[P]):
    """A transformation of Arrow batches. Subclass, set the class attributes, implement ``process``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    resources: ClassVar[Resources] = Resources()
    batch_size: ClassVar[int] = 4096
    concurrency: ClassVar[int | None] = None
    max_retries: ClassVar[int] = 3
    #: the share of rows this stage may drop for a transient reason before the run fails: 0 for
    #: stages working on what people handed in (a caption, a transcript), more for generators
    max_failed_fraction: ClassVar[float] = 0.0
    stateful: ClassVar[bool] = False
    #: columns this stage reads (checked against what the input and earlier stages produce)
    reads: ClassVar[tuple[str, ...]] = ("text",)
    #: columns this stage adds
    writes: ClassVar[tuple[str, ...]] = ()
    #: columns of ``writes`` this stage may find already there and replace by design (a caption
    #: stage rerun over captions); any other column it writes must be new, or the plan is refused
    rewrites: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A stage class without ``name`` is named after its class in snake case
        (``NotMostlyCode`` -> ``not_mostly_code``; a class whose name starts with ``_`` is a
        helper and stays unnamed); one without ``Params`` takes the ``P`` of ``Filter[P]`` (or
        ``Stage[P]``, ``Expand[P]``...), so its params are never checked against the empty base."""
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:  # the kinds themselves (Filter, Expand, GlobalStage)
            return
        if not getattr(cls, "name", "") and not cls.__name__.startswith("_"):
            cls.name = snake_case(cls.__name__)
        if "Params" not in cls.__dict__ and getattr(cls, "Params", Params) is Params:
            declared = _declared_params(cls)
            if declared is not None:
                cls.Params = declared

    def __init__(self, params: P) -> None:
        self.params = params
        self._overrides: dict[str, Any] = {}

    # -- declarations -------------------------------------------------------------------------

    def input_columns(self) -> tuple[str, ...]:
        """Columns read; override when they depend on the params (``field: ...``)."""
        return self.reads

    def output_columns(self) -> tuple[str, ...]:
        """Columns added; override when they depend on the params."""
        return self.writes

    def rewritten_columns(self) -> tuple[str, ...]:
        """Columns of :meth:`output_columns` this stage replaces by design when they exist."""
        return self.rewrites

    def check(self, base_dir: Path) -> None:
        """Validate what the params point at (files, models) before Ray starts; raise ConfigError.
        ``base_dir`` is the pipeline file's folder (relative paths are resolved against it)."""

    def with_(
        self,
        *,
        batch_size: int | None = None,
        cpus: float | None = None,
        gpus: float | None = None,
        memory: int | None = None,
        concurrency: int | None = None,
        max_retries: int | None = None,
        max_failed_fraction: float | None = None,
    ) -> "Stage[P]":
        """A copy of this stage with run settings overridden (``None`` keeps the default)."""
        import copy

        clone = copy.copy(self)
        clone._overrides = {**self._overrides}
        for key, value in (
            ("batch_size", batch_size), ("cpus", cpus), ("gpus", gpus), ("memory", memory),
            ("concurrency", concurrency), ("max_retries", max_retries), ("max_failed_fraction", max_failed_fraction),
        ):
            if value is not None:
                clone._overrides[key] = value
        return clone

    @property
    def settings(self) -> RunSettings:
        """The effective run settings: class defaults with this instance's overrides."""
        o = self._overrides
        res = self.resources
        return RunSettings(
            batch_size=int(o.get("batch_size", self.batch_size)),
            resources=Resources(
                cpus=float(o.get("cpus", res.cpus)),
                gpus=float(o.get("gpus", res.gpus)),
                memory=o.get("memory", res.memory),
            ),
            concurrency=o.get("concurrency", self.concurrency),
            max_retries=int(o.get("max_retries", self.max_retries)),
            max_failed_fraction=float(o.get("max_failed_fraction", self.max_failed_fraction)),
        )

    # -- running -------------------------------------------------------------------------------

    def setup(self) -> None:
        """Load models or build lookup tables. Called once per worker before the first batch."""

    def teardown(self) -> None:
        """Release what :meth:`setup` made (a model, a client, an event loop). Called once per
        actor of a stateful stage when the run's actor pool shuts down."""

    def process(self, batch: pa.Table) -> pa.Table | StageOutput:
        raise NotImplementedError

    def metadata(self) -> dict[str, Any]:
        """Extra facts recorded in the commit metadata (e.g. a model's path and hash)."""
        return {}

    def bind_output(self, dataset_uri: str, storage_options: dict[str, str] | None = None) -> None:
        """Called on the driver before a run (and by ``curate run --dry-run``) with the output
        dataset's location, for stages that keep state beside it (e.g. a request cache)."""

    def describe_plan(self) -> dict[str, Any] | None:
        """What ``curate run --dry-run`` prints for this stage (e.g. a generation grid's size and
        estimated cost), computed without Ray and without running anything; ``None``: nothing."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


class Filter(Stage[P]):
    """A stage that keeps or drops rows.

    Implement one of:

    - ``keep(row)``: ``row`` is a dict of the row; return ``True`` to keep, or to drop:
      ``False``, ``(False, "rule", "reason")`` (a rule to count drops by, and a reason with the
      figures), or ``(False, "text")``: a text that looks like a rule name (``too_few_words``)
      is the rule, as in datatrove; any other text (``"12 words"``) is the reason, the rule being
      the stage's. Simple and slow (a Python call per row).
    - ``keep_batch(batch)``: return a boolean keep mask (NumPy/Arrow), ``(mask, reasons)`` with
      one reason per row, ``(mask, rules, reasons)`` with a rule name per row too, or
      ``(mask, rules, reasons, transient)`` with a transient flag per row (see :class:`Drops`).
      Vectorised; preferred for built-in filters.

    The drop rule recorded is the per-row rule, else ``rule`` (default: the stage's name).
    """

    rule: ClassVar[str] = ""

    def keep(self, row: dict[str, Any]) -> bool | tuple[bool, str] | tuple[bool, str, str]:
        raise NotImplementedError

    def keep_batch(self, batch: pa.Table) -> Any:
        keeps = np.ones(batch.num_rows, dtype=bool)
        reasons: list[str | None] = [None] * batch.num_rows
        rules: list[str | None] = [None] * batch.num_rows
        transient = np.zeros(batch.num_rows, dtype=bool)
        default = self.rule or self.name
        for i, row in enumerate(batch.to_pylist()):
            try:
                verdict = self.keep(row)
            except DropRow as drop:
                keeps[i] = False
                rules[i], reasons[i], transient[i] = drop.rule, drop.reason, drop.transient
                continue
            except Exception as exc:
                raise RowError(row.get("id"), exc) from exc
            if isinstance(verdict, tuple):
                keeps[i] = bool(verdict[0])
                if not verdict[0]:
                    rules[i], reasons[i] = _rule_and_reason(verdict, default)
            else:
                keeps[i] = bool(verdict)
                if not keeps[i]:
                    rules[i] = default
        if transient.any():
            return keeps, rules, reasons, transient
        return keeps, rules, reasons

    def process(self, batch: pa.Table) -> StageOutput:
        result = self.keep_batch(batch)
        reasons: Any = None
        rules: Any = self.rule or self.name
        transient: Any = False
        if isinstance(result, tuple):
            if len(result) == 4:
                result, rules, reasons, transient = result
            elif len(result) == 3:
                result, rules, reasons = result
            else:
                result, reasons = result
        keep = _as_bool_array(result, batch.num_rows)
        return StageOutput(batch, Drops(mask=~keep, rule=rules, reason=reasons, transient=transient))


_RULE_NAME = __import__("re").compile(r"[a-z][a-z0-9_]*")


def _rule_and_reason(verdict: tuple[Any, ...], default: str) -> tuple[str, str | None]:
    """(rule, reason) of a ``keep()`` verdict ``(False, rule, reason)`` or ``(False, text)``."""
    if len(verdict) >= 3:
        return str(verdict[1] or default), (None if verdict[2] is None else str(verdict[2]))
    text = verdict[1] if len(verdict) > 1 else None
    if text is None:
        return default, None
    if _RULE_NAME.fullmatch(str(text)):
        return str(text), str(text)
    return default, str(text)


@dataclasses.dataclass
class ExpandOutput:
    """The vectorised result of an Expand stage for one batch of parents.

    ``children``: the new rows (any columns; parent columns they lack are inherited).
    ``parent_index``: for each child, the index of its parent in the batch (non-decreasing).
    ``drops``: parents dropped instead of expanded (their rule and reason are recorded).
    A parent with no children and no drop is recorded as dropped with rule ``no_output``.
    """

    children: pa.Table
    parent_index: np.ndarray
    drops: Drops | None = None
    counters: dict[str, int] = dataclasses.field(default_factory=dict)


class Expand(Stage[P]):
    """A stage that turns each row into zero or more new rows (1 -> N).

    Implement one of:

    - ``expand(row) -> Iterable[dict]``: the children of one row (a dict of its columns).
    - ``async aexpand(row) -> list[dict]``: the same as a coroutine; the engine runs up to
      ``max_in_flight`` rows of a batch at once (HTTP engines: many requests in flight per
      actor). Set ``stateful = True`` so clients live as long as the actor.
    - ``expand_batch(batch) -> ExpandOutput``: vectorised.

    Children inherit the parent's columns they do not set. The engine gives child ``k`` of a
    parent the id ``"<parent id>/<k>"``, a ``parent_id`` column and a position derived from the
    parent's: stable across runs, workers and batch sizes. Raising :class:`DropRow` drops the
    parent with that rule and reason; a parent with no children is recorded as dropped
    (rule ``no_output``), so every input row is accounted for.

    A pipeline without ``input`` starts from its first stage's ``source_rows()``: e.g. a grid of
    seeds (topics x formats x audiences), split into tasks of ``source_rows_per_task`` rows.
    """

    max_in_flight: ClassVar[int] = 16
    source_rows_per_task: ClassVar[int] = 64

    def expand(self, row: dict[str, Any]) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    async def aexpand(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def is_async(self) -> bool:
        return type(self).aexpand is not Expand.aexpand

    def source_rows(self) -> Iterable[dict[str, Any]] | None:
        """Rows that start a pipeline with no ``input`` (``None``: this stage needs an input)."""
        return None

    def expand_batch(self, batch: pa.Table) -> ExpandOutput:
        rows = batch.to_pylist()
        if self.is_async():
            results = _run_async_rows(self, rows)
        else:
            results = [_expand_one(self, row) for row in rows]
        children: list[dict[str, Any]] = []
        parent_index: list[int] = []
        mask = np.zeros(len(rows), dtype=bool)
        rules: list[str | None] = [None] * len(rows)
        reasons: list[str | None] = [None] * len(rows)
        transient = np.zeros(len(rows), dtype=bool)
        for i, result in enumerate(results):
            if isinstance(result, DropRow):
                mask[i] = True
                rules[i], reasons[i], transient[i] = result.rule, result.reason, result.transient
                continue
            for child in result:
                children.append(child)
                parent_index.append(i)
        table = pa.Table.from_pylist(children) if children else pa.table({})
        drops = Drops(mask=mask, rule=rules, reason=reasons, transient=transient) if mask.any() else None
        return ExpandOutput(table, np.asarray(parent_index, dtype=np.int64), drops)

    def process(self, batch: pa.Table) -> pa.Table:  # pragma: no cover - not called for Expand
        raise TypeError(f"{type(self).__name__} is an Expand stage: the engine calls expand_batch")


def _expand_one(stage: Expand[Any], row: dict[str, Any]) -> list[dict[str, Any]] | DropRow:
    try:
        return [dict(c) for c in stage.expand(row)]
    except DropRow as drop:
        return drop
    except Exception as exc:
        raise RowError(row.get("id"), exc) from exc


def _run_async_rows(stage: Expand[Any], rows: list[dict[str, Any]]) -> list[list[dict[str, Any]] | DropRow]:
    import asyncio

    async def one(sem: asyncio.Semaphore, row: dict[str, Any]) -> list[dict[str, Any]] | DropRow:
        async with sem:
            try:
                return [dict(c) for c in await stage.aexpand(row)]
            except DropRow as drop:
                return drop
            except Exception as exc:
                raise RowError(row.get("id"), exc) from exc

    async def all_rows() -> list[list[dict[str, Any]] | DropRow]:
        sem = asyncio.Semaphore(max(1, stage.max_in_flight))
        return list(await asyncio.gather(*(one(sem, r) for r in rows)))

    # one event loop per worker, kept across batches: clients created in it stay usable
    loop = getattr(stage, "_curate_loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        stage._curate_loop = loop  # type: ignore[attr-defined]
    return loop.run_until_complete(all_rows())


class RowError(Exception):
    """A stage raised on one row: carries the row's id to the error the user sees."""

    def __init__(self, row_id: Any, cause: BaseException | str) -> None:
        text = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(row_id, text)
        self.row_id = row_id
        self.cause_text = text

    def __str__(self) -> str:
        return f"row {self.row_id!r}: {self.cause_text}"


class GlobalStage(Stage[P]):
    """A stage that must see the whole dataset, such as deduplication.

    The engine runs it in rounds of three steps over the materialised upstream data:

    1. ``keys(batch) -> pa.Table``: for each live row, zero or more key rows. Must contain a
       ``key`` column (uint64) and ``POS``; any other payload columns may be added. Key rows are
       small: the text is never shuffled.
    2. ``reduce(rows) -> pa.Table``: called on hash partitions of the key rows; every key row with
       the same ``key`` is in the same call (a call usually holds many keys). Returns anything
       ``resolve`` understands, typically candidate edges.
    3. ``resolve(reduced) -> pa.Table``: all of ``reduce``'s output at once, on the driver. In the
       last round it returns the rows to drop (:data:`DROP_RESULT_SCHEMA`).

    Before the first round the engine sets ``buckets`` (partitions: a key row goes to partition
    ``key & (buckets - 1)``, chosen by :meth:`num_buckets` from the data size), ``output_uri``,
    ``storage_options`` and ``run_id`` (for side outputs such as an index saved beside the
    dataset). Multi-round stages set ``rounds`` > 1: ``round`` is the current round (0-based) and
    ``context`` the previous round's ``resolve`` output; ``rounds`` is read again after every
    ``resolve``, so a stage may stop early by lowering it. ``extra_inputs()`` names Parquet files
    whose rows ``extra_keys`` maps into more key rows of a round (e.g. an index saved earlier).
    """

    rounds: int = 1
    round: int = 0
    context: pa.Table | None = None
    buckets: int = 8
    output_uri: str = ""
    storage_options: dict[str, str] = {}  # noqa: RUF012 - replaced per instance by the engine
    run_id: str = ""

    def num_buckets(self, rows: int, nbytes: int, cpus: float) -> int:
        """Hash partitions for the key shuffle: a power of two, growing with the data (about
        one per 250k rows) and at least four per CPU, so a partition's key rows stay small."""
        want = max(cpus * 4, rows / 250_000, 8)
        return 1 << int(np.ceil(np.log2(want)))

    def extra_inputs(self) -> list[str]:
        return []

    def extra_keys(self, table: pa.Table) -> pa.Table:
        raise NotImplementedError(f"{type(self).__name__} has extra_inputs but no extra_keys")

    def keys(self, batch: pa.Table) -> pa.Table:
        raise NotImplementedError

    def reduce(self, rows: pa.Table) -> pa.Table:
        raise NotImplementedError

    def resolve(self, reduced: pa.Table) -> pa.Table:
        raise NotImplementedError

    def process(self, batch: pa.Table) -> pa.Table:  # pragma: no cover - not called for global stages
        raise TypeError(f"{type(self).__name__} is a GlobalStage: the engine calls keys/reduce/resolve")


def stage_kind(stage: Stage[Any] | type[Stage[Any]]) -> str:
    cls = stage if isinstance(stage, type) else type(stage)
    if issubclass(cls, GlobalStage):
        return "global"
    if issubclass(cls, Expand):
        return "expand"
    if issubclass(cls, Filter):
        return "filter"
    return "map"


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
