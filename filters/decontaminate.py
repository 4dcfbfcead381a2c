"""``decontaminate``: drop (or flag) documents that share word n-grams with benchmark texts.

Texts are compared as lowercased word sequences (``\\w+`` runs, so punctuation and spacing do not
matter). Every n-gram (default 13 words, as in GPT-3's decontamination) of every benchmark item is
hashed (64-bit xxh3) into one set per run, built once per worker process; a document matches when
at least ``min_matches`` of its n-grams are in the set. Benchmark items shorter than ``n`` words
are used whole as one shorter n-gram when they have at least ``min_words`` words (a document
then matches if it contains that whole item), and are ignored below that (counted in the
metadata).

Benchmark files: JSONL (.jsonl/.json/.gz/.zst; the ``fields`` of each record, default every
string value), Parquet (the same), or plain text (one item per non-empty line). They are named by
``benchmarks``: a list of paths/globs (each file's stem names its benchmark) or a mapping
``name: path``. Paths are checked when the pipeline is loaded (relative to the current
directory, else to the pipeline file's folder).

A dropped row records ``rule: contaminated:<benchmark>`` (so the run summary counts per
benchmark) and a reason quoting the first shared n-gram. With ``action: flag`` nothing is dropped
and two columns are added: ``contaminated`` (bool) and ``contamination`` (matched benchmark names,
comma-separated, or null).
"""

from __future__ import annotations

import glob as globlib
import gzip
import io
import json
import re
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from curate.pipelines.errors import ConfigError
from curate.pipelines.stage import Drops, Params, Stage, StageOutput
from pydantic import Field

WORD = re.compile(r"\w+")

_lock = threading.Lock()
_index_cache: dict[Any, "_Index"] = {}


class DecontaminateParams(Params):
    benchmarks: list[str] | dict[str, str] = Field(
        description="benchmark files: a list of paths/globs (stem = name) or a mapping name: path/glob"
    )
    n: int = Field(13, ge=1, le=64, description="n-gram length in words")
    min_matches: int = Field(1, ge=1, description="shared n-grams needed to count as contaminated")
    min_words: int = Field(8, ge=1, description="benchmark items shorter than n but at least this long are matched whole")
    fields: list[str] | None = Field(None, description="JSONL/Parquet fields holding benchmark text (default: every string field)")
    action: Literal["drop", "flag"] = Field("drop", description="drop contaminated documents, or only flag them")


class _Index:
    """n-gram hashes of all benchmark items: sorted uint64 array + owner benchmark per hash."""

    def __init__(self, hashes: np.ndarray, owners: np.ndarray, names: list[str], short_lengths: list[int], stats: dict[str, Any]):
        self.hashes = hashes
        self.owners = owners
        self.names = names
        self.short_lengths = short_lengths  # n-gram lengths < n used by short items
        self.stats = stats


def _h(words: list[str]) -> int:
    import xxhash

    return xxhash.xxh3_64_intdigest(" ".join(words).encode("utf-8", "surrogatepass"))


def _words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _items(path: str, fields: list[str] | None) -> list[str]:
    """Benchmark items (texts) of one file."""
    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
        return [" ".join(_strings([r.get(f) for f in fields] if fields else r)) for r in rows]
    opener: Any = open
    if low.endswith(".gz"):
        opener = gzip.open
    elif low.endswith(".zst"):
        import zstandard

        def opener(p: str, mode: str = "rb") -> Any:  # noqa: F811
            return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(p, "rb")))  # type: ignore[arg-type]

    with opener(path, "rb") as f:
        data = f.read().decode("utf-8", "replace")
    stem = low.removesuffix(".gz").removesuffix(".zst")
    if stem.endswith((".jsonl", ".json", ".ndjson")):
        out = []
        for i, line in enumerate(data.splitlines()):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"{path}:{i + 1}: malformed JSON in benchmark file: {exc}") from None
            if isinstance(rec, dict):
                out.append(" ".join(_strings([rec.get(f) for f in fields] if fields else rec)))
            else:
                out.append(" ".join(_strings(rec)))
        return out
    return [line for line in data.splitlines() if line.strip()]


def _resolve(value: str, base_dir: Any, key: str) -> list[str]:
    roots = [Path.cwd()] + ([Path(base_dir)] if base_dir is not None else [])
    p = Path(value).expanduser()
    if any(c in value for c in "*?["):
        for root in roots:
            found = sorted(f for f in globlib.glob(str(p if p.is_absolute() else root / p)) if Path(f).is_file())
            if found:
                return [str(Path(f).resolve()) for f in found]
        raise ConfigError(f"{key}: no benchmark files match {value!r}")
    for root in roots:
        c = p if p.is_absolute() else root / p
        if c.is_file():
            return [str(c.resolve())]
    tried = ", ".join(str(p if p.is_absolute() else r / p) for r in roots)
    raise ConfigError(f"{key}: benchmark file not found: {value!r} (looked at {tried})")


