#!/usr/bin/env python3
"""MinHash near-dedup at scale (issue 8): ``curate run`` vs a rensa script, side by side in one run,
on the long-document corpus with large duplicate clusters (bench/make_minhash_corpus.py).

  curate  ``curate run --no-progress`` of ``minhash_dedup: {threshold: 0.8, ngram: 5}`` on the
          JSONL file (curate cuts it into byte ranges), 2-CPU local Ray, Delta output (kept rows).
          Wall time is the whole CLI call: interpreter, imports, Ray start, work, commit, shutdown.
          "once Ray is up" = documents / (the run's own execute + commit timings: from Ray being up
          and its workers warmed to the Delta commit).
  rensa   the issue's script: read the JSONL (``json.loads`` per line), shingle lowercased ``\\w+``
          word 5-grams in Python, ``RMinHashDeduplicator(threshold=0.8, num_perm=128,
          use_lsh=True, num_bands=16).add_pairs(...)``, write the kept rows (id, text) as Parquet.

Each tool runs as a child process; its whole process tree's peak memory is sampled every 0.2 s
(summed RSS, and PSS, which splits shared pages such as Ray's object store fairly).

Quality against the exact ground truth (``minhash_<name>_gt.tsv``: all pairs with Jaccard >= 0.8):
removal precision = share of removed documents that have a ground-truth partner; removal recall =
per ground-truth component (connected by J >= 0.8 pairs) min(removed, size - 1), summed, over
the ideal number of removals (sum of size - 1); pair recall = share of ground-truth pairs of
which at most one document is kept.

usage: .venv/bin/python bench/bench_minhash_scale.py [--corpus 100k] [--only curate,rensa] [--repeat N]
Results: a Markdown table on stdout, JSON in bench/results/bench_minhash_scale-<time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DATA = BENCH / "data"
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(BENCH))

from common import TreeMem  # noqa: E402

CURATE_YAML = """\
input:
  format: jsonl
  paths: [{path}]
stages:
  - minhash_dedup: {{threshold: 0.8, ngram: 5{extra}}}
output:
  dataset: {dataset}
ray:
  num_cpus: 2{ray_extra}
