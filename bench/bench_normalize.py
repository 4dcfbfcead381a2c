#!/usr/bin/env python3
"""Throughput of the ``normalize`` stage's clean-up: the old pyarrow.compute chain
(``normalize_reference``: utf8_normalize, five RE2 replacements, trim, plus the stage's changed
count) against the native one-pass Rust version (``normalize_text``), default parameters.

Both run over the text column in batches of the stage's batch size (8192 rows). Reports docs per
wall-second and per CPU-second (process CPU time), the native version on one thread and on rayon's
default pool (all cores), and checks that both produce the same column and counts.

Text: bench/data/corpus_100k.parquet (100k real documents, built by bench/make_corpus.sh) when
present, else the quickstart sample pipelines/examples/data/*.jsonl.{gz,zst}.

usage: python bench/bench_normalize.py [--limit N] [--repeat 3] [--form NFC] [--skip-old]
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import resource
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from curate.pipelines._textops import normalize_reference, normalize_text

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "bench" / "data" / "corpus_100k.parquet"
SAMPLE = ROOT / "pipelines" / "examples" / "data"
BATCH = 8192


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load(limit: int | None) -> tuple[pa.ChunkedArray, str]:
    if CORPUS.exists():
        text = pq.read_table(CORPUS, columns=["text"]).column("text")
        source = str(CORPUS.relative_to(ROOT))
    else:
        import gzip

        import zstandard

        texts: list[str] = []
        for p in sorted(glob.glob(str(SAMPLE / "*.jsonl.*"))):
            raw = Path(p).read_bytes()
            raw = gzip.decompress(raw) if p.endswith(".gz") else zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
            texts += [json.loads(x)["text"] for x in raw.decode().splitlines() if x.strip()]
        text = pa.chunked_array([pa.array(texts, pa.string())])
        source = "quickstart sample"
    if limit:
        text = text.slice(0, limit)
    return text, source


def batches(col: pa.ChunkedArray) -> list[pa.Array]:
    flat = col.combine_chunks()
    return [flat.slice(i, BATCH) for i in range(0, len(flat), BATCH)]


def old(b: pa.Array, form: str) -> tuple[pa.Array, int]:
    out = normalize_reference(b, form)
    return out, int(pc.sum(pc.not_equal(b, out)).as_py() or 0)


def run(fn: Callable[[pa.Array], tuple[pa.Array, int]], parts: list[pa.Array], repeat: int) -> tuple[float, float, list, int]:
    best_wall = best_cpu = float("inf")
    outs: list = []
    changed = 0
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), cpu_seconds()
        res = [fn(b) for b in parts]
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, cpu_seconds() - c0)
        outs = [r[0] for r in res]
        changed = sum(r[1] for r in res)
    return best_wall, best_cpu, outs, changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="first N documents only")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (the old chain runs once)")
    ap.add_argument("--form", default="NFC")
    ap.add_argument("--skip-old", action="store_true", help="native only")
    a = ap.parse_args()

    col, source = load(a.limit)
    parts = batches(col)
    n = len(col)
    mb = sum(p.nbytes for p in parts) / 1e6
    print(f"{n} docs, {mb:.0f} MB of arrays, from {source}; batches of {BATCH}")
    rows = []
    ref = None
    if not a.skip_old:
        wall, cpu, ref, ref_changed = run(lambda b: old(b, a.form), parts, 1)
        rows.append(("pyarrow chain (old)", wall, cpu, ref_changed))
    for label, threads in [("native, 1 thread", 1), ("native, default threads", 0)]:
        wall, cpu, outs, changed = run(lambda b: normalize_text(b, a.form, num_threads=threads), parts, a.repeat)  # noqa: B023
        rows.append((label, wall, cpu, changed))
        if ref is not None:
            same = all(x.equals(y) for x, y in zip(outs, ref)) and changed == ref_changed
            if not same:
                raise SystemExit(f"{label}: output differs from the pyarrow chain")
    print(f"{'':26} {'wall s':>8} {'docs/s':>10} {'CPU s':>8} {'docs/CPU-s':>11} {'MB/s':>8}  changed")
    for label, wall, cpu, changed in rows:
        print(f"{label:26} {wall:8.3f} {n / wall:10.0f} {cpu:8.3f} {n / cpu:11.0f} {mb / wall:8.1f}  {changed}")
    if ref is not None:
        print("outputs and changed counts identical to the pyarrow chain")


if __name__ == "__main__":
    main()
