"""Shared helpers for the bench/ scripts (not part of the curate package).

- :func:`normalize_text`: a pure-Python reference of curate's ``normalize`` stage, used to build
  the quickstart sample's planted counts and by the datatrove variant of bench_pipeline.py.
- :data:`POLARS_*` patterns: the same normalisation as regexes for polars (Rust regex syntax).
- process-tree peak-RSS sampling and small I/O helpers.

curate's ``normalize`` (the spec these follow, in this order):
  1. ``\\r\\n`` and ``\\r`` -> ``\\n``;
  2. remove control characters (Unicode category Cc) except ``\\n`` and ``\\t``;
  3. Unicode NFC (after 1-2, so a removed control character never blocks a composition);
  4. collapse each run of horizontal whitespace (tab, space and the other Unicode space
     separators, category Zs) to one space;
  5. strip spaces at line ends;
  6. collapse 3+ consecutive newlines to 2;
  7. strip the document.
(Line endings are converted before Cc removal, since ``\\r`` is itself a Cc character.)
"""

from __future__ import annotations

import gzip
import io
import os
import re
import threading
import time
import unicodedata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / "data"
RESULTS = BENCH / "results"

# Unicode category Zs (Unicode 14/15): U+0020, U+00A0, U+1680, U+2000-U+200A, U+202F, U+205F, U+3000.
_ZS = "\u0020\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
_CC_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # Cc minus \t (09) and \n (0a)
_HSPACE_RE = re.compile(f"[\t{_ZS}]+")
_LINE_END_RE = re.compile(" +\n")
_NL3_RE = re.compile("\n{3,}")


def normalize_text(text: str) -> str:
    """Reference implementation of curate's ``normalize`` stage (see module docstring)."""
    t = text
    if "\r" in t:
        t = t.replace("\r\n", "\n").replace("\r", "\n")
    t = _CC_RE.sub("", t)
    t = unicodedata.normalize("NFC", t)
    t = _HSPACE_RE.sub(" ", t)
    t = _LINE_END_RE.sub("\n", t)
    t = _NL3_RE.sub("\n\n", t)
    return t.strip()


# The same steps for polars (Rust regex), applied in order with str.replace_all: the first two
# before str.normalize("NFC"), the rest after; the final strip is str.strip_chars() (all
# whitespace, as str.strip()).
POLARS_PRE_NFC = 2
POLARS_STEPS: list[tuple[str, str]] = [
    (r"\r\n?", "\n"),
    (r"[\x00-\x08\x0B-\x1F\x7F-\x9F]", ""),
    (r"[\t\p{Zs}]+", " "),
    (r" +\n", "\n"),
    (r"\n{3,}", "\n\n"),
]


def open_text(path: str | os.PathLike, mode: str = "rt"):
    """Open plain / .gz / .zst text for reading or writing (``rt`` / ``wt``)."""
    p = str(path)
    if p.endswith(".gz"):
        return gzip.open(p, mode, encoding="utf-8", compresslevel=9) if "w" in mode else gzip.open(p, mode, encoding="utf-8")
    if p.endswith(".zst"):
        import zstandard

        if "w" in mode:
            raw = zstandard.ZstdCompressor(level=19).stream_writer(open(p, "wb"))
        else:
            raw = zstandard.ZstdDecompressor().stream_reader(open(p, "rb"))
        return io.TextIOWrapper(raw, encoding="utf-8")
    return open(p, mode.replace("t", ""), encoding="utf-8")


class PeakRSS:
    """Samples the summed RSS of a process and all its descendants every ``interval`` s (psutil)."""

    def __init__(self, pid: int | None = None, interval: float = 0.1):
        self.pid = pid or os.getpid()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._t: threading.Thread | None = None

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    total += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._t:
            self._t.join()


class Timer:
    def __enter__(self) -> "Timer":
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0


class TreeMem:
    """Peak summed RSS and PSS of a process and its descendants, sampled every `interval` s."""

    def __init__(self, pid: int, interval: float = 0.2):
        import threading

        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            rss = pss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                    pss += self._pss(p.pid)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMem":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