class Decontaminate(Stage[DecontaminateParams]):
    """Drop or flag documents sharing word n-grams (default 13) with benchmark texts."""

    name = "decontaminate"
    Params = DecontaminateParams
    batch_size = 4096

    def output_columns(self) -> tuple[str, ...]:
        return ("contaminated", "contamination") if self.params.action == "flag" else ()

    def __init__(self, params: DecontaminateParams) -> None:
        super().__init__(params)
        self._files: dict[str, list[str]] | None = None
        self._stats: dict[str, Any] = {}

    def check(self, base_dir: Path | None) -> None:
        b = self.params.benchmarks
        named: dict[str, list[str]] = {}
        if isinstance(b, dict):
            if not b:
                raise ConfigError("benchmarks: the mapping is empty")
            for name, value in b.items():
                named[name] = _resolve(value, base_dir, f"benchmarks.{name}")
        else:
            if not b:
                raise ConfigError("benchmarks: the list is empty")
            for i, value in enumerate(b):
                for f in _resolve(value, base_dir, f"benchmarks[{i}]"):
                    stem = Path(f).name.split(".")[0]
                    named.setdefault(stem, []).append(f)
        for files in named.values():
            for f in files:
                try:
                    with open(f, "rb") as fh:
                        fh.read(1)
                except OSError as exc:
                    raise ConfigError(f"benchmarks: cannot read {f}: {exc.strerror}") from None
        self._files = named

    def _index(self) -> _Index:
        if self._files is None:
            self.check(None)
        assert self._files is not None
        p = self.params
        key = (tuple((k, tuple(v)) for k, v in sorted(self._files.items())), p.n, p.min_words, tuple(p.fields or ()))
        with _lock:
            idx = _index_cache.get(key)
            if idx is not None:
                return idx
            hashes: list[int] = []
            owners: list[int] = []
            names = sorted(self._files)
            short: set[int] = set()
            stats: dict[str, Any] = {}
            for bi, name in enumerate(names):
                items = skipped = grams = 0
                for f in self._files[name]:
                    for text in _items(f, p.fields):
                        w = _words(text)
                        items += 1
                        if len(w) >= p.n:
                            for j in range(len(w) - p.n + 1):
                                hashes.append(_h(w[j : j + p.n]))
                                owners.append(bi)
                            grams += len(w) - p.n + 1
                        elif len(w) >= p.min_words:
                            hashes.append(_h(w))
                            owners.append(bi)
                            short.add(len(w))
                            grams += 1
                        else:
                            skipped += 1
                stats[name] = {"files": self._files[name], "items": items, "ngrams": grams, "items_too_short": skipped}
            h = np.array(hashes, dtype=np.uint64)
            o = np.array(owners, dtype=np.int32)
            order = np.argsort(h, kind="stable")
            idx = _Index(h[order], o[order], names, sorted(short), stats)
            _index_cache[key] = idx
            return idx

    def setup(self) -> None:
        self._idx = self._index()

    def metadata(self) -> dict[str, Any]:
        idx = self._index()
        return {"n": self.params.n, "benchmarks": idx.stats}

    def _match(self, text: str) -> tuple[list[int], str | None]:
        """Benchmarks a document matches (indices) and the first shared n-gram."""
        idx = self._idx
        if len(idx.hashes) == 0:
            return [], None
        n = self.params.n
        w = _words(text)
        grams: list[list[str]] = []
        for length in [n, *idx.short_lengths]:
            if len(w) >= length:
                grams += [w[j : j + length] for j in range(len(w) - length + 1)]
        if not grams:
            return [], None
        hs = np.fromiter((_h(g) for g in grams), dtype=np.uint64, count=len(grams))
        pos = np.searchsorted(idx.hashes, hs)
        pos_c = np.minimum(pos, len(idx.hashes) - 1)
        hit = idx.hashes[pos_c] == hs
        if int(hit.sum()) < self.params.min_matches:
            return [], None
        owners = sorted(set(idx.owners[pos_c[hit]].tolist()))
        first = grams[int(np.flatnonzero(hit)[0])]
        return owners, " ".join(first)

    def process(self, batch: pa.Table) -> StageOutput:
        if not hasattr(self, "_idx"):
            self.setup()
        names = self._idx.names
        texts = batch.column("text").to_pylist()
        n = len(texts)
        mask = np.zeros(n, dtype=bool)
        rules: list[str | None] = [None] * n
        reasons: list[str | None] = [None] * n
        matched: list[str | None] = [None] * n
        counters: dict[str, int] = {}
        for i, text in enumerate(texts):
            owners, gram = self._match(text or "")
            if owners:
                mask[i] = True
                bench = [names[o] for o in owners]
                matched[i] = ",".join(bench)
                rules[i] = f"contaminated:{bench[0]}"
                reasons[i] = f"shares the {len((gram or '').split())}-gram '{gram}' with {', '.join(bench)}"
                for b in bench:
                    counters[f"matched_{b}"] = counters.get(f"matched_{b}", 0) + 1
        if self.params.action == "flag":
            out = batch
            for col, arr in (("contaminated", pa.array(mask)), ("contamination", pa.array(matched, pa.string()))):
                if col in out.schema.names:
                    out = out.set_column(out.schema.get_field_index(col), col, arr)
                else:
                    out = out.append_column(col, arr)
            return StageOutput(out, counters=counters)
        return StageOutput(batch, Drops(mask=mask, rule=rules, reason=reasons), counters=counters)
