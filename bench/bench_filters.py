"""Benchmark: curate's `language` + heuristic rule stages vs datatrove running the same filters.

Not a test. Both read the same JSONL shards (the first --docs documents of the corpus, cut into
--shards files) and run: language id (lid.176.ftz, keep English above 0.65) -> Gopher
repetition -> Gopher quality -> C4 quality -> FineWeb quality, with default thresholds, writing
the kept and the dropped documents.

- curate: `curate run` of a generated pipeline (Ray, num_cpus = --workers), kept rows to a Delta
  dataset, dropped rows (stage, rule, reason) to its .dropped dataset.
- datatrove: LocalPipelineExecutor(tasks=--shards, workers=--workers): JsonlReader -> the same
  filter objects (LanguageFilter pointed at the same local lid.176.ftz; datatrove would download
  lid.176.bin otherwise), each with an exclusion JsonlWriter -> JsonlWriter. Run in its own
  process, so curate's tokenisation memo is not involved.

Reported: wall-clock seconds and documents/second of each (end to end, process start to finish),
and the agreement of their keep/drop decisions (and of the stage and reason of each drop); every
disagreement is listed (up to --show).

    .venv/bin/python bench/bench_filters.py                      # 100k docs (bench/data/corpus_100k.jsonl)
    .venv/bin/python bench/bench_filters.py --docs 10000         # a quicker subset
    .venv/bin/python bench/bench_filters.py --only curate --baseline ab778c0   # this tree vs an earlier commit
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT / "bench" / "data" / "corpus_100k.jsonl"

STAGES = ["language", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality"]
DT_NAMES = {
    "language": "🌍 Language ID",
    "gopher_repetition": "👯 Gopher Repetition",
    "gopher_quality": "🥇 Gopher Quality",
    "c4_quality": "⛰ C4 Quality",
    "fineweb_quality": "🍷 FineWeb Quality",
}


def make_shards(corpus: Path, docs: int, shards: int, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"part-{i:03d}.jsonl" for i in range(shards)]
    files = [open(p, "w", encoding="utf-8") for p in paths]
    n = 0
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            if n >= docs:
                break
            if not line.strip():
                continue
            files[n * shards // docs].write(line if line.endswith("\n") else line + "\n")
            n += 1
    for fh in files:
        fh.close()
    if n < docs:
        raise SystemExit(f"{corpus} has only {n} documents")
    return paths


def run_curate(shard_dir: Path, work: Path, workers: int, pythonpath: Path | None = None) -> dict:
    """`curate run` of the filter pipeline; with `pythonpath`, an earlier commit's curate
    (bench/baseline.py) found before the editable install."""
    out = work / "curate_out"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(str(out) + ".dropped", ignore_errors=True)
    pipeline = {
        "name": "bench-filters",
        "input": {"format": "jsonl", "paths": [str(shard_dir / "*.jsonl")]},
        "stages": [
            {"language": {"languages": ["en"], "min_score": 0.65}},
            {"gopher_repetition": {}},
            {"gopher_quality": {}},
            {"c4_quality": {}},
            {"fineweb_quality": {}},
        ],
        "output": {"dataset": str(out), "keep_dropped": True},
        "ray": {"num_cpus": workers},
        "run": {"log_dir": str(work / "logs"), "progress": False},
    }
    yaml_path = work / "bench_filters.yaml"
    yaml_path.write_text(json.dumps(pipeline, indent=2))  # JSON is YAML
    curate = shutil.which("curate", path=str(ROOT / ".venv" / "bin")) or shutil.which("curate") or "curate"
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    # Ray starts its workers at nice 15; datatrove's worker processes run at the caller's priority.
    # On a shared machine that alone skews the comparison, so both run at nice 0 here.
    env = dict(os.environ, RAY_worker_niceness=os.environ.get("RAY_worker_niceness", "0"))
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])])
    # cwd=work: the runner puts the working directory first on the workers' PYTHONPATH, and the
    # repository root there would shadow a --baseline package with the working tree's curate
    proc = subprocess.run([curate, "run", str(yaml_path), "--no-progress"], capture_output=True, text=True, env=env, cwd=work)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"curate run failed ({proc.returncode})")
    from deltalake import DeltaTable

    dt = DeltaTable(str(out))
    meta = json.loads(dt.history(1)[0].get("curate", "{}")) if "curate" in dt.history(1)[0] else {}
    kept = set(dt.to_pyarrow_table(columns=["id"]).column("id").to_pylist())
    dropped_tab = DeltaTable(str(out) + ".dropped").to_pyarrow_table(columns=["id", "stage", "rule", "reason"])
    dropped = {i: (s, r) for i, s, r in zip(*(dropped_tab.column(c).to_pylist() for c in ("id", "stage", "rule")))}
    timings = {}
    for line in proc.stderr.splitlines() + proc.stdout.splitlines():
        if "processing" in line and "Ray start" in line:
            timings["summary"] = line.strip()
    return {"wall_s": wall, "kept": kept, "dropped": dropped, "timings": timings, "meta": meta, "loadavg_1m_before": load}


DATATROVE_SCRIPT = r"""
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.pipeline.filters import (LanguageFilter, GopherRepetitionFilter, GopherQualityFilter,
                                        C4QualityFilter, FineWebQualityFilter)
