"""The ``audio`` input format: one row per audio file, for stages that read audio (``transcribe``).

Each file becomes a row with ``id`` (the file's name), ``audio_uri`` (its absolute path or URL),
``audio_sha256`` (of its bytes), ``audio_format`` (from the extension: wav, mp3, ogg, webm, m4a,
flac, opus, aac) and ``duration_s`` (what the container's header says, null when it says nothing,
as for a browser's WebM recording: the file is never decoded here). The samples are not read
into the row: the stage that needs them opens ``audio_uri``.

Each file is read once (for its hash) and opened with PyAV to prove it is audio: a file PyAV
cannot open, or one without an audio stream (a text file named ``.wav``), fails the run naming
it (exit 3), or with ``on_error: skip`` is a dropped row of stage ``read`` with rule ``not_audio``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..errors import InputDataError
from ..rows import DROP_REASON, DROP_RULE, DROP_STAGE, DUPLICATE_OF, POS

#: suffixes a folder given in input.paths is searched for (globs match any file)
AUDIO_SUFFIXES = (".wav", ".mp3", ".ogg", ".oga", ".opus", ".webm", ".m4a", ".mp4", ".flac", ".aac")
_FORMAT_OF_SUFFIX = {"oga": "ogg", "mp4": "m4a"}
#: the columns every row of an audio input has
AUDIO_COLUMNS = ("id", "audio_uri", "audio_sha256", "audio_format", "duration_s")

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("audio_uri", pa.string()),
    ("audio_sha256", pa.string()),
    ("audio_format", pa.string()),
    ("duration_s", pa.float64()),
    (POS, pa.int64()),
    (DROP_STAGE, pa.string()),
    (DROP_RULE, pa.string()),
    (DROP_REASON, pa.string()),
    (DUPLICATE_OF, pa.string()),
])


def audio_format(path: str) -> str:
    """The format named by the file's extension (``clip.WAV`` -> ``wav``); empty without one."""
    name = path.rsplit("/", 1)[-1]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return _FORMAT_OF_SUFFIX.get(ext, ext)


def probe_duration(data: bytes) -> float | None:
    """The duration the container's header declares (seconds), None when it declares none.
    Raises ValueError when PyAV cannot open the bytes as a file with an audio stream."""
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or one_line(exc)
        raise ValueError(f"PyAV cannot open it ({why})") from None
    with container:
        streams = container.streams.audio
        if not streams:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise ValueError(f"it has no audio stream (streams: {kinds})")
        stream = streams[0]
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None and container.duration > 0:
            return container.duration / 1_000_000  # av.time_base: microseconds
    return None


def read_audio_file(path: str, pos: int, shown: str, on_error: str, storage_options: dict[str, str]) -> Iterator[pa.Table]:
    """The one row of audio file ``path`` (``pos``: its position; ``shown``: its name in errors)."""
    import fsspec

    with fsspec.open(path, "rb", **storage_options) as fh:
        data = fh.read()
    name = path.rstrip("/").rsplit("/", 1)[-1]
    row: dict[str, Any] = {
        "id": name, "audio_uri": path, "audio_sha256": hashlib.sha256(data).hexdigest(),
        "audio_format": audio_format(path), "duration_s": None, POS: pos,
        DROP_STAGE: None, DROP_RULE: None, DROP_REASON: None, DUPLICATE_OF: None,
    }
    try:
        if not data:
            raise ValueError("the file is empty (0 bytes)")
        row["duration_s"] = probe_duration(data)
    except ValueError as exc:
        message = f"{shown}: not an audio file: {exc}"
        if on_error == "fail":
            raise InputDataError(message, hint="remove the file or narrow input.paths, or set input.on_error: skip to drop and record such files") from None
        row.update({DROP_STAGE: "read", DROP_RULE: "not_audio", DROP_REASON: message})
    yield pa.Table.from_pylist([row], schema=SCHEMA)


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["AUDIO_COLUMNS", "AUDIO_SUFFIXES", "audio_format", "probe_duration", "read_audio_file"]
