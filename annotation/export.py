"""Submitted clips -> the clips dataset (a Delta table, append-only, one row per clip).

``curate annotate export`` (or the server with ``--export-every``) appends every clip not yet
exported as one new version. It is idempotent even when killed at any point:

1. in one database transaction, the unexported clips are assigned to a new *export batch*
   (state ``pending``); an export finds an earlier pending batch first and finishes it;
2. the batch's rows are written as one Parquet shard into the table folder (invisible until
   committed) and committed as one append whose run key is ``curate.annotate.export:<batch id>``
   (a Delta application transaction, :func:`curate.pipelines.store.commit`);
3. the batch is marked ``done`` with the version that holds it.

Killed between 2 and 3, the next export finds the pending batch, sees its run key already
committed and only marks it done: no clip is ever appended twice. Two exports racing on one batch
both try to commit the same run key; one wins, the other publishes nothing.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
import uuid
from typing import Any

import pyarrow as pa
from curate.pipelines import fs
from curate.pipelines import store as dstore
from curate.pipelines.errors import RunKeyCommittedError

from .db import Database, as_utc, utcnow
from .store import BlobStore

RUN_KEY_PREFIX = "curate.annotate.export:"

#: the clips dataset's columns (the contract the pipelines read)
SCHEMA = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("audio_uri", pa.string()),
        pa.field("audio_sha256", pa.string()),
        pa.field("audio_format", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("image_id", pa.string()),
        pa.field("image_uri", pa.string()),
        pa.field("image_sha256", pa.string()),
        pa.field("annotator_id", pa.string()),
        pa.field("submitted_at", pa.timestamp("us", tz="UTC")),
    ]
)


class ExportError(Exception):
    pass


@dataclasses.dataclass
class ExportResult:
    dataset: str
    rows: int  # clips this export appended (or found already appended by a killed export)
    version: int | None  # the dataset version holding them; None when there was nothing to export
    batch: str | None
    resumed: bool = False  # the batch was committed by another export, not by this one
    #: who committed it when not this export: "concurrent" (another export running now committed it
    #: first) or "earlier" (found committed: an export that stopped before recording it, or one
    #: running now that has not recorded it yet)
    committed_by: str | None = None

    def describe(self) -> str:
        """What happened, in a line for the user."""
        if self.version is None:
            return f"nothing new to export to {self.dataset}"
        if self.committed_by == "concurrent":
            return (f"another export running at the same time appended these {self.rows} clip(s) to {self.dataset} as version "
                    f"{self.version}: this one appended nothing")
        if self.committed_by == "earlier":
            return (f"these {self.rows} clip(s) were already in {self.dataset} as version {self.version} (appended by an export "
                    "that stopped before recording it, or by one running now): recorded as exported, nothing appended again")
        return f"appended {self.rows} clip(s) to {self.dataset} as version {self.version}"


def _open_batch(db: Database, dataset: str) -> Any | None:
    """The oldest pending batch of ``dataset``, else a new batch of every unexported clip."""
    from sqlalchemy import select, update

    Clip, ExportBatch = db.m.Clip, db.m.ExportBatch
    with db.session() as s, s.begin():
        pending = s.scalars(select(ExportBatch).where(ExportBatch.state == "pending").order_by(ExportBatch.created_at)).all()
        for b in pending:
            if b.dataset != dataset:
                raise ExportError(f"an unfinished export to {b.dataset} holds {b.rows} clip(s): run "
                                  f"`curate annotate export --dataset {b.dataset}` first (clips go to one dataset)")
        if pending:
            return pending[0]
        batch = ExportBatch(id=uuid.uuid4().hex, state="pending", rows=0, dataset=dataset, created_at=utcnow())
        s.add(batch)
        s.flush()
        res: Any = s.execute(update(Clip).where(Clip.export_batch.is_(None)).values(export_batch=batch.id))
        n = res.rowcount
        if not n:
            s.delete(batch)
            return None
        batch.rows = int(n)
    return batch


def _rows(db: Database, store: BlobStore, batch_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    Annotator, Clip, Image = db.m.Annotator, db.m.Clip, db.m.Image
    q = (
        select(Clip, Image)
        .join(Image, Image.id == Clip.image_id)
        .join(Annotator, Annotator.id == Clip.annotator_id)
        .where(Clip.export_batch == batch_id)
        .order_by(Clip.submitted_at, Clip.id)
    )
    with db.session() as s:
        return [
            {
                "id": clip.id,
                "audio_uri": store.uri(clip.audio_sha256),
                "audio_sha256": clip.audio_sha256,
                "audio_format": clip.audio_format,
                "duration_s": float(clip.duration_s),
                "image_id": img.id,
                "image_uri": store.uri(img.sha256),
                "image_sha256": img.sha256,
                "annotator_id": clip.annotator_id,
                "submitted_at": as_utc(clip.submitted_at),
            }
            for clip, img in s.execute(q).all()
        ]


def _finish(db: Database, batch_id: str, version: int) -> None:
    from sqlalchemy import update

    ExportBatch = db.m.ExportBatch
    with db.session() as s, s.begin():
        s.execute(update(ExportBatch).where(ExportBatch.id == batch_id).values(state="done", version=version))


def _write_shard(uri: str, batch_id: str, table: pa.Table, storage_options: dict[str, str] | None) -> dict[str, Any]:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    name = f"part-annotate-{batch_id}-{uuid.uuid4().hex[:12]}.zstd.parquet"
    data = buf.getvalue()
    fs.write_bytes(fs.join(uri, name), data, storage_options)
    return {"path": name, "size": len(data), "rows": table.num_rows,
            "info": json.dumps({"modification_time": int(time.time() * 1000)})}


def export_clips(db: Database, store: BlobStore, dataset: str, storage_options: dict[str, str] | None = None) -> ExportResult:
    """Append the clips not yet exported to ``dataset`` as one version (see the module docstring)."""
    uri = fs.table_uri(dataset)
    batch = _open_batch(db, uri)
    if batch is None:
        return ExportResult(uri, 0, None, None)
    key = RUN_KEY_PREFIX + batch.id
    version = dstore.committed_run_key(uri, key, storage_options)
    committed_by = "earlier" if version is not None else None
    if version is None:
        rows = _rows(db, store, batch.id)
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        shard = _write_shard(uri, batch.id, table, storage_options)
        meta = {"run_id": f"annotate-export-{batch.id[:12]}", "pipeline_file": "curate annotate export",
                "export_batch": batch.id, "rows": table.num_rows, "clip_store": store.url, "curate_version": _version()}
        try:
            version = dstore.commit(uri, [shard], mode="append", metadata=meta, storage_options=storage_options,
                                    default_schema=SCHEMA, run_key=key)
        except RunKeyCommittedError as exc:  # a racing export committed this batch first
            fs.remove_tree(fs.join(uri, shard["path"]), storage_options)
            version, committed_by = exc.version, "concurrent"
    assert version is not None
    _finish(db, batch.id, version)
    return ExportResult(uri, batch.rows, version, batch.id, committed_by is not None, committed_by)


def _version() -> str:
    from curate._version import __version__

    return str(__version__)


__all__ = ["SCHEMA", "ExportError", "ExportResult", "export_clips"]
