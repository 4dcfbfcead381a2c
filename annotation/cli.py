"""``curate annotate ...``: run the annotators' web app and administer it (a ``curate.commands``
entry point). Admin work happens only here, on the machine that holds the data: the app has no
admin endpoints."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable

import click

from .settings import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_MIN_RECORDING_SECONDS,
    DEFAULT_MIN_SECONDS,
    DEFAULT_RATE_LIMIT,
    DEFAULT_TARGET_SECONDS,
    Settings,
    default_dataset,
    default_db_url,
    default_store_url,
)

LOCATIONS = """\b
Locations (each command): --db URL (default sqlite:///./annotation-data/annotation.db, or
$CURATE_ANNOTATION_DB; Postgres: postgresql+psycopg://user:pw@host/db), --store URL (images and
clips by SHA-256; default ./annotation-data/blobs, or $CURATE_ANNOTATION_STORE; any fsspec URL).
$CURATE_ANNOTATION_DATA moves the ./annotation-data folder.
"""


def _fail(message: str, hint: str | None = None, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"  hint: {hint}", err=True)
    sys.exit(code)


def _locations(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--store", "store_url", metavar="URL", default=None,
                     help="Blob store for images and clips (default: $CURATE_ANNOTATION_STORE or ./annotation-data/blobs).")(f)
    f = click.option("--db", "db_url", metavar="URL", default=None,
                     help="Metadata database URL (default: $CURATE_ANNOTATION_DB or SQLite in ./annotation-data).")(f)
    return f


def _open(db_url: str | None, store_url: str | None) -> tuple[Any, Any]:
    from sqlalchemy.exc import SQLAlchemyError

    from .db import Database
    from .store import BlobStore

    url = db_url or default_db_url()
    try:
        db = Database(url)
        db.create_all()
    except (SQLAlchemyError, ValueError, OSError) as exc:
        _fail(f"cannot open the database {url}: {' '.join(str(exc).split())[:300]}",
              "check --db (e.g. sqlite:///path/annotation.db or postgresql+psycopg://user:pw@host/db)")
    return db, BlobStore(store_url or default_store_url())


@click.group(epilog=LOCATIONS)
def annotate() -> None:
    """Spoken image annotations: annotators describe images out loud in a web app.

    \b
    Try it:
      curate annotate import-images --samples  # or a folder of your images: import-images DIR
      curate annotate add-annotator alice      # prints alice's token on its last line
      curate annotate serve                    # http://127.0.0.1:8000, sign in with the token
      curate annotate export                   # submitted clips -> the clips dataset (Delta)
    """


@annotate.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@_locations
@click.option("--dataset", metavar="PATH", default=None,
              help="The clips dataset that --export-every appends to (default: $CURATE_ANNOTATION_DATASET or ./annotation-data/clips).")
@click.option("--max-upload-mb", default=DEFAULT_MAX_UPLOAD_MB, show_default=True, type=float,
              help="Largest upload accepted; a larger one is stopped while it streams (413).")
@click.option("--min-seconds", default=DEFAULT_MIN_SECONDS, show_default=True, type=float,
              help="Shortest clip accepted (decoded duration).")
@click.option("--max-seconds", default=DEFAULT_MAX_SECONDS, show_default=True, type=float,
              help="Longest clip accepted (decoded duration).")
@click.option("--target-seconds", nargs=2, type=float, default=DEFAULT_TARGET_SECONDS, show_default=True, metavar="MIN MAX",
              help="What the page aims a recording at (its timer and meter show the way there).")
@click.option("--min-recording-seconds", default=DEFAULT_MIN_RECORDING_SECONDS, show_default=True, type=float,
              help="A microphone recording shorter than this asks 'submit anyway?' before it is sent.")
@click.option("--rate-limit", default=DEFAULT_RATE_LIMIT, show_default=True, metavar="N/PERIOD",
              help="Uploads per annotator token: N/s, N/min or N/hour; 0 for no limit (429 with Retry-After past it).")
@click.option("--export-every", default=0.0, show_default=True, type=float, metavar="SECONDS",
              help="Also append new clips to --dataset every SECONDS from the server; 0 (default): only `curate annotate export` does.")
@click.option("--spool-dir", default=None, metavar="DIR",
              help="Where uploads are received before they are checked (default: ./annotation-data/spool).")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(host: str, port: int, db_url: str | None, store_url: str | None, dataset: str | None, max_upload_mb: float,
          min_seconds: float, max_seconds: float, target_seconds: tuple[float, float], min_recording_seconds: float,
          rate_limit: str, export_every: float, spool_dir: str | None, log_level: str) -> None:
    """Run the annotation web app (page at /, JSON API under /api, OpenAPI at /openapi.json).

    An upload is answered 201 only once its audio is stored durably (fsynced, renamed into the
    blob store) and its database row is committed; killed at any moment, the server loses no
    acknowledged clip.
    """
    s = Settings(db_url=db_url or default_db_url(), store_url=store_url or default_store_url(),
                 dataset=dataset or default_dataset(), max_upload_mb=max_upload_mb, min_seconds=min_seconds,
                 max_seconds=max_seconds, rate_limit=rate_limit, export_every=export_every,
                 target_seconds=(float(target_seconds[0]), float(target_seconds[1])), min_recording_seconds=min_recording_seconds)
    if spool_dir:
        s.spool_dir = spool_dir
    try:
        s.check()
    except ValueError as exc:
        _fail(str(exc))
    _open(s.db_url, s.store_url)  # a clear error for a bad --db before uvicorn starts
    from .app import serve as run

    click.echo(f"curate annotate: http://{host}:{port}/  (db {s.db_url}, store {s.store_url})", err=True)
    run(s, host=host, port=port, log_level=log_level)


@annotate.command("import-images")
@click.argument("folder", type=click.Path(exists=True, file_okay=False), required=False)
@click.option("--samples", is_flag=True, help="Import the sample images shipped with curate (instead of FOLDER).")
@click.option("--set", "set_name", default="default", show_default=True, help="The assigned set the images join.")
@_locations
def import_images_cmd(folder: str | None, samples: bool, set_name: str, db_url: str | None, store_url: str | None) -> None:
    """Import the images (png, jpeg, webp, gif) in FOLDER (or --samples) into an assigned set.

    Each image is checked with Pillow and stored by its SHA-256; the set's order is the file names'
    order. Importing the same files again adds nothing (an image already in the set is skipped).
    """
    from .images import import_images

    if (folder is None) == (not samples):
        _fail("give a FOLDER of images or --samples (one of them)", "curate annotate import-images --samples")
    if samples:
        from importlib import resources

        folder = str(resources.files("curate.annotation") / "sample_images")
    assert folder is not None
    db, store = _open(db_url, store_url)
    report = import_images(db, store, folder, set_name)
    for line in report.skipped:
        click.echo(f"skipped {line}", err=True)
    total = db.set_sizes().get(set_name, 0)
    click.echo(f"imported {report.added} new image(s) into set {set_name!r} ({report.already} already there, "
               f"{len(report.skipped)} skipped); the set holds {total}")


@annotate.command("add-annotator")
@click.argument("name")
@click.option("--set", "set_name", default="default", show_default=True, help="The image set this annotator works on.")
@_locations
def add_annotator(name: str, set_name: str, db_url: str | None, store_url: str | None) -> None:
    """Add an annotator and print their personal token, alone on the last line.

    The token is shown only now (the database keeps only its SHA-256): hand it to the annotator,
    who signs in with it on the page or sends it as `Authorization: Bearer TOKEN`.
    """
    db, _ = _open(db_url, store_url)
    if not name.strip() or len(name) > 100:
        _fail("an annotator's name must be 1 to 100 characters")
    try:
        ann, token = db.add_annotator(name.strip(), set_name)
    except ValueError as exc:
        _fail(str(exc), "choose another name")
    size = db.set_sizes().get(set_name, 0)
    click.echo(f"added annotator {ann.name} ({ann.id}), set {set_name!r} with {size} image(s)")
    if size == 0:
        click.echo(f"warning: set {set_name!r} has no images yet: `curate annotate import-images DIR --set {set_name}`", err=True)
    click.echo("token (shown once):")
    click.echo(token)


@annotate.command()
@_locations
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def progress(db_url: str | None, store_url: str | None, as_json: bool) -> None:
    """Each annotator's progress (images of their set done / total, clips, clips exported)."""
    from sqlalchemy import func, select

    db, _ = _open(db_url, store_url)
    Clip, ExportBatch = db.m.Clip, db.m.ExportBatch

    with db.session() as s:
        clips = dict(s.execute(select(Clip.annotator_id, func.count()).group_by(Clip.annotator_id)).all())
        exported = dict(s.execute(select(Clip.annotator_id, func.count()).join(ExportBatch, ExportBatch.id == Clip.export_batch)
                                  .where(ExportBatch.state == "done").group_by(Clip.annotator_id)).all())
    rows = []
    for ann in db.annotators():
        done, total = db.progress(ann)
        rows.append({"annotator": ann.name, "id": ann.id, "set": ann.set_name, "done": done, "total": total,
                     "clips": int(clips.get(ann.id, 0)), "exported": int(exported.get(ann.id, 0))})
    if as_json:
        click.echo(json.dumps({"annotators": rows, "sets": db.set_sizes()}, indent=2))
        return
    if not rows:
        click.echo("no annotators yet: `curate annotate add-annotator NAME`")
        return
    width = max(9, *(len(r["annotator"]) for r in rows))
    click.echo(f"{'annotator':<{width}}  {'set':<12} {'done':>10} {'clips':>6} {'exported':>8}")
    for r in rows:
        click.echo(f"{r['annotator']:<{width}}  {r['set']:<12} {r['done']:>4} of {r['total']:<3} {r['clips']:>6} {r['exported']:>8}")
    n, e = sum(r["clips"] for r in rows), sum(r["exported"] for r in rows)
    click.echo(f"{n} clip(s), {e} exported, {n - e} not yet exported")


@annotate.command()
@_locations
@click.option("--dataset", metavar="PATH", default=None,
              help="The clips dataset (a Delta table, local path or URL; default: $CURATE_ANNOTATION_DATASET or ./annotation-data/clips).")
def export(db_url: str | None, store_url: str | None, dataset: str | None) -> None:
    """Append the clips not yet exported to the clips dataset, as one new version.

    One row per clip (id, audio_uri, audio_sha256, audio_format, duration_s, image_id, image_uri,
    image_sha256, annotator_id, submitted_at); the dataset is only ever appended to, so a pipeline
    reads what is new since the version it read last. Safe to rerun and to kill: a clip is never
    appended twice (each export batch is committed with its own run key).
    """
    from curate.pipelines.errors import CurateError

    from .export import ExportError, export_clips

    db, store = _open(db_url, store_url)
    target = dataset or default_dataset()
    try:
        result = export_clips(db, store, target)
    except ExportError as exc:
        _fail(str(exc))
    except CurateError as exc:
        _fail(exc.message, exc.hint, code=exc.exit_code or 1)
    click.echo(result.describe())


__all__ = ["annotate"]
