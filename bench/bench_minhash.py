#!/usr/bin/env python3
"""Near-duplicate benchmark (issue 4): MinHash dedup of the same corpus by six tools, in one run.

Every tool runs as a child process on the same input (the 100k corpus cut into 2 Parquet shards,
cached under bench/data/bench_inputs/) with the same task: word 5-gram MinHash (128 permutations),
LSH 16 bands x 8 rows, threshold 0.8, one document kept per cluster, kept documents written as
Parquet (id, text). Shingling is curate's / the ground truth's (lowercased ``\\w+`` tokens, word
5-grams) wherever the tool takes shingles from the caller; datatrove shingles itself.

  native      floor: curate._native alone, no Ray, no engine: signatures (rayon, 2 threads) ->
              band keys -> candidate pairs (numpy) -> exact Jaccard of the pairs (native) ->
              union-find (native) -> write kept rows.
  curate      ``curate run`` of a YAML with ``minhash_dedup: {}`` (defaults: 16 x 8 bands,
              exact verification, keep first), 2-CPU local Ray, Delta output + dropped table,
              output.shard_rows 25,000 (--shard-rows).
  curate-noverify  the same with ``verify: false`` (pairs checked by the MinHash estimate).
  rensa       a script: Python shingling -> rensa.RMinHash per document -> RMinHashLSH (16 bands)
              -> candidates checked by exact Jaccard (Python sets, re-shingled) -> union-find ->
              write kept rows. One process (rensa and the script are single-threaded).
  datasketch  the same script with datasketch MinHash.bulk + MinHashLSH(params=(16, 8)).
  datasketch-doc  signatures only, datasketch per document (MinHash().update_batch), on the first
              --sig-limit documents (it is slow).
  datatrove-sig  signatures only, datatrove's MinhashDedupSignature shingling + signature in one
              process on the first --sig-limit documents (its pipeline's step timings are wall
              time of tasks sharing 2 cores, not CPU time).
  datatrove   datatrove's 4-stage MinHash pipeline (MinhashDedupSignature / Buckets / Cluster /
              Filter + ParquetWriter), LocalPipelineExecutor tasks=workers=2, 16 buckets x 8
              hashes, 5-grams of its own tokeniser (spaCy English) on simplify_text; no
              verification of candidates (it has none).

Reported per tool: signature throughput (documents per CPU-second of the signature step,
shingling included; process CPU time, so other load on the machine matters less), full dedup
wall time (the child process: interpreter, imports, reading, work, writing; for curate also Ray
start-up and the Delta commit, plus curate's own time excluding Ray start-up from the commit
metadata), peak memory of the child's process tree (summed RSS and PSS, sampled every 0.2 s),
documents dropped, and precision / recall against the exact ground truth
(bench/data/gt_pairs_100k.tsv):

  recall     share of ground-truth pairs with J >= 0.8 of which at most one document is kept
  precision  share of dropped documents that have a ground-truth partner with J >= 0.8

usage: .venv/bin/python bench/bench_minhash.py [--limit N] [--only native,curate,...]
                                               [--sig-limit 10000] [--keep]
Results: a Markdown table on stdout, JSON in bench/results/bench_minhash-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / "data"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
TOOLS = ("native", "curate", "curate-noverify", "rensa", "datasketch", "datasketch-doc", "datatrove", "datatrove-sig")

NUM_PERM, BANDS, ROWS, NGRAM, THRESHOLD = 128, 16, 8, 5, 0.8

CURATE_YAML = """\
input:
  format: parquet
  paths: [{paths}]
stages:
  - minhash_dedup: {{{params}}}
output:
  dataset: {dataset}
  keep_dropped: true
  shard_rows: {shard_rows}
ray:
  num_cpus: 2
