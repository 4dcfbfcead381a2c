"""The pipeline file: a typed, validated description of one run.

Validated completely (stage types resolved, every stage's params checked) before Ray starts.
Every error names the file, the line, the key path, the bad value and what is allowed.

Minimal form::

    input:
      format: jsonl
      paths: [data/*.jsonl]
    stages:
      - normalize: {}
      - length_filter: {min_chars: 50}
      - exact_dedup: {}
    output:
      dataset: out/web
      keep_dropped: true
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError, combine_errors  # (combine_errors: re-exported for callers of config)
from .registry import resolve_stage
from .stage import Params, Stage
from .yamlsource import Key, Located, format_key, load_yaml


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(_Model):
    """Where documents come from."""

    format: Literal["jsonl", "parquet", "text", "delta", "audio"] = Field(
        description="jsonl (plain, .gz, .zst), parquet, text (one document per file), delta (a curate dataset) or audio (one row per audio file: id, audio_uri, audio_sha256, audio_format, duration_s)"
    )
    paths: list[str] = Field(
        min_length=1,
        description="files, folders or globs; local paths or fsspec URLs (s3://...). For delta: table paths, optionally path@VERSION",
    )
    text_field: str = Field(
        "text",
        description="field holding the document text (becomes the `text` column); parquet/delta inputs without it are read without text",
    )
    id_field: str = Field("id", description="field holding the document id; ids are derived from the text when missing")
    keep_fields: list[str] | None = Field(
        None,
        description="other input fields to carry into the output (default: none for jsonl, every column for parquet/delta)",
    )
    on_error: Literal["fail", "skip"] = Field(
        "fail", description="malformed records: fail the run, or skip them (counted and recorded as dropped by stage 'read')"
    )
    version: int | None = Field(None, ge=0, description="delta input: the version to read (default: latest)")
    since_version: int | Literal["last"] | None = Field(
        None,
        description="delta input: read only the rows added after this version (append-only datasets); `last`: after the version "
        "the output dataset's latest run from this input read (everything on the first run)",
    )
    storage_options: dict[str, str] = Field(default_factory=dict, description="fsspec / object-store options")
    read_batch_rows: int = Field(10_000, gt=0, description="rows per block produced by the reader")

    @field_validator("since_version", mode="before")
    @classmethod
    def _since(cls, v: Any) -> Any:
        ok = v is None or v == "last" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) or (isinstance(v, str) and v.isdigit())
        if not ok:
            raise ValueError("since_version is a version number (>= 0) or `last`")
        return v

    @field_validator("paths")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.strip():
                raise ValueError("a path must not be empty")
        return v


class OutputConfig(_Model):
    """Where the curated dataset is written: a Delta Lake table, one version per run."""

    dataset: str = Field(description="Delta table path or URL (created on the first run)")
    keep_dropped: bool = Field(False, description="write dropped rows (with stage, rule, reason) to a sibling table")
    dropped_dataset: str | None = Field(None, description="where dropped rows go (default: DATASET.dropped)")
    mode: Literal["overwrite", "append"] = Field(
        "overwrite", description="overwrite: the new version holds this run's rows; append: adds them to the previous version"
    )
    shard_rows: int = Field(50_000, gt=0, description="maximum rows per Parquet shard (shards are written per block as it arrives, so they can be smaller)")
    shard_bytes: ByteSize = Field(ByteSize(128 * 1024**2), gt=0, description="approximate maximum bytes per Parquet shard (e.g. 128MB)")
    compression: Literal["zstd", "snappy", "gzip", "none"] = "zstd"
    storage_options: dict[str, str] = Field(default_factory=dict)

    @property
    def dropped_path(self) -> str:
        return self.dropped_dataset or self.dataset.rstrip("/") + ".dropped"


class RayConfig(_Model):
    """Where stages run. Default: a local Ray started in-process."""

    address: str | None = Field(None, description="unset/local: start Ray in-process; auto or ray://host:port: join a cluster")
    num_cpus: int | None = Field(None, gt=0, description="CPUs for the in-process Ray (default: all)")
    num_gpus: float | None = Field(None, ge=0, description="GPUs for the in-process Ray (default: those Ray detects)")
    object_store_memory: ByteSize | None = Field(None, description="object store size for the in-process Ray, e.g. 2GB")


class RunConfig(_Model):
    """How the run reports."""

    log_dir: str = Field(".curate/runs", description="folder for one log file per run")
    progress: bool = Field(True, description="live per-stage progress display")
    stall_timeout: float = Field(
        1800, ge=0,
        description="seconds without progress (no row into or out of any stage, no shard written) after which the run is "
        "stopped and fails instead of waiting forever (e.g. for resources Ray cannot find); 0: never",
    )


class StageRunConfig(_Model):
    """Per-stage run settings (``run:`` beside the stage's params), overriding the stage's defaults."""

    batch_size: int | None = Field(None, gt=0, description="rows per call of the stage")
    cpus: float | None = Field(None, ge=0, description="CPUs per task or actor")
    gpus: float | None = Field(None, ge=0, description="GPUs per task or actor (actor pools are sized by GPUs)")
    memory: ByteSize | None = Field(None, description="memory reserved per task or actor, e.g. 4GB")
    concurrency: int | None = Field(None, gt=0, description="actors in the pool (stateful stages) or most tasks at once")
    max_retries: int | None = Field(None, ge=0, description="retries of a task or actor lost to a worker failure")
    max_failed_fraction: float | None = Field(
        None, ge=0, le=1,
        description="the largest share of the rows reaching the stage that may fail for a transient reason (engine down, timeout) "
        "before the run fails and publishes nothing (default 0, generators 0.05); such rows are retried by the next run",
    )


class StageSpec(_Model):
    type: str
    params: dict[str, Any] = Field(default_factory=dict)
    run: StageRunConfig = StageRunConfig()


class PipelineConfig(_Model):
    name: str | None = None
    input: InputConfig | None = Field(None, description="omit to start from the first stage's source rows (an Expand stage)")
    stages: list[StageSpec] = Field(default_factory=list)
    output: OutputConfig
    ray: RayConfig = RayConfig()
    run: RunConfig = RunConfig()
    expectations: list[Any] = Field(
        default_factory=list,
        description="the publish gate: Great Expectations expectations (and curate_* checks, `- suite: FILE`) the output must meet before it is published",
    )


@dataclasses.dataclass
class Pipeline:
    """A validated pipeline: its config, its instantiated stages and where it came from."""

    config: PipelineConfig
    stages: list[Stage[Any]]
    source: str
    base_dir: Path
    located: Located | None = None
    #: the publish gate's expectations, validated (curate.pipelines.expectations.spec.ExpectationSpec)
    expectations: list[Any] = dataclasses.field(default_factory=list)

    def where(self, key: Key) -> str:
        """``file:line`` of a key of the pipeline file (for errors found after parsing)."""
        return self.located.where(key) if self.located is not None else self.source

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.resolved(), sort_keys=True).encode()).hexdigest()[:16]

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in (what is recorded in the commit metadata)."""
        d = self.config.model_dump(mode="json")
        stages = []
        for s in self.stages:
            entry: dict[str, Any] = {s.name or type(s).__name__: s.params.model_dump(mode="json")}
            if s._overrides:
                entry["run"] = dict(sorted(s._overrides.items()))
            stages.append(entry)
        d["stages"] = stages
        if not d.get("expectations"):  # a pipeline without a gate keeps the fingerprint it had before gates existed
            d.pop("expectations", None)
        return d


def _describe_allowed(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"allowed: {ctx['expected']}"
    for k, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if k in ctx:
            return f"allowed: a value {word} {ctx[k]}"
    return ""


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that validates the value at ``loc`` (for listing allowed keys)."""
    import typing

    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = current.model_fields[part].annotation
        for arg in (typing.get_args(current) or ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _errors_to_message(exc: ValidationError, located: Located, prefix: Key, model: type[BaseModel] | None = None) -> str:
    lines = []
    for err in exc.errors():
        key: Key = prefix + tuple(err["loc"])
        where = located.where(key)
        value = err.get("input")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, tuple(err["loc"])[:-1]) if model is not None else None
            allowed = sorted(owner.model_fields) if owner is not None else None
            close = difflib.get_close_matches(str(key[-1]), allowed or [], n=1, cutoff=0.7)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "") + (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
            lines.append(f"{where}: {format_key(key)}: {msg}")
            continue
        if err["type"] == "missing":
            lines.append(f"{where}: {format_key(key)}: required key is missing")
            continue
        expected = _describe_allowed(dict(err))
        shown = repr(value) if not isinstance(value, dict) else "a mapping"
        lines.append(f"{where}: {format_key(key)}: {msg} (got {shown})" + (f"; {expected}" if expected else ""))
    return "\n".join(lines)


def parse_pipeline(located: Located) -> Pipeline:
    data = located.data
    if not isinstance(data, dict):
        raise ConfigError(f"{located.path}:1: a pipeline file must be a mapping with input, stages and output")
    raw_stages = data.get("stages", [])
    if raw_stages is None:
        raw_stages = []
    if not isinstance(raw_stages, list):
        raise ConfigError(f"{located.where(('stages',))}: stages must be a list, e.g. `- normalize: {{}}`")
    problems: list[ConfigError] = []  # every problem of the file is reported at once, not only the first
    specs = _stage_specs(raw_stages, located, problems)
    config: PipelineConfig | None = None
    try:  # the sections; the stages are validated one by one below (each error at its own index)
        config = PipelineConfig.model_validate({**data, "stages": []})
    except ValidationError as exc:
        problems.append(ConfigError(_errors_to_message(exc, located, (), PipelineConfig)))
    valid_specs: list[StageSpec] = []
    stages: list[Stage[Any]] = []
    base_dir = Path(located.path).resolve().parent
    with plugin_path(base_dir):
        for i, raw in enumerate(specs):
            if raw is None:
                continue
            try:
                spec = StageSpec.model_validate(raw)
            except ValidationError as exc:
                problems.append(ConfigError(_errors_to_message(exc, located, ("stages", i), StageSpec)))
                continue
            valid_specs.append(spec)
            key = ("stages", i, spec.type)
            try:
                cls = resolve_stage(spec.type)
            except ConfigError as exc:
                problems.append(ConfigError(f"{located.where(key)}: {format_key(('stages', i))}: {exc.message}", exc.hint))
                continue
            params_model: type[Params] = cls.Params
            try:
                params = params_model.model_validate(spec.params)
            except ValidationError as exc:
                problems.append(ConfigError(_errors_to_message(exc, located, key, params_model)))
                continue
            stage = cls(params)
            r = spec.run
            stage = stage.with_(
                batch_size=r.batch_size, cpus=r.cpus, gpus=r.gpus, memory=int(r.memory) if r.memory is not None else None,
                concurrency=r.concurrency, max_retries=r.max_retries, max_failed_fraction=r.max_failed_fraction,
            )
            try:
                stage.check(base_dir)
            except ConfigError as exc:
                problems.append(ConfigError(f"{located.where(key)}: {format_key(key)}: {exc.message}", exc.hint))
                continue
            stages.append(stage)
    expectations: list[Any] = []
    if config is not None and config.expectations:  # (imports Great Expectations: only for a pipeline that has expectations)
        from .expectations.spec import parse_expectations

        try:
            expectations = parse_expectations(data.get("expectations"), located, base_dir)
        except ConfigError as exc:
            problems.append(exc)
    if problems or config is None:
        raise combine_errors(problems)
    config = config.model_copy(update={"stages": valid_specs})
    return Pipeline(config=config, stages=stages, source=located.path, base_dir=base_dir, located=located, expectations=expectations)


def _stage_specs(raw_stages: list[Any], located: Located, problems: list[ConfigError]) -> list[dict[str, Any] | None]:
    """Each stage item as ``{type, params, run}``, or None (with its problem added) when its shape is wrong."""
    specs: list[dict[str, Any] | None] = []
    for i, item in enumerate(raw_stages):
        key: Key = ("stages", i)
        if isinstance(item, str):
            item = {item: {}}
        run_settings: Any = {}
        if isinstance(item, dict) and "run" in item and len(item) == 2:
            item = dict(item)
            run_settings = item.pop("run") or {}
        if not isinstance(item, dict) or len(item) != 1:
            extra = [k for k in item if k != "run"][1:] if isinstance(item, dict) else []
            close = next((k for k in extra if difflib.get_close_matches(str(k), ["run"], n=1, cutoff=0.6)), None)
            problems.append(ConfigError(
                f"{located.where(key)}: {format_key(key)}: each stage is a mapping of one stage type to its params, "
                "optionally with `run:` settings beside it" + (f"; {close!r} beside it: did you mean 'run'?" if close else ""),
                hint="write e.g. `- length_filter: {min_chars: 50}` (and `run: {batch_size: 1024}` on the next line)",
            ))
            specs.append(None)
            continue
        (type_name, params), = item.items()
        if params is None:
            params = {}
        if not isinstance(params, dict):
            problems.append(ConfigError(f"{located.where(key + (type_name,))}: {format_key(key + (type_name,))}: stage params must be a mapping (got {params!r})"))
            specs.append(None)
            continue
        if not isinstance(run_settings, dict):
            problems.append(ConfigError(f"{located.where(key + ('run',))}: {format_key(key + ('run',))}: run settings must be a mapping (got {run_settings!r})"))
            specs.append(None)
            continue
        specs.append({"type": str(type_name), "params": params, "run": run_settings})
    return specs


@contextlib.contextmanager
def plugin_path(base_dir: Path) -> Iterator[None]:
    """Plugin modules (``module:Class``) are looked up next to the pipeline file and in the working
    directory; ``sys.path`` is restored afterwards (embedded callers keep their own)."""
    saved = list(sys.path)
    for folder in (str(base_dir), os.getcwd()):
        if folder not in sys.path:
            sys.path.append(folder)
    try:
        yield
    finally:
        sys.path[:] = saved


def load_pipeline(path: str | os.PathLike[str]) -> Pipeline:
    """Read, interpolate and validate a pipeline file; raises :class:`ConfigError`."""
    return parse_pipeline(load_yaml(path))
