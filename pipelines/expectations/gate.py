"""The publish gate: evaluate a pipeline's expectations on its staged shards before the commit.

``curate run`` calls :func:`gate_staged` after every shard is written and before the Delta
commit that publishes them; ``curate check`` calls :func:`check_version` on a committed version.
Both evaluate with :func:`evaluate` (parts of the data in parallel through ``mapper``: Ray tasks
in a run, in-process for ``curate check``), save the result as JSON and an HTML page, and
either return its summary (recorded in the commit metadata) or raise
:class:`ExpectationsFailedError` (exit 5) listing each failed expectation with its observed value.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from rich.console import Console
from rich.markup import escape

from .. import fs
from ..errors import ExpectationsFailedError
from . import aggregates
from .evaluate import GatePlan, Partial, evaluate_part, find_part, make_plan, merge, reduce_part, split
from .report import failure_lines, headline, save
from .result import finish, summary
from .spec import ExpectationSpec

log = logging.getLogger("curate")

#: runs ``fn(plan, part, storage_options)`` for every part, returns the results in order
Mapper = Callable[[Callable[..., Any], GatePlan, list[Any], dict[str, str]], list[Any]]


def local_mapper(fn: Callable[..., Any], plan: GatePlan, parts: list[Any], so: dict[str, str]) -> list[Any]:
    return [fn(plan, part, so) for part in parts]


def evaluate(specs: list[ExpectationSpec], files: list[tuple[str, int]], *, storage_options: dict[str, str] | None = None,
             previous_rows: int | None = None, mapper: Mapper | None = None, spill_uri: str | None = None,
             schema: Any = None) -> Any:
    """The GE validation result of ``specs`` on the shards ``files`` (``(uri, rows)``).
    ``spill_uri``: a folder the parts' hash counts go to (removed afterwards; default a local
    temporary folder: only for in-process parts). ``schema``: the version's schema, for a version
    without shards (0 rows)."""
    import tempfile

    so = storage_options or {}
    local = spill_uri is None
    spill = tempfile.mkdtemp(prefix="curate-gate-") if local else fs.join(spill_uri, uuid.uuid4().hex)  # type: ignore[arg-type]
    plan = make_plan(specs, sum(rows for _, rows in files), spill, so)
    parts = split(files)
    log.info("expectations: %d rows in %d shards, evaluated in %d parts (%s)", plan.total_rows, len(files), len(parts),
             ", ".join(f"{s.type}: {m}" for s, m in zip(plan.specs, plan.methods)))
    run = mapper or local_mapper
    try:
        partials = run(evaluate_part, plan, parts, so)
        total = functools.reduce(merge, partials, Partial())
        if total.schema is None and schema is not None:
            total.schema = schema
        groups = aggregates.bucket_groups({i: agg.spills for i, agg in total.aggs.items() if agg.spills})
        reduced: dict[int, tuple[int, int, Any]] = {}
        for i, distinct, dups, top in run(reduce_part, plan, groups, so):
            d0, r0, t0 = reduced.get(i, (0, 0, None))
            merged = (t0 or []) + top if isinstance(top, list) else aggregates.merge_top(t0, top)  # repeated hashes, or the top values
            reduced[i] = (d0 + distinct, r0 + dups, merged)
        examples = _repeated_rows(plan, parts, so, reduced, run)
    finally:
        try:
            fs.remove_tree(spill, so)
        except Exception as exc:  # the verdict stands; a leftover folder is only clutter
            log.warning("could not remove the gate's hash counts in %s: %r", spill, exc)
    return finish(plan, total, previous_rows, reduced, examples)


def _repeated_rows(plan: GatePlan, parts: list[Any], so: dict[str, str], reduced: dict[int, tuple[int, int, Any]],
                   run: Mapper) -> dict[int, list[tuple[Any, Any]]]:
    """For each failed uniqueness expectation, rows (id, value) whose value another row has too:
    one more pass over the columns it reads, only when it failed."""
    targets = {i: r[2][: aggregates.EXAMPLES] for i, r in reduced.items()
               if plan.specs[i].type in aggregates.UNIQUE and r[1] and isinstance(r[2], list) and r[2]}
    if not targets:
        return {}
    found: dict[int, list[tuple[Any, Any]]] = {i: [] for i in targets}
    for part in run(find_part, dataclasses.replace(plan, targets=targets), parts, so):
        for i, rows in part.items():
            found[i] = (found[i] + rows)[: aggregates.EXAMPLES]
    return found


def _judge(result: Any, reports: list[str], what: str, console: Console, seconds: float) -> dict[str, Any]:
    lines = failure_lines(result)
    info = summary(result)
    info["seconds"] = round(seconds, 3)
    info["reports"] = reports
    if not result.success:
        log.info("%s: expectations failed:\n%s", what, "\n".join(lines))  # (info: `curate check` has no log file)
        raise ExpectationsFailedError(
            f"{what}: {headline(result)}; the failed ones:\n" + "\n".join(lines),
            hint=f"the validation result: {reports[0]} (page: {reports[1]})",
            summary=info,
            reports=reports,
        )
    msg = f"expectations: {headline(result)} ({seconds:.1f}s); report {reports[1]}"
    log.info(msg)
    console.print(escape(msg), highlight=False, soft_wrap=True)
    for line in lines:  # failures that do not block (severity warning or info)
        log.info("warning: %s", line)
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    return info


def _version_files(uri: str, version: int | None, so: dict[str, str]) -> tuple[list[tuple[str, int]], int] | None:
    """The shards of a version (latest if None) with their rows, and its row count; None when
    there is no table yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        dt = DeltaTable(uri, version=version, storage_options=so or None)
    except TableNotFoundError:
        return None
    adds = dt.get_add_actions(flatten=True)
    files = []
    for path, rows in zip(adds.column("path").to_pylist(), adds.column("num_records").to_pylist()):
        files.append((path if fs.is_url(path) else fs.join(uri, unquote(path)), int(rows or 0)))
    return files, sum(r for _, r in files)