"""


# --------------------------------------------------------------------------- inputs


def prepare_inputs(limit: int | None, shards: int = 2) -> tuple[list[Path], int]:
    """The corpus (first `limit` rows) as `shards` contiguous Parquet files (cached)."""
    import pyarrow.parquet as pq

    src = DATA / "corpus_100k.parquet"
    if not src.exists():
        sys.exit(f"{src} is missing: build it with bench/make_corpus.sh (see bench/corpus.md)")
    n_all = pq.ParquetFile(src).metadata.num_rows
    n = min(limit or n_all, n_all)
    d = DATA / "bench_inputs" / f"minhash-{n}-s{shards}"
    names = [d / f"part-{k:05d}.parquet" for k in range(shards)]
    stamp = f"{src.stat().st_size}:{int(src.stat().st_mtime)}"
    if (d / "_SUCCESS").exists() and (d / "_SUCCESS").read_text() == stamp:
        return names, n
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    table = pq.read_table(src).slice(0, n)
    per = -(-n // shards)
    for k, name in enumerate(names):
        pq.write_table(table.slice(k * per, per), name, compression="zstd", row_group_size=10_000)
    (d / "_SUCCESS").write_text(stamp)
    return names, n


def ground_truth(n: int) -> tuple[Any, Any, Any]:
    import numpy as np

    path = DATA / "gt_pairs_100k.tsv"
    if not path.exists():
        sys.exit(f"{path} is missing: build it with bench/make_corpus.sh")
    gt = np.loadtxt(path, usecols=(0, 1, 2), dtype=np.float64, ndmin=2)
    i, j, jac = gt[:, 0].astype(np.int64), gt[:, 1].astype(np.int64), gt[:, 2]
    inside = (i < n) & (j < n)
    return i[inside], j[inside], jac[inside]


def quality(kept_ids: set[int], n: int, gt: tuple[Any, Any, Any]) -> dict[str, float]:
    import numpy as np

    i, j, jac = gt
    kept = np.zeros(n, dtype=bool)
    kept[np.fromiter(kept_ids, np.int64, len(kept_ids))] = True
    pos = jac >= THRESHOLD
    recall = float((~(kept[i[pos]] & kept[j[pos]])).mean()) if pos.any() else float("nan")
    partner = np.zeros(n, dtype=bool)
    partner[i[pos]] = partner[j[pos]] = True
    dropped = ~kept
    precision = float(partner[dropped].mean()) if dropped.any() else float("nan")
    near = np.zeros(n, dtype=bool)
    p7 = jac >= 0.7
    near[i[p7]] = near[j[p7]] = True
    return {
        "recall": recall,
        "precision": precision,
        "precision_j70": float(near[dropped].mean()) if dropped.any() else float("nan"),
        "dropped": int(dropped.sum()),
        "gt_pairs": int(pos.sum()),
    }


# --------------------------------------------------------------------------- measuring children


from common import TreeMem  # noqa: E402  (bench/ is on sys.path when run as a script)


def run_timed(cmd: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    with open(log, "wb") as lf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=lf, stderr=subprocess.STDOUT, env=env)
        with TreeMem(proc.pid) as mem:
            rc = proc.wait()
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "rc": rc, "peak_rss_mb": mem.peak_rss / 2**20, "peak_pss_mb": mem.peak_pss / 2**20, "log": str(log)}


def cpu_now() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


# --------------------------------------------------------------------------- shared pieces of the scripts


_TOKEN = re.compile(r"\w+")


def shingles(text: str) -> list[str]:
    """Word 5-grams of lowercased \\w+ tokens (a shorter non-empty document: one shingle)."""
    tokens = _TOKEN.findall(text.lower())
    if len(tokens) < NGRAM:
        return [" ".join(tokens)] if tokens else []
    return [" ".join(tokens[i : i + NGRAM]) for i in range(len(tokens) - NGRAM + 1)]


def read_inputs(files: list[Path]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(f, columns=["id", "text"]) for f in files])


def verify_and_cluster(texts: list[str], pairs: set[tuple[int, int]]) -> tuple[list[int], int]:
    """Exact Jaccard of candidate pairs (re-shingled Python sets), union-find, keep the smallest
    index per cluster; returns (kept indices, accepted pairs)."""
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    cache: dict[int, set[str]] = {}

    def sh(k: int) -> set[str]:
        s = cache.get(k)
        if s is None:
            s = cache[k] = set(shingles(texts[k]))
        return s

    accepted = 0
    for a, b in sorted(pairs):
        sa, sb = sh(a), sh(b)
        inter = len(sa & sb)
        union = len(sa) + len(sb) - inter
        if (inter / union if union else 1.0) >= THRESHOLD:
            accepted += 1
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return [k for k in range(len(texts)) if find(k) == k], accepted


def write_kept(table: Any, kept: list[int], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.take(pa.array(kept, pa.int64())), out / "kept.parquet", compression="zstd")


# --------------------------------------------------------------------------- children


def child_native(files: list[Path], out: Path) -> dict[str, Any]:
    import numpy as np
    from curate.filters import minhash_core as mc
    from curate.filters.minhash_dedup import bucket_pairs

    t0 = time.perf_counter()
    table = read_inputs(files)
    text = table.column("text")
    t1 = time.perf_counter()
    c0 = cpu_now()
    sigs = mc.minhash_signatures(text, NUM_PERM, NGRAM, seed=1)
    sig_cpu, t2 = cpu_now() - c0, time.perf_counter()
    keys = mc.lsh_band_keys(sigs, BANDS, ROWS)
    n = len(text)
    a, b = bucket_pairs(keys.reshape(-1), np.repeat(np.arange(n, dtype=np.uint64), BANDS), 64)
    t3 = time.perf_counter()
    j = mc.exact_jaccard_pairs(text, a, b, NGRAM)
    ok = j >= THRESHOLD
    nodes, roots = mc.connected_components(a[ok], b[ok])
    kept = np.ones(n, dtype=bool)
    kept[nodes[nodes != roots].astype(np.int64)] = False
    t4 = time.perf_counter()
    write_kept(table, np.flatnonzero(kept).tolist(), out)
    t5 = time.perf_counter()
    return {
        "docs": n, "sig_cpu_s": sig_cpu, "sig_wall_s": t2 - t1, "read_s": t1 - t0, "candidates_s": t3 - t2,
        "verify_cluster_s": t4 - t3, "write_s": t5 - t4, "candidate_pairs": int(len(a)), "accepted_pairs": int(ok.sum()),
    }


def _lsh_script(files: list[Path], out: Path, tool: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    table = read_inputs(files)
    texts = table.column("text").to_pylist()
    n = len(texts)
    t1 = time.perf_counter()
    c0 = cpu_now()
    if tool == "rensa":
        from rensa import RMinHash, RMinHashLSH

        mhs = []
        for t in texts:
            m = RMinHash(num_perm=NUM_PERM, seed=42)
            m.update(shingles(t))
            mhs.append(m)
        sig_cpu, t2 = cpu_now() - c0, time.perf_counter()
        lsh = RMinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, num_bands=BANDS)
        for k, m in enumerate(mhs):
            lsh.insert(k, m)
        cands = [lsh.query(m) for m in mhs]
    else:
        from datasketch import MinHash, MinHashLSH

        mhs = MinHash.bulk(([s.encode("utf-8") for s in shingles(t)] for t in texts), num_perm=NUM_PERM, seed=1)
        sig_cpu, t2 = cpu_now() - c0, time.perf_counter()
        lsh = MinHashLSH(num_perm=NUM_PERM, params=(BANDS, ROWS))
        with lsh.insertion_session() as session:
            for k, m in enumerate(mhs):
                session.insert(k, m)
        cands = [lsh.query(m) for m in mhs]
    pairs = {(min(k, c), max(k, c)) for k, cs in enumerate(cands) for c in cs if c != k}
    t3 = time.perf_counter()
    kept, accepted = verify_and_cluster(texts, pairs)
    t4 = time.perf_counter()
    write_kept(table, kept, out)
    t5 = time.perf_counter()
    return {
        "docs": n, "sig_cpu_s": sig_cpu, "sig_wall_s": t2 - t1, "read_s": t1 - t0, "lsh_s": t3 - t2,
        "verify_cluster_s": t4 - t3, "write_s": t5 - t4, "candidate_pairs": len(pairs), "accepted_pairs": accepted,
    }


def child_datasketch_doc(files: list[Path], out: Path, sig_limit: int) -> dict[str, Any]:
    from datasketch import MinHash

    texts = read_inputs(files).column("text").slice(0, sig_limit).to_pylist()
    c0, t0 = cpu_now(), time.perf_counter()
    for t in texts:
        m = MinHash(num_perm=NUM_PERM, seed=1)
        m.update_batch([s.encode("utf-8") for s in shingles(t)])
    return {"docs": len(texts), "sig_cpu_s": cpu_now() - c0, "sig_wall_s": time.perf_counter() - t0, "signatures_only": True}


def _patch_datatrove_xxhash() -> None:
    import datatrove.utils.hashes.xxhash as dt_xxhash
    import xxhash

    # datatrove 0.10.1 hands str to xxhash, which xxhash >= 4 refuses ("Strings must be encoded
    # before hashing"): the same 64-bit xxhash of the UTF-8 bytes
    dt_xxhash.xxhash64 = lambda s: xxhash.xxh64_intdigest(s.encode("utf-8") if isinstance(s, str) else s)


def child_datatrove_sig(files: list[Path], out: Path, sig_limit: int) -> dict[str, Any]:
    _patch_datatrove_xxhash()
    from datatrove.pipeline.dedup import MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.utils.hashing import HashConfig

    texts = read_inputs(files).column("text").slice(0, sig_limit).to_pylist()
    step = MinhashDedupSignature(str(out / "unused"), config=MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS,
                                                                          hash_config=HashConfig(precision=64)))
    step.get_signature(step.get_shingles(texts[0]))  # loads the spaCy tokenizer (not timed)
    c0, t0 = cpu_now(), time.perf_counter()
    for t in texts:
        step.get_signature(step.get_shingles(t))
    return {"docs": len(texts), "sig_cpu_s": cpu_now() - c0, "sig_wall_s": time.perf_counter() - t0, "signatures_only": True}


def child_datatrove(files: list[Path], out: Path, workers: int) -> dict[str, Any]:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter
    from datatrove.utils.hashing import HashConfig

    _patch_datatrove_xxhash()
    cfg = MinhashConfig(n_grams=NGRAM, num_buckets=BANDS, hashes_per_bucket=ROWS, hash_config=HashConfig(precision=64))
    folder = str(files[0].parent)

    def reader() -> Any:
        return ParquetReader(folder, glob_pattern="part-*.parquet", text_key="text", id_key="id", doc_progress=False)

    out.mkdir(parents=True, exist_ok=True)
    stages = [
        ("signatures", LocalPipelineExecutor([reader(), MinhashDedupSignature(str(out / "sigs"), config=cfg)],
                                             tasks=len(files), workers=workers, logging_dir=str(out / "logs1"))),
        ("buckets", LocalPipelineExecutor([MinhashDedupBuckets(str(out / "sigs"), str(out / "buckets"), config=cfg)],
                                          tasks=BANDS, workers=workers, logging_dir=str(out / "logs2"))),
        ("cluster", LocalPipelineExecutor([MinhashDedupCluster(str(out / "buckets"), str(out / "remove"), config=cfg)],
                                          tasks=1, workers=1, logging_dir=str(out / "logs3"))),
        ("filter_write", LocalPipelineExecutor(
            [reader(), MinhashDedupFilter(str(out / "remove")),
             ParquetWriter(str(out / "kept"), output_filename="${rank}.parquet", compression="zstd",
                           adapter=lambda self, doc: {"id": int(doc.id), "text": doc.text})],
            tasks=len(files), workers=workers, logging_dir=str(out / "logs4"))),
    ]
    res: dict[str, Any] = {}
    for name, ex in stages:
        t0 = time.perf_counter()
        ex.run()
        res[f"{name}_s"] = time.perf_counter() - t0
        if name == "signatures":
            # the pool's worker processes are not reaped children of this process, so their CPU
            # time is not in RUSAGE_CHILDREN; datatrove's per-step timings are task wall time
            # (inflated by other load): reported as busy seconds, see datatrove-sig for CPU
            steps = json.loads((out / "logs1" / "stats.json").read_text())
            res["sig_busy_s"] = sum(st["time_stats"]["total"] for st in steps if "time_stats" in st)
            res["sig_wall_s"] = res[f"{name}_s"]
    import pyarrow.parquet as pq

    res["docs"] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return res


def run_child(tool: str, files: list[Path], out: Path, args: argparse.Namespace) -> dict[str, Any]:
    if tool == "native":
        return child_native(files, out)
    if tool in ("rensa", "datasketch"):
        return _lsh_script(files, out, tool)
    if tool == "datasketch-doc":
        return child_datasketch_doc(files, out, args.sig_limit)
    if tool == "datatrove":
        return child_datatrove(files, out, args.workers)
    if tool == "datatrove-sig":
        return child_datatrove_sig(files, out, args.sig_limit)
    raise SystemExit(f"unknown tool {tool}")


# --------------------------------------------------------------------------- parent


def bench_curate(files: list[Path], work: Path, shard_rows: int, tool: str = "curate") -> dict[str, Any]:
    exe = VENV_BIN / "curate"
    out = work / f"{tool}_out"
    yaml_path = work / f"{tool}.yaml"
    params = "verify: false" if tool == "curate-noverify" else ""
    yaml_path.write_text(CURATE_YAML.format(paths=", ".join(json.dumps(str(f)) for f in files), dataset=json.dumps(str(out)),
                                            shard_rows=shard_rows, params=params))
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONFAULTHANDLER="1")
    # cwd: a folder of its own, so the run log (.curate/runs) is this run's
    cwd = work / f"{tool}_cwd"
    cwd.mkdir()
    r = run_timed([str(exe), "run", "--no-progress", str(yaml_path)], cwd, work / f"{tool}.log", env)
    r["cmd"] = f"curate run --no-progress {yaml_path}"
    if r["rc"] != 0:
        r["error"] = Path(r["log"]).read_text(errors="replace")[-3000:]
        return r
    # the run's own timings (Ray start-up, execution, commit), as `curate show --json` gives them
    shown = subprocess.run([str(exe), "show", str(out), "--json"], capture_output=True, text=True, env=env, check=True)
    meta = json.loads(shown.stdout)["run"]
    r["inner"] = {"timings": meta["timings"], "stage": meta["stage_metadata"].get("minhash_dedup", {}),
                  "stage_worker_s": next((s["seconds"] for s in meta["stages"] if s["stage"] == "minhash_dedup"), None)}
    runlog = sorted((cwd / ".curate" / "runs").glob("*.log"))
    if runlog:
        lines = [ln.split(" -- ")[-1].split(" INFO ")[-1].strip() for ln in runlog[-1].read_text().splitlines()
                 if "minhash_dedup" in ln and ("round" in ln or "materialised" in ln)]
        r["inner"]["phases"] = lines
    return r


def kept_ids(tool: str, work: Path) -> set[int]:
    import pyarrow.parquet as pq

    if tool.startswith("curate"):
        from deltalake import DeltaTable

        ids = DeltaTable(str(work / f"{tool}_out")).to_pyarrow_table(columns=["id"]).column("id").to_pylist()
    elif tool == "datatrove":
        ids = []
        for p in sorted((work / "datatrove_out" / "kept").glob("*.parquet")):
            ids += pq.read_table(p, columns=["id"]).column("id").to_pylist()
    else:
        ids = pq.read_table(work / f"{tool}_out" / "kept.parquet", columns=["id"]).column("id").to_pylist()
    return {int(i) for i in ids}


def fmt(rows: list[dict[str, Any]]) -> str:
    head = ("| tool | signatures docs/CPU-s | full dedup wall s | docs/s | excl. Ray start s (docs/s) | peak RSS MB (tree) "
            "| peak PSS MB (tree) | dropped | precision | recall | notes |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("rc", 0) != 0:
            lines.append(f"| {r['tool']} | failed (rc {r['rc']}) | | | | | | | | | see {r.get('log')} |")
            continue
        q = r.get("quality", {})
        sig = f"{r['sig_docs_per_cpu_s']:,.0f}" if r.get("sig_docs_per_cpu_s") else "-"
        if r.get("stage_docs_per_worker_s"):
            sig = f"{r['stage_docs_per_worker_s']:,.0f} (whole stage)"
        sig_only = r.get("inner", {}).get("signatures_only")
        wall = "-" if sig_only else f"{r['wall_s']:.1f}"
        dps = "-" if sig_only else f"{r['docs'] / r['wall_s']:,.0f}"
        excl = f"{r['excl_ray_s']:.1f} ({r['docs'] / r['excl_ray_s']:,.0f})" if r.get("excl_ray_s") else "-"
        lines.append(
            f"| {r['tool']} | {sig} | {wall} | {dps} | {excl} | {r['peak_rss_mb']:,.0f} | {r['peak_pss_mb']:,.0f} | "
            f"{q.get('dropped', '-') if q else '-'} | {q['precision']:.3f} | {q['recall']:.3f} | {r.get('notes', '')} |"
            if q else
            f"| {r['tool']} | {sig} | {wall} | {dps} | {excl} | {r['peak_rss_mb']:,.0f} | {r['peak_pss_mb']:,.0f} | - | - | - | {r.get('notes', '')} |"
        )
    return "\n".join(lines)


def notes_for(tool: str, r: dict[str, Any]) -> str:
    inner = r.get("inner", {})
    f = lambda k: f"{inner[k]:.1f}s" if isinstance(inner.get(k), (int, float)) else "?"  # noqa: E731
    if tool == "native":
        return (f"read {f('read_s')}, signatures {f('sig_wall_s')}, candidates {f('candidates_s')} ({inner.get('candidate_pairs', '?'):,} pairs), "
                f"verify+cluster {f('verify_cluster_s')}, write {f('write_s')}")
    if tool in ("rensa", "datasketch"):
        return (f"read {f('read_s')}, shingle+sign {f('sig_wall_s')}, LSH {f('lsh_s')} ({inner.get('candidate_pairs', '?'):,} pairs), "
                f"verify+cluster {f('verify_cluster_s')}, write {f('write_s')}")
    if tool in ("datasketch-doc", "datatrove-sig"):
        return f"signatures only, first {inner.get('docs', '?'):,} docs"
    if tool == "datatrove":
        return f"signatures {f('signatures_s')}, buckets {f('buckets_s')}, cluster {f('cluster_s')}, filter+write {f('filter_write_s')}; no verification"
    if tool.startswith("curate"):
        t = inner.get("timings", {})
        st = inner.get("stage", {})
        return (f"Ray start {t.get('ray_start_s', '?')}s, execute {t.get('execute_s', '?')}s, commit {t.get('commit_s', '?')}s; "
                f"{st.get('candidate_pairs', '?'):,} candidate pairs, {st.get('accepted_pairs', '?'):,} accepted")
    return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--limit", type=int, default=None, help="first N documents of the corpus")
    ap.add_argument("--only", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--sig-limit", type=int, default=10_000, help="documents for datasketch-doc")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-rows", type=int, default=25_000, help="curate output.shard_rows (rows per write task and shard)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--_child")
    ap.add_argument("--_out")
    ap.add_argument("--_result")
    ap.add_argument("--_files", nargs="*")
    args = ap.parse_args()

    if args._child:
        res = run_child(args._child, [Path(f) for f in args._files], Path(args._out), args)
        Path(args._result).write_text(json.dumps(res))
        return

    tools = [t for t in args.only.split(",") if t]
    for t in tools:
        if t not in TOOLS:
            sys.exit(f"unknown tool {t!r}; choose from {', '.join(TOOLS)}")
    files, n = prepare_inputs(args.limit)
    gt = ground_truth(n)
    work = Path(tempfile.mkdtemp(prefix="bench_minhash-"))
    rows: list[dict[str, Any]] = []
    load0 = os.getloadavg()
    try:
        for tool in tools:
            print(f"running {tool} ...", file=sys.stderr, flush=True)
            if tool.startswith("curate"):
                r = bench_curate(files, work, args.shard_rows, tool)
            else:
                res_file = work / f"{tool}_child.json"
                cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", tool, "--_out", str(work / f"{tool}_out"),
                       "--_result", str(res_file), "--workers", str(args.workers), "--sig-limit", str(args.sig_limit),
                       "--_files", *map(str, files)]
                r = run_timed(cmd, work, work / f"{tool}.log")
                r["cmd"] = f"bench_minhash.py --_child {tool}"
                if res_file.exists():
                    r["inner"] = json.loads(res_file.read_text())
                if r["rc"] != 0:
                    r["error"] = Path(r["log"]).read_text(errors="replace")[-3000:]
            r["tool"] = tool
            r["load_avg_after"] = os.getloadavg()
            inner = r.get("inner", {})
            r["docs"] = inner.get("docs", n)
            if inner.get("sig_cpu_s"):
                r["sig_docs_per_cpu_s"] = inner["docs"] / inner["sig_cpu_s"]
            if tool.startswith("curate") and r["rc"] == 0:
                t = inner["timings"]
                r["excl_ray_s"] = t["execute_s"] + t.get("commit_s", 0.0)
                if inner.get("stage_worker_s"):
                    # the whole stage's task time (keys + reduce, both rounds) per document
                    r["stage_docs_per_worker_s"] = n / inner["stage_worker_s"]
            if r["rc"] == 0 and not inner.get("signatures_only"):
                r["quality"] = quality(kept_ids(tool, work), n, gt)
            r["notes"] = notes_for(tool, r) if r["rc"] == 0 else ""
            rows.append(r)
            print(f"  {tool}: rc {r['rc']}, {r['wall_s']:.1f}s", file=sys.stderr, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept scratch folder {work}", file=sys.stderr)

    import importlib.metadata as md

    versions = {}
    for pkg in ("curate", "ray", "datasketch", "rensa", "datatrove", "numpy", "pyarrow"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    from curate import _native

    info = {
        "when": dt.datetime.now().isoformat(timespec="seconds"),
        "docs": n,
        "inputs": [str(f) for f in files],
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "kernel": _native.minhash_kernel(),
                    "load_avg_before": load0, "processor": platform.processor()},
        "versions": versions,
        "params": {"num_perm": NUM_PERM, "bands": BANDS, "rows": ROWS, "ngram": NGRAM, "threshold": THRESHOLD},
        "runs": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"bench_minhash-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(info, indent=1, default=str))
    print(f"{n:,} docs; ground truth: {rows[0].get('quality', {}).get('gt_pairs', '?') if rows else '?'} pairs with J >= {THRESHOLD}; "
          f"load average before {load0[0]:.1f}; versions {versions}")
    print(fmt(rows))
    for r in rows:
        if r.get("error"):
            print(f"\n{r['tool']} failed:\n{r['error']}")
    print(f"\n(results: {out})", file=sys.stderr)


if __name__ == "__main__":
    main()
