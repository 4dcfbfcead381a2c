#!/usr/bin/env python3
"""Throughput of the native MinHash signatures (curate.filters.minhash_core) on real text.

Measures docs per CPU-second (process CPU time, robust to other jobs on a shared box) and docs
per wall-second, for word 5-grams and 128 permutations by default, on one thread and on rayon's
default pool.

Text: bench/data/corpus_<name>.parquet (built by bench/make_corpus.sh; ~2.4 KB web-page-sized
documents of real documentation text) when present, else the SPDX licence texts from
tests/data/evaldata/neardup cut into ~2.4 KB documents.

usage: python bench/bench_minhash_signatures.py [--corpus 100k] [--num-perm 128] [--ngram 5]
                                                 [--repeat 3] [--limit N]
"""

from __future__ import annotations

import argparse
import resource
import tarfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from curate.filters import minhash_core as mc

from curate import _native

ROOT = Path(__file__).resolve().parents[1]
SPDX = ROOT / "tests" / "data" / "evaldata" / "neardup" / "spdx_license_texts.tar.gz"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def spdx_docs(target_bytes: int = 2400, n_docs: int = 20_000) -> pa.Array:
    docs: list[str] = []
    with tarfile.open(SPDX) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            if f is None:
                continue
            text = f.read().decode("utf-8", "replace")
            cur: list[str] = []
            size = 0
            for word in text.split(" "):
                cur.append(word)
                size += len(word) + 1
                if size >= target_bytes:
                    docs.append(" ".join(cur))
                    cur, size = [], 0
            if cur:
                docs.append(" ".join(cur))
    reps = -(-n_docs // len(docs))
    return pa.array((docs * reps)[:n_docs], pa.string())


def load(corpus: str, limit: int | None) -> tuple[pa.ChunkedArray | pa.Array, str]:
    path = ROOT / "bench" / "data" / f"corpus_{corpus}.parquet"
    if path.exists():
        col = pq.read_table(path, columns=["text"]).column("text")
        src = str(path.relative_to(ROOT))
    else:
        col = spdx_docs()
        src = f"SPDX licence texts cut into ~2.4 KB docs ({SPDX.name})"
    if limit:
        col = col.slice(0, limit)
    return col, src


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="100k")
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None)
    a = ap.parse_args()
    col, src = load(a.corpus, a.limit)
    n = len(col)
    nbytes = sum(c.buffers()[2].size for c in (col.chunks if isinstance(col, pa.ChunkedArray) else [col]))
    print(f"text: {src}: {n} docs, mean {nbytes / n:.0f} bytes; kernel {_native.minhash_kernel()}")
    for threads, label in ((1, "1 thread"), (0, "default pool")):
        best_cpu = best_wall = float("inf")
        for _ in range(a.repeat):
            c0, w0 = cpu_seconds(), time.perf_counter()
            mc.minhash_signatures(col, a.num_perm, a.ngram, num_threads=threads)
            best_cpu = min(best_cpu, cpu_seconds() - c0)
            best_wall = min(best_wall, time.perf_counter() - w0)
        print(
            f"{label:>12}: {n / best_cpu:,.0f} docs/CPU-s, {n / best_wall:,.0f} docs/wall-s "
            f"(best of {a.repeat}; num_perm={a.num_perm}, word {a.ngram}-grams)"
        )


if __name__ == "__main__":
    main()