"""

RENSA_SCRIPT = r'''
import json, re, sys, time
import pyarrow as pa, pyarrow.parquet as pq
from rensa import RMinHashDeduplicator

src, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
ids, texts = [], []
with open(src, encoding="utf-8") as f:
    for line in f:
        d = json.loads(line)
        ids.append(d["id"]); texts.append(d["text"])
t1 = time.perf_counter()
word = re.compile(r"\w+")

def shingles(text):
    t = word.findall(text.lower())
    if len(t) < 5:
        return [" ".join(t)] if t else []
    return list({" ".join(t[i:i + 5]) for i in range(len(t) - 4)})

dedup = RMinHashDeduplicator(threshold=0.8, num_perm=128, use_lsh=True, num_bands=16)
keep = dedup.add_pairs((i, shingles(t)) for i, t in zip(ids, texts))
t2 = time.perf_counter()
kept = [k for k, ok in enumerate(keep) if ok]
pq.write_table(pa.table({"id": [ids[k] for k in kept], "text": [texts[k] for k in kept]}), out, compression="zstd")
t3 = time.perf_counter()
print(json.dumps({"read": t1 - t0, "shingle_sign_lsh": t2 - t1, "write": t3 - t2, "kept": len(kept)}))
'''


class TreeCpu:
    """CPU seconds (user + system) of a process tree: the last value sampled (every 0.5 s) of
    every process seen, summed. A busy machine slows wall times; CPU time is what a tool costs."""

    def __init__(self, pid: int) -> None:
        import threading

        self.pid, self.seen = pid, {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

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
            for p in procs:
                try:
                    c = p.cpu_times()
                    self.seen[(p.pid, p.create_time())] = c.user + c.system
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self._stop.wait(0.5)

    def __enter__(self) -> "TreeCpu":
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()

    @property
    def seconds(self) -> float:
        return float(sum(self.seen.values()))


def run_timed(cmd: list[str], cwd: Path, log: Path, env: dict[str, str]) -> dict[str, Any]:
    with open(log, "wb") as lf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=lf, stderr=subprocess.STDOUT, env=env)
        with TreeMem(proc.pid) as mem, TreeCpu(proc.pid) as cpu:
            rc = proc.wait()
            wall = time.perf_counter() - t0
    return {"rc": rc, "wall_s": wall, "cpu_s": cpu.seconds, "peak_rss_mb": mem.peak_rss / 1e6, "peak_pss_mb": mem.peak_pss / 1e6,
            "load_after": os.getloadavg()[0], "log": str(log)}


def bench_curate(src: Path, work: Path, extra: str, tag: str, env: dict[str, str], ray_extra: str = "") -> dict[str, Any]:
    out = work / f"{tag}_out"
    yaml_path = work / f"{tag}.yaml"
    yaml_path.write_text(CURATE_YAML.format(path=json.dumps(str(src)), dataset=json.dumps(str(out)), extra=extra, ray_extra=ray_extra))
    cwd = work / f"{tag}_cwd"
    cwd.mkdir()
    r = run_timed([str(VENV_BIN / "curate"), "run", "--no-progress", str(yaml_path)], cwd, work / f"{tag}.log", env)
    if r["rc"] != 0:
        r["error"] = Path(r["log"]).read_text(errors="replace")[-3000:]
        return r
    shown = subprocess.run([str(VENV_BIN / "curate"), "show", str(out), "--json"], capture_output=True, text=True, env=env, check=True)
    meta = json.loads(shown.stdout)["run"]
    r["timings"] = meta.get("timings", {})
    r["stage"] = meta.get("stage_metadata", {}).get("minhash_dedup", {})
    runlog = sorted((cwd / ".curate" / "runs").glob("*.log"))
    if runlog:
        r["run_log"] = [ln.strip()[-220:] for ln in runlog[-1].read_text().splitlines()
                        if any(k in ln for k in ("round", "partitions", "warmed", "Ray", "materialis", "rows,"))]
    from deltalake import DeltaTable

    r["kept_ids"] = DeltaTable(str(out)).to_pyarrow_table(columns=["id"]).column("id").to_pylist()
    return r


def bench_rensa(src: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    script = work / "rensa_dedup.py"
    script.write_text(RENSA_SCRIPT)
    out = work / "rensa_kept.parquet"
    r = run_timed([sys.executable, str(script), str(src), str(out)], work, work / "rensa.log", env)
    if r["rc"] != 0:
        r["error"] = Path(r["log"]).read_text(errors="replace")[-3000:]
        return r
    r["phases"] = json.loads(Path(r["log"]).read_text().strip().splitlines()[-1])
    import pyarrow.parquet as pq

    r["kept_ids"] = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    return r


def load_gt(name: str, n: int) -> Any:
    import numpy as np
    import pyarrow.csv as pacsv

    path = DATA / f"minhash_{name}_gt.tsv"
    t = pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=["i", "j", "jac", "inter", "a", "b"]),
                       parse_options=pacsv.ParseOptions(delimiter="\t"))
    i, j, jac = t.column("i").to_numpy(), t.column("j").to_numpy(), t.column("jac").to_numpy()
    keep = (jac >= 0.8) & (i < n) & (j < n)
    return i[keep].astype(np.int64), j[keep].astype(np.int64)


def quality(kept_ids: list[Any], n: int, gt: Any) -> dict[str, Any]:
    import numpy as np
    from curate.filters import minhash_core as mc

    i, j = gt
    kept = np.zeros(n, dtype=bool)
    kept[np.array([int(x) for x in kept_ids], dtype=np.int64)] = True
    removed = ~kept
    nodes, roots = mc.connected_components(i.astype(np.uint64), j.astype(np.uint64))
    comp = np.full(n, -1, dtype=np.int64)
    comp[nodes.astype(np.int64)] = roots.astype(np.int64)
    in_cluster = comp >= 0
    _, inv, sizes = np.unique(roots, return_inverse=True, return_counts=True)
    ideal = int((sizes - 1).sum())
    removed_per = np.bincount(inv, weights=removed[nodes.astype(np.int64)], minlength=len(sizes))
    credited = int(np.minimum(removed_per, sizes - 1).sum())
    return {
        "removed": int(removed.sum()),
        "gt_pairs": int(len(i)),
        "gt_clusters": int(len(sizes)),
        "gt_largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "gt_ideal_removals": ideal,
        "removal_precision": float(in_cluster[removed].mean()) if removed.any() else float("nan"),
        "removal_recall": credited / ideal if ideal else float("nan"),
        "pair_recall": float((~(kept[i] & kept[j])).mean()) if len(i) else float("nan"),
    }


def fmt(rows: list[dict[str, Any]], n: int, mb: float) -> str:
    head = ("| tool | wall s | docs/s | once Ray is up s (docs/s) | CPU s (tree) | load before/after | peak RSS MB (tree) "
            "| peak PSS MB (tree) | removed | precision | recall | pair recall | notes |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("rc", 0) != 0:
            lines.append(f"| {r['tool']} | failed (rc {r['rc']}) |" + " |" * 10 + f" {r.get('error', '')[-200:]!r} |")
            continue
        q = r["quality"]
        up = "-"
        notes = ""
        if r["tool"].startswith("curate"):
            t = r.get("timings", {})
            ray_s = t.get("ray_start_s", 0.0)
            up_s = t.get("execute_s", 0.0) + t.get("commit_s", 0.0)
            up = f"{up_s:.1f} ({n / up_s:,.0f})" if up_s else "-"
            st = r.get("stage", {})
            notes = (f"Ray start {ray_s:.1f}s, wall - Ray start {r['wall_s'] - ray_s:.1f}s; timings {json.dumps({k: round(v, 1) for k, v in t.items() if isinstance(v, (int, float))})}; "
                     f"{st.get('buckets')} partitions, {st.get('candidate_pairs', 0):,} candidate pairs, largest candidate cluster "
                     f"{st.get('largest_component', 0):,}, checks {st.get('checked_by_kind')}, text shipped "
                     f"{st.get('verify_text_bytes', 0) / 1e6:,.0f} MB (max {st.get('verify_max_partition_text_bytes', 0) / 1e6:,.0f} MB per partition)")
        else:
            ph = r.get("phases", {})
            notes = ", ".join(f"{k} {v:.1f}s" for k, v in ph.items() if isinstance(v, float))
        lines.append(
            f"| {r['tool']} | {r['wall_s']:.1f} | {n / r['wall_s']:,.0f} | {up} | {r.get('cpu_s', float('nan')):.0f} "
            f"| {r.get('load_before', 0):.1f}/{r.get('load_after', 0):.1f} | {r['peak_rss_mb']:,.0f} | {r['peak_pss_mb']:,.0f} "
            f"| {q['removed']:,} | {q['removal_precision']:.4f} | {q['removal_recall']:.4f} | {q['pair_recall']:.4f} | {notes} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="100k")
    ap.add_argument("--only", default="curate,rensa")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--curate-params", default="", help="extra minhash_dedup params, e.g. ', max_group_docs: 1024'")
    ap.add_argument("--object-store", default="", help="ray.object_store_memory of the curate run, e.g. 1GB (default: Ray's)")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    src = DATA / f"minhash_{a.corpus}.jsonl"
    if not src.exists():
        sys.exit(f"{src} is missing: build it with bench/make_minhash_corpus.py {a.corpus} N")
    with open(src, "rb") as f:
        n = sum(1 for _ in f)
    mb = src.stat().st_size / 1e6
    gt = load_gt(a.corpus, n)
    tools = [t.strip() for t in a.only.split(",") if t.strip()]
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    work = Path(tempfile.mkdtemp(prefix="bench_minhash_scale-"))
    rows = []
    try:
        for rep in range(a.repeat):
            for tool in tools:
                load = os.getloadavg()[0]
                print(f"[{time.strftime('%H:%M:%S')}] {tool} (run {rep + 1}), load {load:.1f}", file=sys.stderr)
                if tool == "curate":
                    ray_extra = f"\n  object_store_memory: {a.object_store}" if a.object_store else ""
                    r = bench_curate(src, work, a.curate_params, f"curate{rep}", env, ray_extra)
                elif tool == "rensa":
                    r = bench_rensa(src, work, env)
                else:
                    sys.exit(f"unknown tool {tool}")
                r["tool"], r["run"], r["load_before"] = tool, rep + 1, load
                if r["rc"] == 0:
                    r["quality"] = quality(r.pop("kept_ids"), n, gt)
                print(f"  wall {r['wall_s']:.1f}s rc {r['rc']} {json.dumps(r.get('quality', {}))}", file=sys.stderr)
                rows.append(r)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{n:,} docs, {mb:,.0f} MB JSONL ({src.name}); {rows[0]['quality']['gt_pairs'] if rows and 'quality' in rows[0] else '?'} "
          f"ground-truth pairs with J >= 0.8\n")
    print(fmt(rows, n, mb))
    RESULTS.mkdir(exist_ok=True)
    versions = {}
    for pkg in ("ray", "rensa", "pyarrow", "numpy"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            pass
    git = subprocess.run(["git", "-C", str(BENCH), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = RESULTS / f"bench_minhash_scale-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"corpus": a.corpus, "docs": n, "mb": mb, "git": git, "versions": versions, "machine": platform.platform(),
                               "cpus": os.cpu_count(), "pythonpath": os.environ.get("PYTHONPATH", ""), "runs": rows}, indent=1, default=str))
    print(f"\n{out}", file=sys.stderr)


if __name__ == "__main__":
    main()
