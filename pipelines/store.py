"""Datasets: a Delta Lake table per dataset, one atomic commit (= one version) per run.

Workers write Parquet shards into the table folder; nothing is visible until the driver's single
commit adds them to the Delta log. A run that dies before the commit leaves only unreferenced
files, which no reader sees (``curate vacuum`` removes them).

Commit metadata (``curate.run``, a JSON string in the commit's custom metadata) records the
run id, the resolved config and its fingerprint, the input files with sizes and modification
times, curate's version, per-stage counts, timings and the dropped-rows table's version.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow as pa

from .errors import DatasetError

METADATA_KEY = "curate.run"


def table_uri(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def _schema_of_files(uri: str, files: list[dict[str, Any]], storage_options: dict[str, str]) -> pa.Schema:
    import pyarrow.parquet as pq

    from .ray_adapter import _filesystem

    fs, base = _filesystem(uri, storage_options)
    schemas = []
    for f in files:
        schemas.append(pq.read_schema(f"{base.rstrip('/')}/{f['path']}", filesystem=fs))
    try:
        return pa.unify_schemas(schemas)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DatasetError(f"the shards written for {uri} have incompatible schemas: {exc}") from None


def commit(
    uri: str,
    files: list[dict[str, Any]],
    *,
    mode: str,
    metadata: dict[str, Any],
    storage_options: dict[str, str],
    default_schema: pa.Schema,
    name: str | None = None,
) -> int:
    """Atomically add ``files`` (written in the table folder) as one new version; returns it."""
    from deltalake import CommitProperties, DeltaTable
    from deltalake.exceptions import TableNotFoundError
    from deltalake.transaction import AddAction, create_table_with_add_actions

    schema = _schema_of_files(uri, files, storage_options) if files else default_schema
    actions = [
        AddAction(
            path=f["path"],
            size=int(f["size"]),
            partition_values={},
            modification_time=int(json.loads(f["info"]).get("modification_time", 0)),
            data_change=True,
            stats=json.dumps({"numRecords": int(f["rows"])}),
        )
        for f in files
    ]
    props = CommitProperties(custom_metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True, default=str)})
    opts = storage_options or None
    try:
        dt = DeltaTable(uri, storage_options=opts)
    except TableNotFoundError:
        from deltalake import Schema as DeltaSchema

        create_table_with_add_actions(
            uri, DeltaSchema.from_arrow(schema), actions, mode="overwrite", name=name, storage_options=opts, commit_properties=props
        )
        return 0
    current = dt.schema().to_arrow()
    target_schema = _merge_schema(pa.schema(current), schema, mode)
    dt.create_write_transaction(actions, mode=mode, schema=target_schema, commit_properties=props)
    return int(DeltaTable(uri, storage_options=opts).version())


def _merge_schema(current: pa.Schema, new: pa.Schema, mode: str) -> pa.Schema:
    if mode == "overwrite":
        return new
    try:
        return pa.unify_schemas([current, new])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DatasetError(f"cannot append: the new rows' schema does not match the dataset's: {exc}") from None


def open_table(path: str, version: int | None = None, storage_options: dict[str, str] | None = None) -> Any:
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    uri = table_uri(path)
    try:
        return DeltaTable(uri, version=version, storage_options=storage_options or None)
    except TableNotFoundError:
        raise DatasetError(f"no curate dataset at {path}", hint="a dataset is created by `curate run`") from None
    except Exception as exc:
        if version is not None:
            raise DatasetError(f"dataset {path} has no version {version}: {exc}") from None
        raise


def parse_dataset_ref(ref: str) -> tuple[str, int | None]:
    base, sep, ver = ref.rpartition("@")
    if sep and ver.isdigit():
        return base, int(ver)
    return ref, None


def history(path: str, storage_options: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One entry per version, newest first, with curate's run metadata decoded."""
    dt = open_table(path, storage_options=storage_options)
    out = []
    for entry in dt.history():
        meta = entry.get(METADATA_KEY)
        run = json.loads(meta) if isinstance(meta, str) else (meta or {})
        out.append({"version": entry.get("version"), "timestamp": entry.get("timestamp"), "operation": entry.get("operation"), "run": run})
    return out


def run_metadata(path: str, version: int, storage_options: dict[str, str] | None = None) -> dict[str, Any]:
    for entry in history(path, storage_options):
        if entry["version"] == version:
            return entry["run"]
    raise DatasetError(f"dataset {path} has no version {version}")
