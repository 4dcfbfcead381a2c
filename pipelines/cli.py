"""The ``curate`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from curate._version import __version__

from .errors import ConfigError, CurateError

EXIT_CODES = """\b
Exit codes:
  0  success
  1  the run failed (see the log file it names)
  2  invalid pipeline file or command line: nothing was run or written
  3  bad input data (a malformed record with on_error: fail, or an unreadable input file)
  4  dataset missing or unreadable
  5  the publish gate failed: the output broke an expectation, nothing was published
  6  too many rows failed for a transient reason (an engine or the network down):
     nothing was published; run again when it is back (the rows are retried)
  130 interrupted (Ctrl-C): no version was written
"""

err_console = Console(stderr=True)
out_console = Console()


def _clean(text: str) -> str:
    from .failures import clean_text

    return clean_text(text)


def fail(exc: CurateError) -> None:
    """Every problem on its own ``error:`` line (validation reports them all), hints under them;
    no terminal colour codes from the message, nothing cut off."""
    for line in _clean(exc.message).splitlines():
        if line.startswith("  hint: "):
            err_console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    if exc.hint:
        err_console.print(f"  hint: {_clean(exc.hint)}", highlight=False, markup=False, soft_wrap=True)
    sys.exit(exc.exit_code)


class _Commands(click.Group):
    """Built-in commands plus those registered as ``curate.commands`` entry points, loaded only
    when named (``curate run`` imports no feature's command module)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from .registry import command_entry_points

        return sorted({*super().list_commands(ctx), *command_entry_points()})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # registered commands are named, not imported, in --help
        from .registry import command_entry_points

        rows = []
        plugins = command_entry_points()
        for name in self.list_commands(ctx):
            cmd = super().get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
            elif name in plugins:
                rows.append((name, f"see `curate {name} --help` ({plugins[name].module})"))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        from .registry import command_entry_points

        ep = command_entry_points().get(name)
        if ep is None:
            return None
        try:
            loaded = ep.load()
        except ImportError as exc:
            return click.Command(name, help=f"(unavailable: {exc}; install the extra it needs)", callback=lambda _e=exc: _missing(name, _e))
        return loaded if isinstance(loaded, click.Command) else None


def _missing(name: str, exc: BaseException) -> None:
    err_console.print(f"[bold red]error:[/] `curate {name}` is unavailable: {exc}", highlight=False)
    sys.exit(2)


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.version_option(__version__, prog_name="curate")
def cli() -> None:
    """curate: data curation pipelines for training small language models.

    A pipeline file (YAML) names an input, a list of stages and an output dataset.
    `curate run` executes it on Ray (a local Ray started in-process by default) and
    writes one new version of a Delta Lake dataset; `curate versions` and
    `curate show` inspect what was written.
    """


@cli.command()
@click.argument("pipeline_file", type=click.Path(dir_okay=False))
@click.option("--progress/--no-progress", default=None, help="Live per-stage progress (default: on when stderr is a terminal).")
@click.option("--run-key", metavar="KEY", default=None,
              help="Idempotency key (e.g. an Airflow run id): if KEY was already committed to the dataset, "
                   "publish nothing and exit 0; otherwise it is recorded in this run's commit.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Reuse the work of an earlier unfinished run with the same config and inputs (its run journal).")
@click.option("--dry-run", is_flag=True, help="Validate and print what each stage plans (e.g. a generation grid's size, "
                                               "prompts, estimated tokens and time); start nothing, write nothing.")
def run(pipeline_file: str, progress: bool | None, run_key: str | None, resume: bool, dry_run: bool) -> None:
    """Run PIPELINE_FILE and write one new version of its output dataset.

    The file is validated completely before Ray starts (keys, stage params, input paths, and
    that every column a stage reads is produced before it). The run writes Parquet shards and
    commits them atomically as one Delta version (with run metadata: config, inputs, per-stage
    counts, timings); an interrupted run leaves the dataset at its previous version, and running
    the same command again resumes it: read tasks an earlier attempt finished are not redone.
    A log file per run goes to run.log_dir (default .curate/runs/).

    \b
    Minimal pipeline:
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
    from .config import load_pipeline
    from .runner import run_pipeline

    try:
        pipeline = load_pipeline(pipeline_file)
        if dry_run:
            _dry_run(pipeline)
            return
        run_pipeline(pipeline, console=err_console, progress=progress, run_key=run_key, resume=resume)
    except CurateError as exc:
        fail(exc)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted:[/] no version was written")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("CURATE_DEBUG"):
            raise
        from .failures import advice_for, describe_failure
        from .runner import current_log_file

        what, where = describe_failure(exc)
        err_console.print(f"[bold red]error:[/] the run failed: {escape(what)}", highlight=False, soft_wrap=True)
        if where:
            err_console.print(f"  raised at {where}", highlight=False, markup=False, soft_wrap=True)
        advice = advice_for(what)
        if advice:
            err_console.print(f"  hint: {advice}", highlight=False, markup=False, soft_wrap=True)
        err_console.print(f"  the traceback is in {current_log_file() or 'the run log'}; no version was written (set CURATE_DEBUG=1 to see it here)", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)


def _dry_run(pipeline: Any) -> None:
    """``curate run --dry-run``: the plan check, then each stage's ``describe_plan()``."""
    from . import fs
    from .plan import stage_labels
    from .runner import validate_plan

    files, columns = validate_plan(pipeline)
    out = pipeline.config.output
    out_console.print(f"dry run of {pipeline.source}: {len(files)} input files -> {out.dataset} (nothing is run or written)", highlight=False)
    from .preflight import since_last

    for path, (since, read_by) in zip(pipeline.config.input.paths if pipeline.config.input else [], (since_last(pipeline) or {}).values()):
        what = "everything (no version of the output read it yet)" if since is None else f"what was added after version {since} (read by the output's version {read_by})"
        out_console.print(f"  input {path} (since_version: last): {what}", highlight=False)
    for label, stage in zip(stage_labels(pipeline.stages), pipeline.stages):
        stage.bind_output(fs.table_uri(out.dataset), out.storage_options)
        plan = stage.describe_plan()
        out_console.print(f"  - {label}" + ("" if plan else " (no plan to describe)"), highlight=False)
        for key, value in (plan or {}).items():
            out_console.print(f"      {key}: {value}", highlight=False)
    out_console.print(f"  columns: {', '.join(columns)}", highlight=False)


@cli.command()
@click.argument("pipeline_file", type=click.Path(dir_okay=False))
def validate(pipeline_file: str) -> None:
    """Check PIPELINE_FILE without running it: YAML, keys, stage types and params, input paths.

    Also checks that every column a stage reads is produced by the input or an earlier stage.
    Exits 0 and prints the stages when valid; exits 2 with the problem's file, line and key
    otherwise. Nothing is started or written.
    """
    from .config import load_pipeline
    from .runner import validate_plan

    try:
        try:
            pipeline = load_pipeline(pipeline_file)
        except ConfigError as exc:
            raise _with_expectation_columns(pipeline_file, exc) from None
        files, columns = validate_plan(pipeline)
    except CurateError as exc:
        fail(exc)
    out_console.print(f"{pipeline_file}: valid ({len(files)} input files, {sum(f.size for f in files):,} bytes)", highlight=False)
    for s in pipeline.stages:
        run_ = f" run: {json.dumps(s._overrides)}" if s._overrides else ""
        out_console.print(f"  - {s.name}: {json.dumps(s.params.model_dump(mode='json'))}{run_}", highlight=False)
    out_console.print(f"  columns: {', '.join(columns)}", highlight=False)
    if pipeline.expectations:
        out_console.print(f"  expectations: {len(pipeline.expectations)} (checked before publishing)", highlight=False)
    out_console.print(f"  -> {pipeline.config.output.dataset}", highlight=False)


def _with_expectation_columns(pipeline_file: str, exc: ConfigError) -> ConfigError:
    """When only the ``expectations:`` of a pipeline file are wrong (a bad kwarg), the columns they
    name are checked too, against the output the rest of the file makes: every problem at once."""
    import dataclasses

    from .config import parse_pipeline
    from .expectations.spec import parse_expectations
    from .runner import validate_plan
    from .yamlsource import load_yaml

    try:
        located = load_yaml(pipeline_file)
        if not isinstance(located.data, dict) or not located.data.get("expectations"):
            return exc
        rest = dataclasses.replace(located, data={k: v for k, v in located.data.items() if k != "expectations"})
        _, columns = validate_plan(parse_pipeline(rest))
    except Exception:  # the rest of the file has problems too: they are in `exc` already
        return exc
    try:
        parse_expectations(located.data["expectations"], located, Path(pipeline_file).resolve().parent, columns=(columns, "the output"))
    except ConfigError as every:
        return every
    return exc


@cli.command()
@click.argument("dataset")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def versions(dataset: str, as_json: bool) -> None:
    """List the versions of DATASET (a path or URL), newest first, with each run's counts."""
    from .store import history

    try:
        entries = history(dataset)
    except CurateError as exc:
        fail(exc)
    if as_json:
        click.echo(json.dumps(entries, indent=2, default=str))
        return
    # readable at 80 columns: one line per version (nothing wraps or is elided); the seconds, the
    # inputs column and the config fingerprint's tail only where the terminal is wide enough
    wide = out_console.width >= 96
    table = Table(title=dataset, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, padding=0)
    cols = ("version", "time (UTC)", "run", "rows", "dropped", *(("inputs",) if wide else ()), "config")
    for col in cols:
        table.add_column(col, justify="right" if col in ("version", "rows", "dropped", "inputs") else "left", no_wrap=True)
    for e in entries:
        run_ = e["run"]
        when = _fmt_time(e.get("timestamp"), seconds=wide)
        fp = str(run_.get("config_fingerprint", ""))
        table.add_row(
            str(e["version"]),
            when,
            run_.get("run_id", e.get("operation") or ""),
            f"{run_['rows']:,}" if "rows" in run_ else "",
            f"{run_['rows_in'] - run_['rows']:,}" if "rows_in" in run_ else "",
            *((str(len(run_.get("inputs", []))) if run_ else "",) if wide else ()),
            fp if wide else fp[:8],
        )
    out_console.print(table)


def _fmt_time(ts: Any, seconds: bool = True) -> str:
    from datetime import datetime, timezone

    if isinstance(ts, (int, float)):
        return datetime.fromtimestamp(ts / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return str(ts or "")


@cli.command()
@click.argument("dataset_ref", metavar="DATASET[@VERSION]")
@click.option("--files", "list_files", is_flag=True, help="Print only the Parquet shard URIs (one per line), for training loaders.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
@click.option("--config", "show_config", is_flag=True, help="Also print the resolved pipeline config of the run.")
def show(dataset_ref: str, list_files: bool, as_json: bool, show_config: bool) -> None:
    """Describe DATASET at a version (default: latest): schema, rows, shards, per-stage stats.

    \b
    Examples:
      curate show out/web
      curate show out/web@0 --config
      curate show out/web --files > shards.txt
    """
    from .store import open_table, parse_dataset_ref, run_metadata

    path, version = parse_dataset_ref(dataset_ref)
    try:
        dt = open_table(path, version)
        v = int(dt.version())
        files = dt.file_uris()
        if list_files:
            for f in files:
                click.echo(f)
            return
        meta = run_metadata(path, v)
        adds = dt.get_add_actions(flatten=True)
        rows = sum(x or 0 for x in adds.column("num_records").to_pylist()) if adds.num_rows else 0
        size = sum(adds.column("size_bytes").to_pylist()) if adds.num_rows else 0
        import pyarrow as pa

        schema = pa.schema(dt.schema().to_arrow())
    except CurateError as exc:
        fail(exc)
    info: dict[str, Any] = {
        "dataset": path,
        "version": v,
        "rows": rows,
        "shards": len(files),
        "bytes": size,
        "schema": {f.name: str(f.type) for f in schema},
        "run": meta,
    }
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    c = out_console
    c.print(f"[bold]{path}[/] version {v}: {rows:,} rows in {len(files)} shards, {size / 1e6:,.1f} MB", highlight=False)
    c.print("schema: " + ", ".join(f"{k}: {t}" for k, t in info["schema"].items()), highlight=False)
    if meta:
        c.print(f"run {meta.get('run_id')} of {meta.get('pipeline_file')} (curate {meta.get('curate_version')}, config {meta.get('config_fingerprint')})", highlight=False)
        t = meta.get("timings", {})
        c.print(f"timings: {', '.join(f'{k} {v_}s' for k, v_ in t.items())}", highlight=False)
        c.print(f"inputs: {len(meta.get('inputs', []))} files, {sum(i.get('size') or 0 for i in meta.get('inputs', [])):,} bytes", highlight=False)
        if meta.get("dropped_dataset"):
            d = meta["dropped_dataset"]
            c.print(f"dropped rows: {d['path']}@{d['version']}", highlight=False)
        if meta.get("retried"):
            r = meta["retried"]
            c.print(f"retried: rows kept aside by version {r.get('rows_from_version')} ({r.get('files')} files) and by a failed run "
                    f"({r.get('files_from_journal')} files), fed back at the stage they failed in", highlight=False)
        if meta.get("pending"):
            p = meta["pending"]
            by = ", ".join(f"{k} {n:,} ({p.get('reasons', {}).get(k, '')})" for k, n in p.get("by_stage", {}).items())
            c.print(f"[yellow]pending:[/] {p['rows']:,} rows failed for a transient reason, kept aside for the next run: {escape(by)}", highlight=False)
        if meta.get("expectations"):
            st = meta["expectations"].get("statistics", {})
            c.print(f"expectations: {st.get('successful_expectations')} of {st.get('evaluated_expectations')} passed before publishing "
                    "(`curate check` re-runs them)", highlight=False)
        from .progress import summary_table

        c.print(summary_table(meta.get("stages", []), "stages"))
        if show_config:
            import yaml

            c.print(yaml.safe_dump(meta.get("config", {}), sort_keys=False), highlight=False)
    else:
        c.print("(this version was not written by curate run: no run metadata)")


@cli.command()
@click.argument("dataset")
@click.option("--older-than", "minutes", type=click.FloatRange(min=0), default=None, metavar="MINUTES",
              help="Keep files younger than this of runs not known to have ended (a run may still be writing them) "
                   "[default: 60]. Files of a run known to have ended (killed or failed) go at any age.")
@click.option("--journals", is_flag=True,
              help="Also delete the shards an unfinished run's resume journal names, and that journal (no resume then).")
@click.option("--delete", is_flag=True, help="Delete them; without it, only list what would be deleted.")
def vacuum(dataset: str, minutes: float | None, journals: bool, delete: bool) -> None:
    """Remove shards that no version of DATASET (or of its dropped-rows table) references.

    Such shards are left by runs that were killed or failed. Nothing is committed: the version
    history stays as it is and every version stays readable. Kept: shards of a run in progress,
    shards an unfinished run's journal names (the next run with the same config reuses them;
    --journals removes them and the journal), and files younger than --older-than minutes of
    runs not known to have ended. Lists by default; --delete removes them.
    """
    from .vacuum import VACUUM_MINUTES, apply_vacuum, plan_vacuum

    try:
        plan = plan_vacuum(dataset, VACUUM_MINUTES if minutes is None else minutes, journals)
    except CurateError as exc:
        fail(exc)
    for uri, _ in plan.delete:
        click.echo(uri)
    if delete:
        apply_vacuum(plan)
    size = sum(s for _, s in plan.delete)
    verb = "deleted" if delete else "would be deleted (use --delete)"
    tables = " and ".join(f"{t} ({plan.versions[t]} versions)" for t in plan.tables)
    err_console.print(f"{len(plan.delete)} unreferenced files ({size / 1e6:,.1f} MB) {verb}; every version of {tables} kept, none added",
                      highlight=False, markup=False, soft_wrap=True)
    for why, n in plan.kept.items():
        err_console.print(f"  kept {n} unreferenced files {why}", highlight=False, markup=False, soft_wrap=True)
    if journals and plan.dead_attempts:
        err_console.print(f"  {'removed' if delete else 'would remove'} {len(plan.dead_attempts)} unfinished run journal(s)", highlight=False, markup=False)


@cli.command()
@click.argument("name", required=False)
def stages(name: str | None) -> None:
    """List the available stage types, or describe stage NAME's params."""
    from .registry import builtin_stages, resolve_stage

    if name is None:
        table = Table(title="stages", title_justify="left")
        table.add_column("type")
        table.add_column("kind")
        table.add_column("description")
        from .stage import stage_kind

        for key, cls in sorted(builtin_stages().items()):
            kind = stage_kind(cls)
            if cls.stateful:
                kind += ", model"
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            table.add_row(key, kind, doc)
        out_console.print(table)
        return
    try:
        cls = resolve_stage(name)
    except CurateError as exc:
        fail(exc)
    from .stage import stage_kind

    out_console.print(f"[bold]{name}[/] ({stage_kind(cls)}): {(cls.__doc__ or '').strip()}", highlight=False)
    res = cls.resources
    out_console.print(
        f"reads: {', '.join(cls.reads) or '-'}; writes: {', '.join(cls.writes) or '-'} (some stages take them from their params)\n"
        f"run defaults: batch_size {cls.batch_size}, cpus {res.cpus:g}, gpus {res.gpus:g}, "
        f"concurrency {cls.concurrency or 'auto'}, max_retries {cls.max_retries}"
        f"{', actor pool (holds a model)' if cls.stateful else ''}; override with `run:` beside the params",
        highlight=False,
    )
    table = Table(title="params", title_justify="left")
    for col in ("param", "type", "default", "description"):
        table.add_column(col)
    for pname, field in cls.Params.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        ann = field.annotation
        shown = ann.__name__ if isinstance(ann, type) else str(ann).replace("typing.", "")
        table.add_row(pname, shown, default, field.description or "")
    out_console.print(table)


def main() -> None:
    cli(prog_name="curate")


if __name__ == "__main__":
    main()
