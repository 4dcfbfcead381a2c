#!/usr/bin/env python3
"""Build the issue-8 MinHash corpus: long documents with many near-duplicates and large clusters.

The shape the issue reported the crash on: ~8 KB documents made of sentences of the Debian
copyright files on this machine (``/usr/share/doc/*/copyright``), 10 % of them edited copies of
earlier documents with a word dropped per 50 (each word independently with probability 1/50;
Jaccard with the source ~0.83 on word 5-grams). Where the copied document comes from:

- with probability ``--template-share`` (0.4) one of ``--templates`` (4) template documents (the
  first documents of the corpus): boilerplate / mirrored pages, clusters of ~1,000 documents per
  template at 100k documents and ~3,000 at 300k;
- otherwise any earlier document, copies included, so chains of copies of copies form too
  (a copy of a copy has Jaccard ~0.7 with the original: the clusters are not cliques).

Outputs in ``--out`` (default bench/data/):
  ``minhash_<name>.jsonl``           ``{"id": "<row>", "text": ...}`` per line (what ``curate run`` reads)
  ``minhash_<name>.parquet``         id (int64 == row), text: what the scripts compare against
  ``minhash_<name>_meta.parquet``    id, source (-1 for originals), template (bool)
  ``minhash_<name>_gt.tsv``          exact ground truth: every pair (i < j) with Jaccard >= --gt-thr
                                     (default 0.8) on lowercased ``\\w+`` word 5-grams, from the
                                     all-pairs join of /work/shared/tools/bench-corpus (built with
                                     cargo into a scratch copy; exact, prefix filtering), or beyond
                                     20k documents (``--gt families``) exact Jaccard of every pair
                                     inside a family of copies (see ground_truth_families)

usage: .venv/bin/python bench/make_minhash_corpus.py 100k 100000
       .venv/bin/python bench/make_minhash_corpus.py 300k 300000
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
TOOL = Path(os.environ.get("BENCH_CORPUS_TOOL", "/work/shared/tools/bench-corpus"))


def sentences() -> list[str]:
    """Distinct sentence-like units (5..60 words) of the Debian copyright files, sorted."""
    out: set[str] = set()
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for part in re.split(r"(?<=[.!?;:])\s+|\n\s*\n", text):
            words = part.split()
            if 5 <= len(words) <= 60:
                out.add(" ".join(words))
    return sorted(out)


def build(n: int, seed: int, dup_frac: float, templates: int, template_share: float, doc_bytes: int) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    pool = sentences()
    print(f"{len(pool)} distinct sentences from /usr/share/doc/*/copyright", file=sys.stderr)
    texts: list[str] = []
    source = np.full(n, -1, dtype=np.int64)
    n_copies = int(round(n * dup_frac))
    # copies are placed at random positions after the first `templates` documents
    is_copy = np.zeros(n, dtype=bool)
    is_copy[templates + np.array(rng.sample(range(n - templates), n_copies), dtype=np.int64)] = True
    for i in range(n):
        if not is_copy[i]:
            size = int(doc_bytes * rng.uniform(0.75, 1.25))
            parts: list[str] = []
            total = 0
            while total < size:
                s = rng.choice(pool)
                parts.append(s)
                total += len(s) + 1
            texts.append(" ".join(parts))
            continue
        src = rng.randrange(templates) if rng.random() < template_share else rng.randrange(i)
        source[i] = src
        words = texts[src].split(" ")
        keep = [w for w in words if rng.random() >= 1 / 50]
        texts.append(" ".join(keep))
    return texts, source


def ground_truth(texts: list[str], name: str, out: Path, thr: float) -> None:
    from curate.filters import minhash_core as mc

    work = Path(os.environ.get("WORK", "/tmp/minhash-corpus-gt"))
    binary = work / "rust/allpairs/target/release/allpairs"
    if not binary.exists():
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(TOOL, work)
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=work / "rust/allpairs", check=True)
    t0 = time.time()
    offs = np.zeros(len(texts) + 1, dtype=np.uint64)
    hashes = []
    for k, t in enumerate(texts):
        h = mc.shingle_hashes(t)
        hashes.append(h)
        offs[k + 1] = offs[k] + len(h)
    offs.tofile(work / f"shoffs_{name}.bin")
    np.concatenate(hashes).astype("<u8").tofile(work / f"shhashes_{name}.bin")
    del hashes
    print(f"shingle hashes: {time.time() - t0:.1f}s, {int(offs[-1])} shingles", file=sys.stderr)
    t0 = time.time()
    subprocess.run([str(binary), str(work / f"shoffs_{name}.bin"), str(work / f"shhashes_{name}.bin"), str(thr),
                    str(out / f"minhash_{name}_gt.tsv")], check=True)
    print(f"all-pairs join: {time.time() - t0:.1f}s", file=sys.stderr)
    for f in (f"shoffs_{name}.bin", f"shhashes_{name}.bin"):
        (work / f).unlink()


def ground_truth_families(texts: list[str], source: np.ndarray, name: str, out: Path, thr: float) -> None:
    """Exact Jaccard of every pair inside a family (documents with a common ancestor), written
    like the all-pairs join's TSV (intersection and set sizes as -1). Documents of different
    families are random sentence sequences: on a 5k and a 20k corpus the exhaustive join found
    exactly these pairs (bench/minhash.md), so this is the same ground truth at a fraction of the
    cost (the join is quadratic in the template clusters: it ran for over 20 CPU-minutes on 100k)."""
    from curate.filters import minhash_core as mc

    t0 = time.time()
    root = np.arange(len(texts))
    for i in range(len(texts)):  # sources are earlier documents: one pass resolves every chain
        if source[i] >= 0:
            root[i] = root[source[i]]
    order = np.argsort(root, kind="stable")
    fam_start = np.flatnonzero(np.r_[True, root[order][1:] != root[order][:-1]])
    fam_end = np.r_[fam_start[1:], len(order)]
    col = pa.array(texts, pa.large_string())
    n_pairs = 0
    with open(out / f"minhash_{name}_gt.tsv.tmp", "w") as f:
        ia_l: list[np.ndarray] = []
        ib_l: list[np.ndarray] = []
        pending = 0

        def flush() -> None:
            nonlocal n_pairs, pending
            if not ia_l:
                return
            ia, ib = np.concatenate(ia_l), np.concatenate(ib_l)
            j = mc.exact_jaccard_pairs(col, ia, ib)
            keep = j >= thr
            for a, b, v in zip(ia[keep].tolist(), ib[keep].tolist(), j[keep].tolist()):
                f.write(f"{a}\t{b}\t{v:.6f}\t-1\t-1\t-1\n")
            n_pairs += int(keep.sum())
            ia_l.clear()
            ib_l.clear()
            pending = 0

        for s, e in zip(fam_start.tolist(), fam_end.tolist()):
            if e - s < 2:
                continue
            members = np.sort(order[s:e])
            x, y = np.triu_indices(len(members), 1)
            ia_l.append(members[x])
            ib_l.append(members[y])
            pending += len(x)
            if pending >= 2_000_000:
                flush()
        flush()
    os.replace(out / f"minhash_{name}_gt.tsv.tmp", out / f"minhash_{name}_gt.tsv")
    print(f"family ground truth: {n_pairs} pairs with J >= {thr} in {time.time() - t0:.1f}s", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("n", type=int)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--dup-frac", type=float, default=0.1)
    ap.add_argument("--templates", type=int, default=4)
    ap.add_argument("--template-share", type=float, default=0.4)
    ap.add_argument("--doc-bytes", type=int, default=8000)
    ap.add_argument("--gt-thr", type=float, default=0.8)
    ap.add_argument("--out", type=Path, default=BENCH / "data")
    ap.add_argument("--no-gt", action="store_true")
    ap.add_argument("--gt-only", action="store_true", help="only compute the ground truth of an existing corpus")
    ap.add_argument("--gt", choices=("auto", "allpairs", "families"), default="auto",
                    help="ground truth by the exhaustive all-pairs join, or exact Jaccard inside families (auto: the join up to 20k docs)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.gt_only:  # the corpus exists: (re)compute its ground truth only
        texts = pq.read_table(a.out / f"minhash_{a.name}.parquet", columns=["text"]).column("text").to_pylist()
        source = pq.read_table(a.out / f"minhash_{a.name}_meta.parquet", columns=["source"]).column("source").to_numpy()
        if a.gt == "allpairs":
            ground_truth(texts, a.name, a.out, a.gt_thr)
        else:
            ground_truth_families(texts, source, a.name, a.out, a.gt_thr)
        return
    t0 = time.time()
    texts, source = build(a.n, a.seed, a.dup_frac, a.templates, a.template_share, a.doc_bytes)
    print(f"built {len(texts)} docs in {time.time() - t0:.1f}s", file=sys.stderr)
    ids = np.arange(a.n, dtype=np.int64)
    pq.write_table(pa.table({"id": ids, "text": pa.array(texts, pa.large_string())}), a.out / f"minhash_{a.name}.parquet",
                   compression="zstd", row_group_size=10_000)
    pq.write_table(pa.table({"id": ids, "source": source, "template": ids < a.templates}), a.out / f"minhash_{a.name}_meta.parquet")
    tmp = a.out / f"minhash_{a.name}.jsonl.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": str(i), "text": t}, ensure_ascii=False) + "\n")
    os.replace(tmp, a.out / f"minhash_{a.name}.jsonl")
    size = (a.out / f"minhash_{a.name}.jsonl").stat().st_size
    print(f"minhash_{a.name}.jsonl: {a.n} docs, {size / 1e6:.0f} MB, {int((source >= 0).sum())} copies", file=sys.stderr)
    if not a.no_gt:
        if a.gt == "allpairs" or (a.gt == "auto" and a.n <= 20_000):
            ground_truth(texts, a.name, a.out, a.gt_thr)
        else:
            ground_truth_families(texts, source, a.name, a.out, a.gt_thr)


if __name__ == "__main__":
    main()
