"""Content-addressed blob store (images and clips) on a local folder or any fsspec URL.

A blob is named by the SHA-256 of its bytes: ``ROOT/ab/cd/abcd...`` (two folder levels keep
folders small). Storing bytes that are already there is a no-op, so a retried upload never
duplicates and never rewrites a blob a reader may be reading.

Durability: locally a blob is written to a temporary name in its final folder, flushed and
fsynced, renamed onto its name (atomic), and the folder is fsynced so the rename itself survives a
crash; folders created on the way are fsynced into their parents. When :meth:`BlobStore.put_file`
returns, the blob is on disk under its name. On object stores (s3, gs, az, ...) a single PUT is
atomic and durable when it returns; other fsspec filesystems get a temporary name and a move.
Temporary names carry ``.curate-tmp-`` so that a crash leftover is never taken for a blob.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from typing import IO, Any

from curate.pipelines.fs import OBJECT_STORE_SCHEMES, TMP_MARK, is_url, scheme

CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _makedirs_durable(path: str) -> None:
    """Create ``path`` and missing parents, fsyncing each new folder into its parent."""
    missing = []
    p = path
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            continue
        _fsync_dir(os.path.dirname(folder))


class BlobStore:
    """Blobs by SHA-256 under ``url`` (a local folder or an fsspec URL)."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.storage_options = dict(storage_options or {})
        self.local = not is_url(url)
        self.url = os.path.abspath(url) if self.local else url.rstrip("/")
        self._fs: Any = None
        self._root = self.url
        if self.local:
            os.makedirs(self.url, exist_ok=True)
        else:
            import fsspec.core

            self._fs, self._root = fsspec.core.url_to_fs(self.url, **self.storage_options)

    def __repr__(self) -> str:
        return f"BlobStore({self.url!r})"

    # ------------------------------------------------------------ names

    def _rel(self, sha256: str) -> str:
        if not is_sha256(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def uri(self, sha256: str) -> str:
        """Where the blob lives: an absolute local path, or a URL with the store's scheme."""
        rel = self._rel(sha256)
        return os.path.join(self.url, *rel.split("/")) if self.local else f"{self.url}/{rel}"

    def _path(self, sha256: str) -> str:
        return self.uri(sha256) if self.local else posixpath.join(self._root, self._rel(sha256))

    def local_path(self, sha256: str) -> str | None:
        return self.uri(sha256) if self.local else None

    # ------------------------------------------------------------ reading

    def exists(self, sha256: str) -> bool:
        if self.local:
            return os.path.isfile(self._path(sha256))
        return bool(self._fs.exists(self._path(sha256)))

    def size(self, sha256: str) -> int:
        if self.local:
            return os.path.getsize(self._path(sha256))
        return int(self._fs.size(self._path(sha256)))

    def open(self, sha256: str) -> IO[bytes]:
        """The blob for reading; :class:`FileNotFoundError` if it is not stored."""
        if self.local:
            return open(self._path(sha256), "rb")
        if not self._fs.exists(self._path(sha256)):
            raise FileNotFoundError(self.uri(sha256))
        return self._fs.open(self._path(sha256), "rb")  # type: ignore[no-any-return]

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as f:
            return f.read()

    # ------------------------------------------------------------ writing

    def put_file(self, path: str, sha256: str | None = None) -> str:
        """Store the file at ``path`` (its SHA-256 computed unless given); returns the SHA-256.
        Durable when it returns; nothing is written if the blob is already stored."""
        sha256 = sha256 or sha256_file(path)
        if self.exists(sha256):
            return sha256
        if self.local:
            self._put_local(path, sha256)
        else:
            self._put_remote(path, sha256)
        return sha256

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if self.exists(sha256):
            return sha256
        import tempfile

        with tempfile.NamedTemporaryFile(prefix="curate-blob-", delete=False) as tmp:
            tmp.write(data)
        try:
            return self.put_file(tmp.name, sha256)
        finally:
            os.unlink(tmp.name)

    def _put_local(self, src: str, sha256: str) -> None:
        final = self._path(sha256)
        folder = os.path.dirname(final)
        _makedirs_durable(folder)
        tmp = os.path.join(folder, f".{sha256}{TMP_MARK}{uuid.uuid4().hex[:12]}")
        try:
            with open(src, "rb") as fin, open(tmp, "xb") as fout:
                for block in iter(lambda: fin.read(CHUNK), b""):
                    fout.write(block)
                fout.flush()
                os.fsync(fout.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        _fsync_dir(folder)

    def _put_remote(self, src: str, sha256: str) -> None:
        final = self._path(sha256)
        if scheme(self.url) in OBJECT_STORE_SCHEMES:
            self._fs.put_file(src, final)  # one PUT: the object appears whole or not at all
            return
        parent = posixpath.dirname(final)
        self._fs.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".{sha256}{TMP_MARK}{uuid.uuid4().hex[:12]}")
        try:
            self._fs.put_file(src, tmp)
            self._fs.mv(tmp, final)
        except BaseException:
            try:
                if self._fs.exists(tmp):
                    self._fs.rm(tmp)
            except Exception:
                pass
            raise


__all__ = ["BlobStore", "is_sha256", "sha256_file"]
