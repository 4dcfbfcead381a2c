"""Settings of the annotation app and its admin commands, with their defaults.

Everything lives under a data folder (``./annotation-data`` or ``$CURATE_ANNOTATION_DATA``):
``annotation.db`` (SQLite), ``blobs/`` (images and clips by SHA-256), ``clips/`` (the clips Delta
dataset) and ``spool/`` (uploads being received). ``$CURATE_ANNOTATION_DB``,
``$CURATE_ANNOTATION_STORE`` and ``$CURATE_ANNOTATION_DATASET`` override the three locations, and
so do the command-line options.
"""

from __future__ import annotations

import dataclasses
import os
import re

DATA_DIR = "annotation-data"
DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_MIN_SECONDS = 1.0
DEFAULT_MAX_SECONDS = 300.0
#: what the page aims an annotator at (PixMo: 60-90 s of speech about an image), and the length
#: under which a microphone recording asks "submit anyway?"
DEFAULT_TARGET_SECONDS = (60.0, 90.0)
DEFAULT_MIN_RECORDING_SECONDS = 30.0
DEFAULT_RATE_LIMIT = "30/min"
_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


def data_dir() -> str:
    return os.path.abspath(os.environ.get("CURATE_ANNOTATION_DATA") or DATA_DIR)


def default_db_url() -> str:
    return os.environ.get("CURATE_ANNOTATION_DB") or f"sqlite:///{os.path.join(data_dir(), 'annotation.db')}"


def default_store_url() -> str:
    return os.environ.get("CURATE_ANNOTATION_STORE") or os.path.join(data_dir(), "blobs")


def default_dataset() -> str:
    return os.environ.get("CURATE_ANNOTATION_DATASET") or os.path.join(data_dir(), "clips")


def parse_rate(text: str) -> tuple[int, float]:
    """``"30/min"`` -> (30, 60.0); ``"0"`` (or ``"off"``) -> (0, 60.0): no limit."""
    t = text.strip().lower()
    if t in ("0", "off", "none"):
        return 0, 60.0
    m = re.fullmatch(r"(\d+)\s*/\s*([a-z]+)", t)
    if m is None or m.group(2) not in _PERIODS:
        raise ValueError(f"rate limit {text!r}: expected N/s, N/min or N/hour (e.g. 30/min), or 0 for none")
    return int(m.group(1)), _PERIODS[m.group(2)]


@dataclasses.dataclass
class Settings:
    """What :func:`curate.annotation.app.create_app` needs; every field has a default."""

    db_url: str = dataclasses.field(default_factory=default_db_url)
    store_url: str = dataclasses.field(default_factory=default_store_url)
    storage_options: dict[str, str] = dataclasses.field(default_factory=dict)
    dataset: str = dataclasses.field(default_factory=default_dataset)
    spool_dir: str = dataclasses.field(default_factory=lambda: os.path.join(data_dir(), "spool"))
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    min_seconds: float = DEFAULT_MIN_SECONDS
    max_seconds: float = DEFAULT_MAX_SECONDS
    rate_limit: str = DEFAULT_RATE_LIMIT  # uploads per token: N/s, N/min, N/hour; "0" for none
    export_every: float = 0.0  # seconds between exports to `dataset` by the server; 0: only `curate annotate export`
    image_url_ttl_s: int = 3600  # lifetime of the signed image URLs /api/next hands out
    target_seconds: tuple[float, float] = DEFAULT_TARGET_SECONDS  # the page's 60-90 s target
    min_recording_seconds: float = DEFAULT_MIN_RECORDING_SECONDS  # shorter recordings ask "submit anyway?"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def check(self) -> None:
        """:class:`ValueError` naming the setting that is out of range."""
        if self.max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb must be > 0 (got {self.max_upload_mb})")
        if self.min_seconds < 0 or self.max_seconds <= self.min_seconds:
            raise ValueError(f"need 0 <= min_seconds < max_seconds (got {self.min_seconds} and {self.max_seconds})")
        lo, hi = self.target_seconds
        if not 0 < lo <= hi:
            raise ValueError(f"target_seconds must be 0 < min <= max (got {lo} and {hi})")
        if self.min_recording_seconds < 0:
            raise ValueError(f"min_recording_seconds must be >= 0 (got {self.min_recording_seconds})")
        if self.export_every < 0:
            raise ValueError(f"export_every must be >= 0 seconds (got {self.export_every})")
        parse_rate(self.rate_limit)


__all__ = ["Settings", "data_dir", "default_dataset", "default_db_url", "default_store_url", "parse_rate"]