def _version_schema(uri: str, version: int | None, so: dict[str, str]) -> Any:
    """A version's Arrow schema from its log (a version without shards still has one)."""
    from ..store import delta_schema

    try:
        return delta_schema(uri, version, so)
    except Exception:
        return None


def gate_staged(specs: list[ExpectationSpec], main_uri: str, main_files: list[dict[str, Any]], *, mode: str,
                storage_options: dict[str, str], log_file: str, run_id: str, console: Console, mapper: Mapper | None = None) -> dict[str, Any]:
    """Evaluate ``specs`` on the version this run is about to publish: its staged shards (and, in
    append mode, the latest version's shards it adds to). Nothing is committed here."""
    t0 = time.time()
    staged = [(fs.join(main_uri, f["path"]), int(f["rows"])) for f in main_files]
    latest = _version_files(main_uri, None, storage_options)
    previous_rows = latest[1] if latest is not None else None
    files = (latest[0] if latest is not None and mode == "append" else []) + staged
    console.print(f"checking {len(specs)} expectations on {sum(r for _, r in files):,} rows before publishing", highlight=False, soft_wrap=True)
    schema = _version_schema(main_uri, None, storage_options) if latest is not None and mode == "append" else None
    result = evaluate(specs, files, storage_options=storage_options, previous_rows=previous_rows, mapper=mapper,
                      spill_uri=fs.join(main_uri, "_curate_gate"), schema=schema)
    reports = save(result, Path(log_file).parent, run_id, subject=f"{main_uri}, run {run_id} (staged, before publishing)")
    return _judge(result, reports, "the publish gate failed, nothing was published", console, time.time() - t0)


def check_version(specs: list[ExpectationSpec], dataset: str, version: int | None, *, storage_options: dict[str, str] | None,
                  report_dir: str, console: Console, mapper: Mapper | None = None) -> dict[str, Any]:
    """Evaluate ``specs`` on a committed version (``curate check``); the previous version's row
    count is the one before it."""
    from ..errors import DatasetError

    t0 = time.time()
    so = storage_options or {}
    uri = fs.table_uri(dataset)
    try:
        found = _version_files(uri, version, so)
    except Exception as exc:
        raise DatasetError(f"dataset {dataset} has no version {version}: {str(exc).splitlines()[0]}") from None
    if found is None:
        raise DatasetError(f"no curate dataset at {dataset}", hint="a dataset is created by `curate run`")
    files, _ = found
    from deltalake import DeltaTable

    v = int(DeltaTable(uri, version=version, storage_options=so or None).version())
    schema = _version_schema(uri, v, so)
    if schema is not None:  # a column the version lacks is a mistake in the expectations (exit 2), not a failed check
        from .spec import check_columns

        check_columns(specs, list(schema.names), where=f"{dataset}@{v}")
    previous = _version_files(uri, v - 1, so) if v > 0 else None
    result = evaluate(specs, files, storage_options=so, previous_rows=previous[1] if previous else None, mapper=mapper,
                      schema=schema)
    stem = f"check-{Path(uri.rstrip('/')).name}-v{v}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    reports = save(result, report_dir, stem, subject=f"{dataset}@{v}")
    return _judge(result, reports, f"{dataset}@{v} does not meet its expectations", console, time.time() - t0)
