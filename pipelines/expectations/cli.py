"""``curate check DATASET[@VERSION]``: validate a committed version with the publish gate's
machinery (a ``curate.commands`` entry point)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, CurateError
from ..yamlsource import Located, load_yaml


def _specs_from_file(path: str, columns: tuple[list[str], str] | None = None) -> list[Any]:
    """Expectations from a file: a list in the pipeline file's vocabulary, a mapping with such an
    ``expectations:`` list (e.g. a pipeline file), or a Great Expectations suite (JSON or YAML).
    ``columns``: the data's columns and their name, so that an unknown column is reported with
    every other problem of the file."""
    from functools import partial

    from .spec import parse_expectations

    parse_expectations = partial(parse_expectations, columns=columns)

    if not Path(path).is_file():
        raise ConfigError(f"{path}: no such file", hint="--expectations names a YAML/JSON file of expectations or a GE suite")
    located = load_yaml(path)
    data = located.data
    base = Path(path).resolve().parent
    if isinstance(data, list):
        return parse_expectations(data, located, base, prefix=())
    if isinstance(data, dict) and isinstance(data.get("expectations"), list):
        items = data["expectations"]
        if items and all(isinstance(i, dict) and ("type" in i or "expectation_type" in i) for i in items):
            return parse_expectations([{"suite": str(Path(path).resolve())}], Located(path, [{"suite": path}], {}), base)
        return parse_expectations(items, located, base)
    raise ConfigError(f"{path}:1: expected a list of expectations, a mapping with an `expectations:` list, or a Great Expectations suite")


def _specs_from_version(dataset: str, version: int | None) -> list[Any]:
    """The expectations recorded in the version's commit metadata by the gate that published it."""
    from .. import store
    from .spec import parse_expectations

    dt = store.open_table(dataset, version)
    v = int(dt.version())
    recorded = (store.run_metadata(dataset, v).get("expectations") or {}).get("expectations") or []
    if not recorded:
        raise ConfigError(f"{dataset}@{v} was published without expectations: give them with --expectations FILE or --pipeline FILE")
    items = [{e["type"]: {**e.get("kwargs", {}), **({"severity": e["severity"]} if e.get("severity") not in (None, "critical") else {})}} for e in recorded]
    return parse_expectations(items, Located(f"{dataset}@{v} (recorded expectations)", items, {}), Path.cwd())


def _columns(dataset: str, version: int | None) -> tuple[list[str], str] | None:
    """The version's columns and its name (None when there is no such version: said later)."""
    from .. import fs
    from ..store import delta_schema, open_table

    try:
        v = int(open_table(dataset, version).version())
        return list(delta_schema(fs.table_uri(dataset), v, {}).names), f"{dataset}@{v}"
    except Exception:
        return None


@click.command("check")
@click.argument("dataset_ref", metavar="DATASET[@VERSION]")
@click.option("--expectations", "expectations_file", type=click.Path(dir_okay=False), default=None,
              help="A YAML/JSON file: a list of expectations (the pipeline file's vocabulary) or a Great Expectations suite.")
@click.option("--pipeline", "pipeline_file", type=click.Path(dir_okay=False), default=None,
              help="Take the expectations (and the report folder, run.log_dir) from this pipeline file.")
@click.option("--report-dir", default=None, help="Where the JSON and HTML reports go [default: the pipeline's run.log_dir, else .curate/runs].")
def check(dataset_ref: str, expectations_file: str | None, pipeline_file: str | None, report_dir: str | None) -> None:
    """Validate DATASET at a version (default: latest) against expectations, as the publish gate does.

    The expectations come from --expectations FILE, from --pipeline FILE's `expectations:`, or
    else from the version's commit metadata (those its run's gate evaluated). Prints each failed
    expectation with its observed value and saves the validation result as JSON and an HTML
    page. Exit 0: every critical expectation passed; 5: one failed; 2: bad expectations or
    options; 4: no such dataset or version.
    """
    from rich.console import Console

    from ..cli import fail
    from ..store import parse_dataset_ref
    from .gate import check_version

    console = Console(stderr=True)
    path, version = parse_dataset_ref(dataset_ref)
    try:
        if expectations_file and pipeline_file:
            raise ConfigError("give --expectations or --pipeline, not both")
        log_dir = ".curate/runs"
        if pipeline_file:
            from ..config import load_pipeline

            pipeline = load_pipeline(pipeline_file)
            specs = pipeline.expectations
            log_dir = pipeline.config.run.log_dir
            if not specs:
                raise ConfigError(f"{pipeline_file}: the pipeline has no `expectations:`")
        elif expectations_file:
            specs = _specs_from_file(expectations_file, _columns(path, version))
        else:
            specs = _specs_from_version(path, version)
        if not specs:
            raise ConfigError("no expectations to check")
        info = check_version(specs, path, version, storage_options=None, report_dir=report_dir or log_dir, console=console)
    except CurateError as exc:
        fail(exc)
        return
    click.echo(f"{dataset_ref}: {info['statistics']['successful_expectations']} of {info['statistics']['evaluated_expectations']} expectations passed")
    sys.exit(0)
