"""The one filesystem/path helper: local paths and URLs (``s3://``, ``gs://``, ``memory://`` ...) alike.

Every function takes the dataset's ``storage_options`` (the YAML's ``storage_options`` mapping). A
location is either a local path (made absolute) or a URL, which is kept as it is:

- local: :class:`pyarrow.fs.LocalFileSystem`;
- a URL with ``storage_options``: the fsspec filesystem built with them, wrapped for pyarrow
  (``PyFileSystem(FSSpecHandler(...))``);
- a URL without: pyarrow's native filesystem for the scheme (S3, GCS, ABFS, HDFS; credentials from
  the environment), or fsspec's when pyarrow has none for it (``memory://``, ``sftp://``, ...).

:func:`write_bytes` is atomic: a reader sees the old content or the new one, never a part. Locally
the bytes go to a temporary name in the same folder (flushed and fsynced) that is then renamed over
the target; on object stores a single PUT already is atomic (an object appears whole when its upload
completes); other URL filesystems get a temporary name and a move.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

StorageOptions = dict[str, str] | None

#: in the names of write_bytes' temporary files; list_dir never lists them (one a crash left behind
#: must not pass for a finished file)
TMP_MARK = ".curate-tmp-"
#: schemes whose single PUT is atomic (an object becomes visible whole, or not at all)
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "azure", "r2", "oss"})


def is_url(path: str) -> bool:
    return "://" in path


def scheme(uri: str) -> str:
    """``"s3"`` for ``s3://b/k``; ``""`` for a local path."""
    return uri.split("://", 1)[0].lower() if is_url(uri) else ""


def table_uri(path: str) -> str:
    """A dataset location as stored and passed to deltalake: absolute local path, or the URL as it is."""
    return path if is_url(path) else os.path.abspath(path)


def join(uri: str, *parts: str) -> str:
    """``uri/part1/part2`` with exactly one ``/`` between the pieces (local paths and URLs)."""
    out = uri
    for part in parts:
        part = part.strip("/")
        if part:
            out = out + part if out.endswith("/") else f"{out}/{part}"
    return out


def filesystem(uri: str, storage_options: StorageOptions = None, *, create: bool = False) -> tuple[pafs.FileSystem, str]:
    """``(pyarrow filesystem, path inside it)`` for a local path or URL; ``create`` makes the folder."""
    if not is_url(uri):
        path = os.path.abspath(uri)
        if create:
            os.makedirs(path, exist_ok=True)
        return pafs.LocalFileSystem(), path
    fs: pafs.FileSystem | None = None
    path = ""
    if not storage_options:
        try:
            fs, path = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
            fs = None  # a scheme pyarrow has no filesystem for: fsspec may have one
    if fs is None:
        import fsspec.core

        fsspec_fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_fs))
    if create:
        fs.create_dir(path, recursive=True)
    return fs, path


def _tmp_name(name: str) -> str:
    return f".{name}{TMP_MARK}{uuid.uuid4().hex[:12]}"


def _info(fs: pafs.FileSystem, path: str) -> Any:
    return fs.get_file_info(path)


def makedirs(uri: str, storage_options: StorageOptions = None) -> None:
    """Create the folder and its parents (nothing to do if it exists; a no-op on object stores)."""
    filesystem(uri, storage_options, create=True)


def exists(uri: str, storage_options: StorageOptions = None) -> bool:
    fs, path = filesystem(uri, storage_options)
    return bool(_info(fs, path).type != pafs.FileType.NotFound)


def read_bytes(uri: str, storage_options: StorageOptions = None) -> bytes:
    """The file's bytes; :class:`FileNotFoundError` if there is none."""
    fs, path = filesystem(uri, storage_options)
    if _info(fs, path).type != pafs.FileType.File:
        raise FileNotFoundError(f"no such file: {uri}")
    with fs.open_input_stream(path) as f:
        return bytes(f.read())


def write_bytes(uri: str, data: bytes, storage_options: StorageOptions = None) -> None:
    """Write ``data`` to ``uri`` atomically, replacing any previous content; parent folders are created."""
    if not is_url(uri):
        path = os.path.abspath(uri)
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, _tmp_name(os.path.basename(path)))
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return
    fs, path = filesystem(uri, storage_options)
    parent = posixpath.dirname(path.rstrip("/"))
    if parent:
        fs.create_dir(parent, recursive=True)
    if scheme(uri) in OBJECT_STORE_SCHEMES:
        with fs.open_output_stream(path) as f:  # one PUT (or multipart upload): visible whole on close
            f.write(data)
        return
    tmp = posixpath.join(parent, _tmp_name(posixpath.basename(path)))
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        if _info(fs, path).type == pafs.FileType.File:
            fs.delete_file(path)  # some filesystems (HDFS) refuse to move onto an existing file
        fs.move(tmp, path)
    except BaseException:
        try:
            if _info(fs, tmp).type == pafs.FileType.File:
                fs.delete_file(tmp)
        except Exception:
            pass
        raise


def list_dir(uri: str, storage_options: StorageOptions = None) -> list[str]:
    """Names (not paths) of the entries of a folder, sorted; empty if it does not exist.

    Temporary files of an unfinished :func:`write_bytes` are left out."""
    fs, path = filesystem(uri, storage_options)
    if _info(fs, path).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True, recursive=False))
    names = (posixpath.basename(i.path.rstrip("/")) for i in infos)
    return sorted(n for n in names if TMP_MARK not in n)


def remove_tree(uri: str, storage_options: StorageOptions = None) -> None:
    """Remove a folder with everything in it (or a single file); nothing to do if it does not exist."""
    fs, path = filesystem(uri, storage_options)
    kind = _info(fs, path).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pafs.FileType.File:
        fs.delete_file(path)


__all__ = [
    "OBJECT_STORE_SCHEMES",
    "TMP_MARK",
    "exists",
    "filesystem",
    "is_url",
    "join",
    "list_dir",
    "makedirs",
    "read_bytes",
    "remove_tree",
    "scheme",
    "table_uri",
    "write_bytes",
]
