#!/usr/bin/env python3
"""Resume benchmark (issue 7): a clean `curate run` against the same run killed at ~70% of its read
tasks and started again, in one invocation.

Not a test. The pipeline is the quality-filter chain of bench_filters.py (language id with
lid.176, Gopher repetition, Gopher quality, C4 quality, FineWeb quality: CPU-bound per-document
work, no global stage) over the first --docs documents of the corpus cut into --files JSONL files
(one read task each), Ray with num_cpus = --workers, kept and dropped rows written.

  1. clean   `curate run` into a fresh dataset; wall time of the whole CLI call.
  2. killed  the same pipeline into a second fresh dataset, started in its own process group; the
             script watches the run journal (`<dataset>/_curate_journal/*/*/write/*.json`, whose
             names start with the read task number) and sends SIGKILL to the whole process group
             once --kill-at (default 0.7) of the read tasks have write records. Processes of the
             run still alive 10 s after that (Ray daemons in their own group) are killed by pid.
  3. rerun   `curate run` of the same pipeline file again: it resumes from the journal.

Reported: clean wall, time to the kill, rerun wall, rerun / clean (issue 7's target: <= 0.60),
kill + rerun, tasks written / complete at the kill (complete: read record and all its rows'
weights written, what the rerun can reuse), the resumed tasks the rerun reports, curate's own
"Ray start" / "processing" split, and the load average before each run. Then, untimed, both
versions are read back with polars: the resumed version must have exactly the clean version's rows
(same ids, no duplicate, same texts) and the same dropped ids. A Markdown table on stdout, JSON in
bench/results/bench_resume-<time>.json.

    .venv/bin/python bench/bench_resume.py                       # 25k docs in 32 files (~60-120 s clean here)
    .venv/bin/python bench/bench_resume.py --docs 20000 --files 24 --kill-at 0.5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
from bench_filters import make_shards  # noqa: E402

DEFAULT_CORPUS = BENCH / "data" / "corpus_100k.jsonl"
RESULTS = BENCH / "results"
STAGES = [
    {"language": {"languages": ["en"], "min_score": 0.65}},
    {"gopher_repetition": {}},
    {"gopher_quality": {}},
    {"c4_quality": {}},
    {"fineweb_quality": {}},
]


def curate_exe() -> str:
    return shutil.which("curate", path=str(ROOT / ".venv" / "bin")) or shutil.which("curate") or "curate"


def write_pipeline(path: Path, inputs: Path, dataset: Path, workers: int, log_dir: Path) -> Path:
    pipeline = {
        "name": "bench-resume",
        "input": {"format": "jsonl", "paths": [str(inputs / "*.jsonl")]},
        "stages": STAGES,
        "output": {"dataset": str(dataset), "keep_dropped": True},
        "ray": {"num_cpus": workers},
        "run": {"log_dir": str(log_dir), "progress": False},
    }
    path.write_text(json.dumps(pipeline, indent=2))  # JSON is YAML
    return path


def run_env() -> dict[str, str]:
    # as bench_filters.py: Ray workers at the caller's priority, not nice 15, on a shared machine
    return dict(os.environ, RAY_worker_niceness=os.environ.get("RAY_worker_niceness", "0"), COLUMNS="200", NO_COLOR="1")


def summary_times(text: str) -> dict[str, float]:
    flat = re.sub(r"\s+", " ", text)
    m = re.search(r"\(([\d.]+)s, of which Ray start ([\d.]+)s, processing ([\d.]+)s\)", flat)
    return dict(zip(("reported_s", "ray_start_s", "processing_s"), map(float, m.groups()))) if m else {}


def run_to_end(yaml_path: Path, cwd: Path, log: Path) -> dict:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log, "wb") as lf:
        rc = subprocess.run([curate_exe(), "run", "--no-progress", str(yaml_path)], cwd=cwd, stdout=lf, stderr=subprocess.STDOUT, env=run_env()).returncode
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if rc != 0:
        sys.exit(f"curate run failed (rc {rc}), log {log}:\n{text[-3000:]}")
    resumed = re.search(r"resuming: (\d+) of (\d+) read tasks", re.sub(r"\s+", " ", text))
    return {"wall_s": wall, "rc": rc, "loadavg_1m_before": load, "log": str(log), **summary_times(text),
            "resumed_tasks": int(resumed.group(1)) if resumed else 0}


def journal_state(dataset: Path) -> tuple[set[int], int]:
    """(tasks with write records, tasks complete) in the dataset's journal."""
    written = {int(p.name.split("-")[0]) for p in dataset.glob("_curate_journal/*/*/write/*.json")}
    from curate.pipelines import journal

    complete = 0
    for attempt in dataset.glob("_curate_journal/*/*"):
        complete += sum(1 for rec in journal.load_attempt(str(attempt), {}).values() if rec.complete)
    return written, complete


