"""The Python API: ``curate.run(...)`` for Airflow tasks, notebooks and scripts.

It runs exactly what ``curate run`` runs and returns a :class:`~curate.pipelines.runner.RunResult`,
without side effects on the caller's process: logging configuration, ``sys.path`` and the
environment are as they were afterwards, a Ray the caller initialised is used and left running,
and nothing is printed unless ``quiet=False``. Errors are raised as
:class:`~curate.pipelines.errors.CurateError` subclasses (``ConfigError``, ``InputDataError``,
``DatasetError``, ``StageError``) with the message the command line would print.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from .config import Pipeline, load_pipeline, parse_pipeline
from .runkey import run_key_for, with_ray_address
from .runner import RunResult, run_pipeline
from .yamlsource import Located


def load(pipeline: str | os.PathLike[str] | dict[str, Any] | Pipeline, *, base_dir: str | os.PathLike[str] | None = None) -> Pipeline:
    """A validated pipeline from a YAML path, a dict (same schema as the file) or a Pipeline."""
    if isinstance(pipeline, Pipeline):
        return pipeline
    if isinstance(pipeline, dict):
        where = str(Path(base_dir or os.getcwd()) / "<dict>")
        return parse_pipeline(Located(where, pipeline, {}))
    return load_pipeline(pipeline)


def run(
    pipeline: str | os.PathLike[str] | dict[str, Any] | Pipeline,
    *,
    run_key: str | None = None,
    resume: bool = True,
    quiet: bool = True,
    ray_address: str | None = None,
) -> RunResult:
    """Run a pipeline (a YAML path, a dict or a loaded Pipeline) and commit one version.

    ``run_key``: an idempotency key; when it was already committed to the output dataset,
    nothing is published and the result has ``skipped=True``. ``resume``: reuse the journal of
    an earlier unfinished run with the same config and inputs. ``ray_address``: run on this Ray
    cluster instead of the pipeline's ``ray.address`` (``auto``, ``ray://host:10001``).
    """
    from rich.console import Console

    console = Console(file=io.StringIO()) if quiet else Console(stderr=True)
    return run_pipeline(with_ray_address(load(pipeline), ray_address), console=console, progress=False if quiet else None, run_key=run_key, resume=resume)


__all__ = ["run", "load", "run_key_for", "RunResult"]
