"""Receiving an upload: the multipart body streamed into a spool file, never held in memory and
never past the size limit.

The body is parsed as it arrives (python-multipart's streaming parser): the ``file`` part goes to
a new file with a random name in the spool folder (the client's file name is never used for
anything), its SHA-256 and size computed on the way; small text fields (``image_id``) are kept.
Past the limit the upload stops with 413; what was received is deleted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import tempfile
from typing import IO, Any, AsyncIterator

MAX_FIELD_BYTES = 1024
#: multipart framing and text fields allowed on top of the file's size limit
OVERHEAD_BYTES = 64 * 1024
#: past the limit, the rest of a body up to this many bytes is read and discarded so that the
#: client gets the 413 (a larger one gets the 413 and a closed connection)
DRAIN_BYTES = 8 * 1024 * 1024


class UploadError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclasses.dataclass
class Received:
    fields: dict[str, str]
    path: str | None  # the spooled file part, if one came
    size: int
    sha256: str

    def discard(self) -> None:
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass


class _Parts:
    """Callbacks of the multipart parser: one file part named ``file``, text fields otherwise."""

    def __init__(self, spool_dir: str, max_file_bytes: int) -> None:
        self.spool_dir = spool_dir
        self.max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.path: str | None = None
        self.size = 0
        self.hash = hashlib.sha256()
        self.ended = False
        self._out: IO[bytes] | None = None
        self._headers: dict[bytes, bytes] = {}
        self._hname = b""
        self._hvalue = b""
        self._name: str | None = None
        self._buf = bytearray()

    def callbacks(self) -> Any:  # python-multipart's MultipartCallbacks (a TypedDict)
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda d, s, e: self._add("_hname", d[s:e]),
            "on_header_value": lambda d, s, e: self._add("_hvalue", d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _add(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)

    def _part_begin(self) -> None:
        self._headers, self._name, self._buf = {}, None, bytearray()

    def _header_end(self) -> None:
        self._headers[self._hname.strip().lower()] = self._hvalue.strip()
        self._hname, self._hvalue = b"", b""

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = params.get(b"name")
        if name is None:
            raise UploadError(400, "a multipart part has no name (expected the fields image_id and file)")
        self._name = name.decode("utf-8", "replace")
        if self._name == "file":
            if self.path is not None:
                raise UploadError(400, "more than one part named file: upload one clip per request")
            os.makedirs(self.spool_dir, exist_ok=True)
            fd, self.path = tempfile.mkstemp(prefix=spool_prefix(), suffix=".part", dir=self.spool_dir)
            self._out = os.fdopen(fd, "wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._name == "file":
            self.size += len(chunk)
            if self.size > self.max_file_bytes:
                raise UploadError(413, f"the file is larger than the limit of {_mb(self.max_file_bytes)}")
            assert self._out is not None
            self._out.write(chunk)
            self.hash.update(chunk)
        else:
            self._buf += chunk
            if len(self._buf) > MAX_FIELD_BYTES:
                raise UploadError(400, f"field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        if self._name == "file":
            self.close()
        elif self._name is not None:
            self.fields[self._name] = self._buf.decode("utf-8", "replace").strip()

    def _end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB"


def spool_prefix() -> str:
    """Spool files are named after the host and process receiving them, so a server starting
    up can tell what a dead one left behind (removed at once) from what a live one is receiving."""
    return f"upload-{socket.gethostname()}-{os.getpid()}-"


async def receive(content_type: str, body: AsyncIterator[bytes], spool_dir: str, max_file_bytes: int,
                  declared_length: int | None = None) -> Received:
    """Parse a ``multipart/form-data`` body from ``body`` (chunks); :class:`UploadError` (400/413/422)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(422, "send multipart/form-data with the fields image_id and file")
    limit = max_file_bytes + OVERHEAD_BYTES
    if declared_length is not None and declared_length > limit:
        if declared_length - limit <= DRAIN_BYTES:
            await _drain(body)
        raise UploadError(413, f"the upload ({declared_length} bytes) is larger than the limit of {_mb(max_file_bytes)}")
    parts = _Parts(spool_dir, max_file_bytes)
    parser = MultipartParser(params[b"boundary"], parts.callbacks())
    total = 0
    try:
        async for chunk in body:
            total += len(chunk)
            if total > limit:
                raise UploadError(413, f"the upload is larger than the limit of {_mb(max_file_bytes)}")
            parser.write(chunk)
        parser.finalize()
        if not parts.ended:
            raise UploadError(400, "the multipart body ended early (incomplete upload)")
    except UploadError as exc:
        parts.close()
        Received(parts.fields, parts.path, parts.size, "").discard()
        if exc.status == 413:
            await _drain(body)
        raise
    except Exception as exc:  # a malformed body (python-multipart's errors) or a broken connection
        parts.close()
        Received(parts.fields, parts.path, parts.size, "").discard()
        raise UploadError(400, f"malformed multipart body: {exc}") from None
    parts.close()
    return Received(parts.fields, parts.path, parts.size, parts.hash.hexdigest())


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read and discard up to DRAIN_BYTES more of the body."""
    seen = 0
    try:
        async for chunk in body:
            seen += len(chunk)
            if seen > DRAIN_BYTES:
                return
    except Exception:
        return


__all__ = ["MAX_FIELD_BYTES", "Received", "UploadError", "receive"]