def run_and_kill(yaml_path: Path, cwd: Path, log: Path, dataset: Path, tasks: int, kill_at: float) -> dict:
    import psutil

    target = max(1, math.ceil(kill_at * tasks))
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log, "wb") as lf:
        proc = subprocess.Popen([curate_exe(), "run", "--no-progress", str(yaml_path)], cwd=cwd, stdout=lf, stderr=subprocess.STDOUT,
                                env=run_env(), start_new_session=True)
    family: dict[int, psutil.Process] = {}
    written: set[int] = set()
    while proc.poll() is None:
        try:
            for p in psutil.Process(proc.pid).children(recursive=True):
                family.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass
        written = {int(p.name.split("-")[0]) for p in dataset.glob("_curate_journal/*/*/write/*.json")}
        if len(written) >= target:
            break
        time.sleep(0.1)
    if proc.poll() is not None:
        sys.exit(f"the run ended (rc {proc.returncode}) before {target} of {tasks} tasks were written; log {log}")
    os.killpg(proc.pid, signal.SIGKILL)
    t_kill = time.perf_counter() - t0
    proc.wait()
    # Ray's daemons and workers may sit in other process groups: give them 10 s to follow the
    # driver, then kill the ones still alive (only processes this run started)
    deadline = time.time() + 10
    alive = [p for p in family.values() if p.is_running()]
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    lingering = []
    for p in alive:
        try:
            lingering.append(" ".join(p.cmdline()[:2])[:80])
            p.kill()
        except psutil.NoSuchProcess:
            pass
    written_after, complete = journal_state(dataset)
    return {"kill_s": t_kill, "loadavg_1m_before": load, "target_tasks": target, "written_tasks_seen": len(written),
            "written_tasks": len(written_after), "complete_tasks": complete, "lingering_killed": lingering,
            "published": (dataset / "_delta_log").exists(), "log": str(log)}


def compare(clean: Path, resumed: Path) -> dict:
    import polars as pl

    a = pl.read_delta(str(clean)).sort("id")
    b = pl.read_delta(str(resumed)).sort("id")
    da = pl.read_delta(str(clean) + ".dropped").select("id", "stage", "rule").sort("id")
    db = pl.read_delta(str(resumed) + ".dropped").select("id", "stage", "rule").sort("id")
    same_cols = a.columns == b.columns or sorted(a.columns) == sorted(b.columns)
    return {
        "clean_rows": a.height,
        "resumed_rows": b.height,
        "resumed_duplicate_ids": b.height - b["id"].n_unique(),
        "same_ids": a["id"].to_list() == b["id"].to_list(),
        "same_rows": same_cols and a.equals(b.select(a.columns)),
        "clean_dropped": da.height,
        "resumed_dropped": db.height,
        "same_dropped": da.equals(db),
    }