from datatrove.utils.lid import FT176LID

shard_dir, out, shards, workers, model_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

class LocalFT176(FT176LID):
    # the same lid.176 model, from the local .ftz file (datatrove would download lid.176.bin)
    def __init__(self, languages, path):
        super().__init__(languages)
        self.path = path

    @property
    def model(self):
        if self._model is None:
            from fasttext.FastText import _FastText
            self._model = _FastText(self.path)
        return self._model

lang = LanguageFilter(languages=["en"], language_threshold=0.65, exclusion_writer=JsonlWriter(f"{out}/excluded/language"))
lang.model = LocalFT176(["en"], model_path)
pipeline = [
    JsonlReader(shard_dir, glob_pattern="*.jsonl"),
    lang,
    GopherRepetitionFilter(exclusion_writer=JsonlWriter(f"{out}/excluded/gopher_repetition")),
    GopherQualityFilter(exclusion_writer=JsonlWriter(f"{out}/excluded/gopher_quality")),
    C4QualityFilter(exclusion_writer=JsonlWriter(f"{out}/excluded/c4_quality")),
    FineWebQualityFilter(exclusion_writer=JsonlWriter(f"{out}/excluded/fineweb_quality")),
    JsonlWriter(f"{out}/kept"),
]
t0 = time.perf_counter()
LocalPipelineExecutor(pipeline=pipeline, tasks=shards, workers=workers, logging_dir=f"{out}/logs").run()
print(json.dumps({"run_s": time.perf_counter() - t0}))
"""


def run_datatrove(shard_dir: Path, work: Path, shards: int, workers: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from curate.filters._fasttext import lid176_path

    out = work / "datatrove_out"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", DATATROVE_SCRIPT, str(shard_dir), str(out), str(shards), str(workers), lid176_path()],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"datatrove run failed ({proc.returncode})")

    def read(pattern: str) -> list[dict]:
        rows = []
        for path in sorted(glob.glob(pattern)):
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as f:
                rows += [json.loads(line) for line in f if line.strip()]
        return rows

    kept = {r["id"] for r in read(f"{out}/kept/*")}
    dropped = {}
    for stage in STAGES:
        for r in read(f"{out}/excluded/{stage}/*"):
            dropped[r["id"]] = (stage, (r.get("metadata") or {}).get("filter_reason"))
    return {"wall_s": wall, "kept": kept, "dropped": dropped}


def compare(c: dict, d: dict, total: int, show: int) -> dict:
    ids = c["kept"] | set(c["dropped"]) | d["kept"] | set(d["dropped"])
    keep_disagree = sorted(i for i in ids if (i in c["kept"]) != (i in d["kept"]))
    reason_disagree = []
    for i, (stage, rule) in c["dropped"].items():
        if i in d["dropped"]:
            dstage, dreason = d["dropped"][i]
            same_stage = stage == dstage
            same_reason = dreason is None or rule == dreason  # LanguageFilter gives no reason
            if not (same_stage and same_reason):
                reason_disagree.append((i, (stage, rule), (dstage, dreason)))
    return {
        "documents": total,
        "curate_kept": len(c["kept"]),
        "datatrove_kept": len(d["kept"]),
        "keep_drop_disagreements": len(keep_disagree),
        "keep_drop_disagreement_examples": [
            {"id": i, "curate": "kept" if i in c["kept"] else c["dropped"].get(i), "datatrove": "kept" if i in d["kept"] else d["dropped"].get(i)}
            for i in keep_disagree[:show]
        ],
        "stage_or_reason_disagreements": len(reason_disagree),
        "stage_or_reason_examples": reason_disagree[:show],
    }


def per_stage(dropped: dict) -> dict:
    out: dict = {}
    for stage, rule in dropped.values():
        out.setdefault(stage, {}).setdefault(str(rule), 0)
        out[stage][str(rule)] += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/curate-bench-filters"))
    ap.add_argument("--only", choices=["curate", "datatrove"], default=None)
    ap.add_argument("--show", type=int, default=10, help="disagreements to list")
    ap.add_argument(
        "--baseline",
        metavar="COMMIT",
        default=None,
        help="also run curate as of COMMIT (bench/baseline.py: that commit's Python on the current native module), "
        "after the working tree's curate; its decisions are compared with the working tree's",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()

    shard_dir = args.work / f"input-{args.docs}-{args.shards}"
    if not shard_dir.is_dir() or len(list(shard_dir.glob("*.jsonl"))) != args.shards:
        shutil.rmtree(shard_dir, ignore_errors=True)
        make_shards(args.corpus, args.docs, args.shards, shard_dir)
    results: dict = {"docs": args.docs, "shards": args.shards, "workers": args.workers, "cpus": os.cpu_count()}
    c = d = None
    if args.only in (None, "datatrove"):
        print(f"datatrove: {args.docs} docs, {args.shards} tasks, {args.workers} workers ...", flush=True)
        d = run_datatrove(shard_dir, args.work, args.shards, args.workers)
        results["datatrove"] = {"wall_s": round(d["wall_s"], 1), "docs_per_s": round(args.docs / d["wall_s"], 1), "kept": len(d["kept"])}
        print(f"  {d['wall_s']:.1f} s, {args.docs / d['wall_s']:.1f} docs/s, kept {len(d['kept'])}", flush=True)
    if args.only in (None, "curate"):
        print(f"curate: {args.docs} docs, num_cpus {args.workers} ...", flush=True)
        c = run_curate(shard_dir, args.work, args.workers)
        results["curate"] = {"loadavg_1m_before": round(c["loadavg_1m_before"], 1), "wall_s": round(c["wall_s"], 1), "docs_per_s": round(args.docs / c["wall_s"], 1), "kept": len(c["kept"]), "summary": c["timings"].get("summary")}
        print(f"  {c['wall_s']:.1f} s, {args.docs / c['wall_s']:.1f} docs/s, kept {len(c['kept'])}", flush=True)
    cb = None
    if args.baseline and args.only in (None, "curate"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from baseline import make_baseline

        base = make_baseline(args.baseline)
        sha = (base / "_SUCCESS").read_text().strip()
        print(f"curate@{sha[:7]} (baseline): {args.docs} docs, num_cpus {args.workers} ...", flush=True)
        cb = run_curate(shard_dir, args.work, args.workers, pythonpath=base)
        results["curate_baseline"] = {"loadavg_1m_before": round(cb["loadavg_1m_before"], 1), "commit": sha, "wall_s": round(cb["wall_s"], 1), "docs_per_s": round(args.docs / cb["wall_s"], 1), "kept": len(cb["kept"]), "summary": cb["timings"].get("summary")}
        print(f"  {cb['wall_s']:.1f} s, {args.docs / cb['wall_s']:.1f} docs/s, kept {len(cb['kept'])}", flush=True)
    if cb is not None and d is not None:
        results["speedup_baseline"] = round(d["wall_s"] / cb["wall_s"], 2)
    if cb is not None and c is not None:
        results["agreement_with_baseline"] = compare(c, cb, args.docs, args.show)
    if c is not None and d is not None:
        results["speedup"] = round(d["wall_s"] / c["wall_s"], 2)
        results["agreement"] = compare(c, d, args.docs, args.show)
        results["curate_drops"] = per_stage(c["dropped"])
        results["datatrove_drops"] = per_stage(d["dropped"])
    print(json.dumps(results, indent=2, ensure_ascii=False, default=str))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str))


if __name__ == "__main__":
    main()
