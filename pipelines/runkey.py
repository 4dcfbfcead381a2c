"""Run keys: the fingerprints that make a scheduled run idempotent (what the run writes, what it
reads, and its logical date), apart from the scheduler glue in :mod:`.scheduling` so that the
Python API (:mod:`.api`) can compute a key without importing the scheduler's module.

Nothing here imports Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from .config import Pipeline


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_fingerprint(pipeline: Pipeline) -> str:
    """What the run writes: its resolved config without where and how it runs (``ray:``, ``run:``),
    so a cluster address or a log folder set by the scheduler does not change the key."""
    return _digest({k: v for k, v in pipeline.resolved().items() if k not in ("ray", "run")})


def input_fingerprint(pipeline: Pipeline) -> str:
    """The inputs as the run would plan them (relative paths against the working folder): each
    read task's file, size, modification time and range, or the source rows of a pipeline without
    ``input:``, and each Delta input's resolved version. Raises what the run would raise for a
    missing input (``ConfigError``, ``DatasetError``)."""
    from .preflight import plan_run_inputs

    return inputs_digest(plan_run_inputs(pipeline))


def inputs_digest(inputs: Any) -> str:
    tasks = [(t["path"], t["size"], t["mtime"], t["start"], t["end"], t["rows"]) for t in inputs.tasks]
    deltas = [entry for entry in inputs.lineage if "delta" in entry]
    return _digest([tasks, deltas, *([inputs.pending] if inputs.pending else [])])


def date_key(logical_date: datetime | str) -> str:
    """A logical date as it goes into a run key: a datetime in UTC ISO form (a naive one is taken
    as UTC), a string (e.g. a manual run's id) as it is."""
    if isinstance(logical_date, datetime):
        if logical_date.tzinfo is None:
            logical_date = logical_date.replace(tzinfo=timezone.utc)
        return logical_date.astimezone(timezone.utc).isoformat()
    if isinstance(logical_date, str) and logical_date.strip():
        return logical_date.strip()
    raise ValueError(f"a run key needs a logical date (a datetime or a non-empty string), got {logical_date!r}")


def run_key_for(pipeline: Pipeline, logical_date: datetime | str) -> str:
    """``<logical date>/config:<16 hex>/inputs:<16 hex>``: the idempotency key of a scheduled run."""
    return key_of(logical_date, config_fingerprint(pipeline), input_fingerprint(pipeline))


def key_of(logical_date: datetime | str, config_fp: str, inputs_fp: str) -> str:
    return f"{date_key(logical_date)}/config:{config_fp}/inputs:{inputs_fp}"


def with_ray_address(pipeline: Pipeline, address: str | None) -> Pipeline:
    """The pipeline with ``ray.address`` replaced (``None`` or empty: unchanged). The address is
    not part of the run key: the same work done on another cluster is the same version."""
    if not address:
        return pipeline
    cfg = pipeline.config
    ray_cfg = cfg.ray.model_copy(update={"address": address})
    return dataclasses.replace(pipeline, config=cfg.model_copy(update={"ray": ray_cfg}))