def version_meta(dataset: Path) -> dict:
    from deltalake import DeltaTable

    h = DeltaTable(str(dataset)).history(1)[0]
    meta = next((json.loads(v) for v in h.values() if isinstance(v, str) and v.startswith("{") and '"journal"' in v), {})
    return {"version": DeltaTable(str(dataset)).version(), "journal": (meta.get("run") or meta).get("journal")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--docs", type=int, default=25_000)
    ap.add_argument("--files", type=int, default=32, help="input JSONL files = read tasks")
    ap.add_argument("--workers", type=int, default=2, help="Ray num_cpus")
    ap.add_argument("--kill-at", type=float, default=0.7, help="fraction of read tasks written when the run is killed")
    ap.add_argument("--work", type=Path, default=Path("/tmp/curate-bench-resume"))
    ap.add_argument("--keep", action="store_true", help="keep the datasets")
    args = ap.parse_args()

    inputs = args.work / f"input-{args.docs}-{args.files}"
    if not inputs.is_dir() or len(list(inputs.glob("*.jsonl"))) != args.files:
        shutil.rmtree(inputs, ignore_errors=True)
        make_shards(args.corpus, args.docs, args.files, inputs)
    mb = sum(p.stat().st_size for p in inputs.glob("*.jsonl")) / 1e6
    clean_ds, resume_ds = args.work / "clean", args.work / "resumed"
    for d in (clean_ds, resume_ds):
        shutil.rmtree(d, ignore_errors=True)
        shutil.rmtree(str(d) + ".dropped", ignore_errors=True)
    logs = args.work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    clean_yaml = write_pipeline(args.work / "clean.yaml", inputs, clean_ds, args.workers, logs)
    resume_yaml = write_pipeline(args.work / "resumed.yaml", inputs, resume_ds, args.workers, logs)

    print(f"input: {args.docs:,} docs, {mb:,.1f} MB in {args.files} files; {os.cpu_count()} CPUs; Ray num_cpus {args.workers}", file=sys.stderr)
    print(f"clean run (load {os.getloadavg()[0]:.1f}) ...", file=sys.stderr, flush=True)
    clean = run_to_end(clean_yaml, args.work, args.work / "clean.log")
    print(f"  {clean['wall_s']:.1f} s", file=sys.stderr)
    print(f"run killed at {args.kill_at:.0%} of the read tasks written (load {os.getloadavg()[0]:.1f}) ...", file=sys.stderr, flush=True)
    killed = run_and_kill(resume_yaml, args.work, args.work / "killed.log", resume_ds, args.files, args.kill_at)
    print(f"  killed after {killed['kill_s']:.1f} s: {killed['written_tasks']} tasks with write records, {killed['complete_tasks']} complete;"
          f" lingering processes killed: {len(killed['lingering_killed'])}", file=sys.stderr)
    print(f"rerun (load {os.getloadavg()[0]:.1f}) ...", file=sys.stderr, flush=True)
    rerun = run_to_end(resume_yaml, args.work, args.work / "rerun.log")
    print(f"  {rerun['wall_s']:.1f} s, resumed {rerun['resumed_tasks']} tasks", file=sys.stderr)
    check = compare(clean_ds, resume_ds)
    meta = {"clean": version_meta(clean_ds), "resumed": version_meta(resume_ds)}
    ratio = rerun["wall_s"] / clean["wall_s"]
    ok = check["same_ids"] and check["same_rows"] and check["same_dropped"] and not check["resumed_duplicate_ids"]

    def split(r: dict) -> str:
        return f"Ray start {r['ray_start_s']:.1f}s, processing {r['processing_s']:.1f}s" if "processing_s" in r else ""

    rows = [
        ("clean run", f"{clean['wall_s']:.1f}", "1.00", f"{clean['loadavg_1m_before']:.1f}", split(clean)),
        ("run killed at the kill", f"{killed['kill_s']:.1f}", f"{killed['kill_s'] / clean['wall_s']:.2f}", f"{killed['loadavg_1m_before']:.1f}",
         f"{killed['written_tasks']}/{args.files} tasks written, {killed['complete_tasks']} complete"),
        ("rerun (resumed)", f"{rerun['wall_s']:.1f}", f"**{ratio:.2f}**", f"{rerun['loadavg_1m_before']:.1f}",
         f"{split(rerun)}; resumed {rerun['resumed_tasks']} of {args.files} tasks"),
        ("killed + rerun", f"{killed['kill_s'] + rerun['wall_s']:.1f}", f"{(killed['kill_s'] + rerun['wall_s']) / clean['wall_s']:.2f}", "", ""),
    ]
    table = "\n".join(["| run | wall s | / clean | load before | notes |", "|---|---:|---:|---:|---|"] + ["| " + " | ".join(r) + " |" for r in rows])
    print()
    print(f"Input: {args.docs:,} docs, {mb:,.1f} MB JSONL in {args.files} files (= read tasks); stages: language, gopher_repetition, "
          f"gopher_quality, c4_quality, fineweb_quality; {os.cpu_count()} CPUs, Ray num_cpus {args.workers}")
    print()
    print(table)
    print()
    print(f"- rerun / clean = {ratio:.2f} (target <= 0.60: {'met' if ratio <= 0.60 else 'NOT met'})")
    print(f"- resumed version {'identical to' if ok else 'DIFFERS from'} the clean one: {check['resumed_rows']:,} rows "
          f"(clean {check['clean_rows']:,}), {check['resumed_duplicate_ids']} duplicate ids, same ids {check['same_ids']}, "
          f"same rows {check['same_rows']}; dropped {check['resumed_dropped']:,} (clean {check['clean_dropped']:,}), same {check['same_dropped']}")
    if killed["published"]:
        print("- WARNING: the killed run published a version")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"bench_resume-{stamp}.json"
    out.write_text(json.dumps({
        "benchmark": "bench_resume", "time": stamp, "argv": sys.argv[1:], "docs": args.docs, "files": args.files, "mb": mb,
        "workers": args.workers, "kill_at": args.kill_at, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "clean": clean, "killed": killed, "rerun": rerun, "rerun_over_clean": ratio, "check": check, "versions": meta, "table": table,
    }, indent=2, default=str))
    print(f"\nresults: {out.relative_to(ROOT)}", file=sys.stderr)
    if not args.keep:
        for d in (clean_ds, resume_ds):
            shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(str(d) + ".dropped", ignore_errors=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
