"""Every fingerprint of a run, in one place, each leaving out of the resolved config (the file
with every default filled in) only what does not change what the run writes:

- :func:`config_fingerprint` (the run key's config part, scheduled runs): leaves out ``ray:`` and
  ``run:``: a cluster address or a log folder set by the scheduler gives the same key.
- :func:`journal_key` (the resume journal's folder): also leaves out ``expectations:`` (a rerun
  after a failed gate reuses the shards it wrote), and adds the read tasks (path, size,
  modification time, start, rows), the output and its mode.
- :func:`recorded_fingerprint` (``config_fingerprint`` in the commit metadata, for lineage): the
  whole resolved config, ``ray:`` and ``run:`` included.

And the run key itself (:func:`run_key_for`: config, inputs, logical date). Apart from the
scheduler glue in :mod:`.scheduling`, so that the Python API (:mod:`.api`) and the runner can
compute them without importing the scheduler's module. Nothing here imports Ray.
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


#: the parts of the resolved config each fingerprint leaves out
RUN_KEY_LEAVES_OUT = ("ray", "run")
JOURNAL_LEAVES_OUT = ("ray", "run", "expectations")


def config_fingerprint(pipeline: Pipeline) -> str:
    """What the run writes: its resolved config without where and how it runs (``ray:``, ``run:``),
    so a cluster address or a log folder set by the scheduler does not change the key."""
    return _digest({k: v for k, v in pipeline.resolved().items() if k not in RUN_KEY_LEAVES_OUT})


def recorded_fingerprint(pipeline: Pipeline) -> str:
    """The whole resolved config's fingerprint, recorded in the commit metadata."""
    return pipeline.fingerprint()


def journal_key(pipeline: Pipeline, tasks: list[dict[str, Any]], output_uri: str) -> str:
    """The resume journal's key: the resolved config without ``ray:``, ``run:`` and
    ``expectations:``, the read tasks (path, size, modification time, start, rows), the output
    and its mode. A run with the same config and inputs finds an unfinished earlier run's journal."""
    from .journal import journal_key as key

    what = {k: v for k, v in pipeline.resolved().items() if k not in JOURNAL_LEAVES_OUT}
    return key(json.dumps(what, sort_keys=True, default=str), [(t["path"], t["size"], t["mtime"], t["start"], t["rows"]) for t in tasks],
               output_uri, pipeline.config.output.mode)


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
