#!/usr/bin/env python3
"""Pipeline benchmark (issue 2): read JSONL -> normalize -> exact dedup -> write Parquet, by three tools
on the same input files, in one run.

  curate     ``curate run`` on a generated pipeline YAML (normalize, exact_dedup; Delta Lake output,
             keep_dropped), timed as a whole CLI call; curate's own "processing" time (excluding Ray
             start-up) is parsed from its output and read from the Delta commit metadata.
  datatrove  LocalPipelineExecutor, tasks=workers=2: JsonlReader -> Normalize (a small custom step
             calling bench/common.normalize_text) -> datatrove's 3-stage exact dedup
             (ExactDedupSignature / ExactFindDedups / ExactDedupFilter on the normalised text) ->
             ParquetWriter (zstd, columns id + text).
  polars     plain floor: read_ndjson -> the same normalisation as polars expressions ->
             unique(subset=text, keep=first, maintain_order) -> write_parquet (zstd).

Every tool runs as a child process: wall time covers interpreter start, imports, reading, work and
writing (for curate also Ray start-up and the Delta commit). Peak memory is sampled (psutil, every
0.2 s) over the child's whole process tree: summed RSS and summed PSS (PSS splits shared pages,
e.g. Ray's object store, between the processes that map them). Afterwards, untimed, the outputs are
read back and compared: rows and an order-independent digest of the (id, text) rows.

Inputs: --corpus (default bench/data/corpus_100k.jsonl, see bench/corpus.md). With --limit N the first
N lines are used; with --shards K (default 2, = datatrove's tasks) the input is split, once and
cached under bench/data/bench_inputs/, into K contiguous JSONL files read by all three tools
(datatrove reads files, not byte ranges, so one file would leave one of its two tasks idle).

Results: a Markdown table on stdout and JSON in bench/results/bench_pipeline-<time>.json.

With --baseline COMMIT, curate as of an earlier commit (bench/baseline.py: that commit's Python code
on the working tree's native module) runs too, as tool curate@<sha>, right after curate.

usage: .venv/bin/python bench/bench_pipeline.py [--corpus PATH ...] [--limit N] [--only curate,polars]
                                                [--shards 2] [--workers 2] [--keep] [--baseline COMMIT]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, POLARS_PRE_NFC, POLARS_STEPS, REPO, RESULTS, TreeMem, normalize_text  # noqa: E402

TOOLS = ("curate", "datatrove", "polars")
VENV_BIN = Path(sys.executable).parent

CURATE_YAML = """\
input:
  format: jsonl
  paths: [{paths}]
stages:
  - normalize: {{}}
  - exact_dedup: {{}}
output:
  dataset: {dataset}
  keep_dropped: true
"""


# --------------------------------------------------------------------------- inputs

def prepare_inputs(corpus: list[str], limit: int | None, shards: int) -> list[Path]:
    """The JSONL files all tools read: the corpus as is, or its first `limit` lines cut into `shards`
    contiguous parts (cached)."""
    paths = [Path(p).resolve() for p in corpus]
    for p in paths:
        if not p.is_file():
            sys.exit(f"corpus file {p} not found (bench/make_corpus.sh builds bench/data/corpus_100k.jsonl)")
    if not limit and shards <= 1:
        return paths
    if any(p.suffix != ".jsonl" for p in paths):
        sys.exit("--limit / --shards need plain .jsonl corpus files (use --shards 1 without --limit otherwise)")
    stem = "+".join(p.stem for p in paths)
    key = f"{stem}.{'all' if not limit else limit}.s{shards}"
    d = DATA / "bench_inputs" / key
    done = d / "_SUCCESS"
    names = [d / f"part-{k:05d}.jsonl" for k in range(shards)]
    # the marker names the source files with their sizes and mtimes: a rebuilt corpus invalidates the cache
    stamp = " ".join(f"{p}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in paths)
    if done.exists() and done.read_text().split("\n")[0] == stamp:
        return names
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    # count lines to cut contiguous, equal-sized (in docs) parts
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            total += sum(1 for _ in f)
    n = min(total, limit) if limit else total
    per = [n // shards + (1 if k < n % shards else 0) for k in range(shards)]
    outs = [open(x, "wb") for x in names]
    k = written = 0
    try:
        for p in paths:
            with open(p, "rb") as f:
                for line in f:
                    if written >= n:
                        break
                    while per[k] == 0:
                        k += 1
                    outs[k].write(line if line.endswith(b"\n") else line + b"\n")
                    per[k] -= 1
                    written += 1
    finally:
        for o in outs:
            o.close()
    done.write_text(stamp + f"\n{written} docs\n")
    return names


def count_docs(files: list[Path]) -> tuple[int, int]:
    """(lines, uncompressed JSONL bytes) of plain / .gz / .zst JSONL files."""
    import gzip

    n = size = 0
    for p in files:
        if p.suffix == ".gz":
            f = gzip.open(p, "rb")
        elif p.suffix == ".zst":
            import zstandard

            f = zstandard.ZstdDecompressor().stream_reader(open(p, "rb"), read_across_frames=True, closefd=True)
        else:
            f = open(p, "rb")
        last = b"\n"
        with f:
            while chunk := f.read(1 << 24):
                size += len(chunk)
                n += chunk.count(b"\n")
                last = chunk[-1:]
        n += last != b"\n"  # a last line without a newline
    return n, size


# --------------------------------------------------------------------------- memory sampling

def run_timed(cmd: list[str], cwd: Path, log: Path, env: dict | None = None) -> dict:
    """Run cmd as a child process; wall time, exit code, peak tree memory; stdout+stderr to log."""
    with open(log, "wb") as lf:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=lf, stderr=subprocess.STDOUT, env=env)
        with TreeMem(proc.pid) as mem:
            rc = proc.wait()
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "rc": rc, "peak_rss_mb": mem.peak_rss / 2**20, "peak_pss_mb": mem.peak_pss / 2**20,
            "log": str(log)}


# --------------------------------------------------------------------------- curate

def bench_curate(files: list[Path], work: Path, pythonpath: Path | None = None) -> dict:
    exe = VENV_BIN / "curate"
    if not exe.exists():
        exe = Path(shutil.which("curate") or "curate")
    out = work / "curate_out"
    yaml_path = work / "pipeline.yaml"
    yaml_path.write_text(CURATE_YAML.format(paths=", ".join(json.dumps(str(f)) for f in files), dataset=json.dumps(str(out))))
    # PYTHONFAULTHANDLER: a crash (e.g. a segfault at shutdown) leaves a Python stack in the log
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONFAULTHANDLER="1")
    if pythonpath is not None:  # --baseline: an earlier commit's curate, found before the editable install
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])])
    # cwd=work: the run log (.curate/runs) goes to the scratch dir, not the repo
    r = run_timed([str(exe), "run", "--no-progress", str(yaml_path)], work, work / "curate.log", env)
    r["cmd"] = f"curate run --no-progress {yaml_path}"
    text = Path(r["log"]).read_text(errors="replace")
    flat = re.sub(r"\s+", " ", text)
    m = re.search(r"\(([\d.]+)s, of which Ray start ([\d.]+)s, processing ([\d.]+)s\)", flat)
    if m:
        r["curate_reported_total_s"], r["ray_start_s"], r["processing_s"] = map(float, m.groups())
    try:  # the run's own timings, from the Delta commit metadata
        from deltalake import DeltaTable

        hist = DeltaTable(str(out)).history(1)[0]
        meta = next((json.loads(v) for k, v in hist.items() if isinstance(v, str) and v.startswith("{") and '"timings"' in v), None)
        if meta:
            r["curate_timings"] = meta.get("timings")
            r["curate_stages"] = [{k: s.get(k) for k in ("stage", "in", "out", "dropped", "seconds")} for s in meta.get("stages", [])]
    except Exception as e:  # noqa: BLE001
        r["metadata_error"] = repr(e)
    if r["rc"] != 0:
        r["error"] = text[-3000:]
    return r


def read_curate(work: Path):
    import pyarrow as pa
    from deltalake import DeltaTable

    t = DeltaTable(str(work / "curate_out")).to_pyarrow_table(columns=["id", "text"])
    extra = {}
    try:
        extra["dropped_rows"] = DeltaTable(str(work / "curate_out.dropped")).to_pyarrow_dataset().count_rows()
    except Exception:  # noqa: BLE001
        pass
    return pa.table({"id": t.column("id"), "text": t.column("text")}), extra


# --------------------------------------------------------------------------- datatrove (child)

def child_datatrove(files: list[Path], out: Path, workers: int) -> dict:
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.base import PipelineStep
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import ParquetWriter

    class Normalize(PipelineStep):
        name = "normalize (curate spec)"
        type = "✂️ - FORMAT"

        def run(self, data, rank: int = 0, world_size: int = 1):
            for doc in data:
                with self.track_time():
                    doc.text = normalize_text(doc.text)
                yield doc

    def text_of(doc: Document) -> bytes:
        # bytes, not str: datatrove's xxhash64 passes the content straight to xxhash, and
        # xxhash >= 4 refuses str ("Strings must be encoded before hashing")
        return doc.text.encode("utf-8")

    class FilePriority:
        """Higher priority wins among duplicates: earlier files first; within one file datatrove keeps the
        lowest doc index. Together: the first occurrence in input order (files in the given order)."""

        def __init__(self, names: list[str]):
            self.rank = {n: i for i, n in enumerate(names)}

        def __call__(self, doc: Document) -> int:
            return 65535 - self.rank[os.path.basename(doc.metadata["file_path"])]

    folder = files[0].parent
    if any(f.parent != folder for f in files) or len({f.name for f in files}) != len(files):
        raise SystemExit("datatrove variant: input files must share one folder")
    if len(files) > 65534:
        raise SystemExit("too many files for 16-bit priorities")
    paths_file = out / "input_paths.txt"
    out.mkdir(parents=True, exist_ok=True)
    paths_file.write_text("".join(f.name + "\n" for f in files))
    cfg = ExactDedupConfig(content_getter=text_of, document_priority=FilePriority([f.name for f in files]))
    tasks = min(workers, len(files))

    def reader():
        return JsonlReader(str(folder), paths_file=str(paths_file), compression="infer", doc_progress=False)

    s1 = LocalPipelineExecutor(
        [reader(), Normalize(), ExactDedupSignature(str(out / "sigs"), config=cfg, finder_workers=1)],
        tasks=tasks, workers=workers, logging_dir=str(out / "logs1"))
    s2 = LocalPipelineExecutor(
        [ExactFindDedups(str(out / "sigs"), str(out / "dups"), config=cfg)],
        tasks=1, workers=1, logging_dir=str(out / "logs2"))
    s3 = LocalPipelineExecutor(
        [reader(), Normalize(), ExactDedupFilter(str(out / "dups"), config=cfg),
         ParquetWriter(str(out / "parquet"), output_filename="${rank}.parquet", compression="zstd",
                       adapter=lambda self, doc: {"id": doc.id, "text": doc.text})],
        tasks=tasks, workers=workers, logging_dir=str(out / "logs3"))
    res = {}
    for name, ex in (("signatures_s", s1), ("find_dups_s", s2), ("filter_write_s", s3)):
        t0 = time.perf_counter()
        ex.run()
        res[name] = round(time.perf_counter() - t0, 3)
    return res


def read_datatrove(work: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parts = sorted((work / "datatrove_out" / "parquet").glob("*.parquet"))
    tabs = [pq.read_table(p, columns=["id", "text"]) for p in parts]
    return (pa.concat_tables(tabs) if tabs else pa.table({"id": [], "text": []})), {}


# --------------------------------------------------------------------------- polars (child)

def polars_normalize_expr():
    import polars as pl

    e = pl.col("text")
    for i, (pat, rep) in enumerate(POLARS_STEPS):
        if i == POLARS_PRE_NFC:
            e = e.str.normalize("NFC")
        e = e.str.replace_all(pat, rep)
    return e.str.strip_chars()


def child_polars(files: list[Path], out: Path) -> dict:
    import polars as pl

    t0 = time.perf_counter()
    schema = {"id": pl.String, "text": pl.String}
    df = pl.concat([pl.read_ndjson(f, schema=schema) for f in files])
    t1 = time.perf_counter()
    df = df.with_columns(polars_normalize_expr()).unique(subset=["text"], keep="first", maintain_order=True)
    t2 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    df.write_parquet(out / "out.parquet", compression="zstd")
    t3 = time.perf_counter()
    return {"read_s": round(t1 - t0, 3), "normalize_dedup_s": round(t2 - t1, 3), "write_s": round(t3 - t2, 3)}


def read_polars(work: Path):
    import pyarrow.parquet as pq

    return pq.read_table(work / "polars_out" / "out.parquet", columns=["id", "text"]), {}


def bench_child(tool: str, files: list[Path], work: Path, workers: int) -> dict:
    out = work / f"{tool}_out"
    res_file = work / f"{tool}_child.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", tool, "--_out", str(out),
           "--_result", str(res_file), "--workers", str(workers), "--_files", *map(str, files)]
    r = run_timed(cmd, work, work / f"{tool}.log")
    r["cmd"] = " ".join(cmd[:4]) + " ..."
    if res_file.exists():
        r["inner"] = json.loads(res_file.read_text())
    if r["rc"] != 0:
        r["error"] = Path(r["log"]).read_text(errors="replace")[-3000:]
    return r


# --------------------------------------------------------------------------- output check

def digest(table) -> dict:
    """Rows and order-independent digests of the ids and of the (id, text) rows."""
    import numpy as np
    import xxhash

    ids = table.column("id").to_pylist()
    texts = table.column("text").to_pylist()
    h_id = np.sort(np.fromiter((xxhash.xxh3_64_intdigest(str(i).encode()) for i in ids), np.uint64, len(ids)))
    h_row = np.sort(np.fromiter((xxhash.xxh3_64_intdigest(f"{i}\0{t}".encode()) for i, t in zip(ids, texts)), np.uint64, len(ids)))
    return {"rows": len(ids), "ids_digest": xxhash.xxh3_64_hexdigest(h_id.tobytes()),
            "rows_digest": xxhash.xxh3_64_hexdigest(h_row.tobytes()), "_ids": set(ids), "_texts": dict(zip(ids, texts))}


READERS = {"curate": read_curate, "datatrove": read_datatrove, "polars": read_polars}


# --------------------------------------------------------------------------- main

def fmt_table(rows: list[dict]) -> str:
    head = "| tool | wall s | docs/s | MB/s | rows out | peak RSS MB (tree) | peak PSS MB (tree) | notes |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("rc", 0) != 0:
            lines.append(f"| {r['tool']} | failed (rc {r['rc']}) | | | | | | see {r.get('log')} |")
            continue
        lines.append(
            f"| {r['tool']} | {r['wall_s']:.1f} | {r['docs_per_s']:,.0f} | {r['mb_per_s']:.2f} | {r.get('rows_out', '?'):,} | "
            f"{r['peak_rss_mb']:,.0f} | {r['peak_pss_mb']:,.0f} | {r.get('notes', '')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--corpus", nargs="+", default=[str(DATA / "corpus_100k.jsonl")], help="JSONL file(s)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N docs")
    ap.add_argument("--only", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--shards", type=int, default=2, help="split the input into this many files (1: use as is)")
    ap.add_argument("--workers", type=int, default=2, help="datatrove tasks and workers")
    ap.add_argument("--repeat", type=int, default=1, help="run each tool N times (interleaved); the table shows the fastest")
    ap.add_argument("--tmp", default=None, help="scratch folder (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder with the outputs")
    ap.add_argument("--no-check", action="store_true", help="skip reading the outputs back to compare them")
    ap.add_argument("--baseline", metavar="COMMIT", default=None,
                    help="also run curate as of COMMIT (bench/baseline.py), right after the working tree's curate")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--_out", help=argparse.SUPPRESS)
    ap.add_argument("--_result", help=argparse.SUPPRESS)
    ap.add_argument("--_files", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a._child:
        files = [Path(f) for f in a._files]
        res = child_datatrove(files, Path(a._out), a.workers) if a._child == "datatrove" else child_polars(files, Path(a._out))
        Path(a._result).write_text(json.dumps(res))
        return

    tools = [t.strip() for t in a.only.split(",") if t.strip()]
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        sys.exit(f"unknown tool(s) {bad}; choose from {TOOLS}")
    base_dir = None
    if a.baseline:
        from baseline import make_baseline

        base_dir = make_baseline(a.baseline)
        base_tool = "curate@" + (base_dir / "_SUCCESS").read_text().strip()[:7]
        tools.insert(tools.index("curate") + 1 if "curate" in tools else 0, base_tool)
        READERS[base_tool] = read_curate
    files = prepare_inputs(a.corpus, a.limit, a.shards)
    n_docs, n_bytes = count_docs(files)  # docs, uncompressed JSONL bytes (MB/s is over these)
    file_bytes = sum(f.stat().st_size for f in files)
    work = Path(a.tmp) if a.tmp else Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"input: {len(files)} file(s), {n_docs:,} docs, {n_bytes / 1e6:,.1f} MB: {', '.join(map(str, files))}", file=sys.stderr)
    print(f"scratch: {work}", file=sys.stderr)

    runs, checks = [], {}
    for rep in range(a.repeat):
        for tool in tools:
            tw = work / tool
            shutil.rmtree(tw, ignore_errors=True)
            tw.mkdir(parents=True)
            load = os.getloadavg()[0]
            print(f"running {tool} (run {rep + 1}/{a.repeat}, load {load:.1f}) ...", file=sys.stderr, flush=True)
            if tool == "curate" or tool.startswith("curate@"):
                r = bench_curate(files, tw, base_dir if tool.startswith("curate@") else None)
            else:
                r = bench_child(tool, files, tw, a.workers)
            r.update(tool=tool, run=rep + 1, loadavg_1m_before=load)
            r["docs_per_s"] = n_docs / r["wall_s"]
            r["mb_per_s"] = n_bytes / 1e6 / r["wall_s"]
            if tool.startswith("curate") and "processing_s" in r:
                r["notes"] = f"Ray start {r['ray_start_s']:.1f}s, processing {r['processing_s']:.1f}s " \
                             f"({n_docs / max(r['processing_s'], 1e-9):,.0f} docs/s)"
            elif tool in ("datatrove", "polars") and "inner" in r:
                r["notes"] = ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in r["inner"].items())
            if r["rc"] == 0 and not a.no_check and rep == a.repeat - 1:  # check the last run's output
                table, extra = READERS[tool](tw)
                d = digest(table)
                checks[tool] = d
                r["rows_out"] = d["rows"]
                r.update({k: v for k, v in d.items() if not k.startswith("_") and k != "rows"}, **extra)
            print(f"  {tool}: rc={r['rc']} wall={r['wall_s']:.1f}s rows_out={r.get('rows_out')}", file=sys.stderr)
            if r["rc"] != 0:
                print(r.get("error", ""), file=sys.stderr)
            runs.append(r)
    # the table shows each tool's fastest successful run (best of --repeat)
    rows = []
    for tool in tools:
        mine = [r for r in runs if r["tool"] == tool]
        good = [r for r in mine if r["rc"] == 0]
        best = dict(min(good, key=lambda r: r["wall_s"])) if good else dict(mine[-1])
        last = mine[-1]
        for k in ("rows_out", "ids_digest", "rows_digest", "dropped_rows"):
            if k in last:
                best[k] = last[k]
        if len(mine) > 1:
            best["notes"] = (best.get("notes", "") + f"; best of {len(mine)}: "
                             + "/".join(f"{r['wall_s']:.1f}" + (f" (rc {r['rc']})" if r["rc"] else "") for r in mine)
                             + " s").lstrip("; ")
        rows.append(best)

    # compare outputs
    verdict = []
    ok = [t for t in checks]
    if len(ok) >= 2:
        ref = ok[0]
        for t in ok[1:]:
            a_, b_ = checks[ref], checks[t]
            if a_["rows"] != b_["rows"]:
                verdict.append(f"ROW COUNT MISMATCH: {ref} {a_['rows']:,} vs {t} {b_['rows']:,}")
            if a_["rows_digest"] == b_["rows_digest"]:
                verdict.append(f"{t} output identical to {ref} (same ids and texts)")
            else:
                only_a = a_["_ids"] - b_["_ids"]
                only_b = b_["_ids"] - a_["_ids"]
                common_ids = a_["_ids"] & b_["_ids"]
                text_diff = [i for i in common_ids if a_["_texts"][i] != b_["_texts"][i]]
                msg = (f"{t} differs from {ref}: {len(only_a)} ids only in {ref}, {len(only_b)} only in {t}, "
                       f"{len(text_diff)} common ids with different text")
                if text_diff:
                    i = sorted(text_diff, key=lambda x: (len(str(x)), str(x)))[0]
                    x, y = a_["_texts"][i], b_["_texts"][i]
                    k = next((j for j in range(min(len(x), len(y))) if x[j] != y[j]), min(len(x), len(y)))
                    msg += f"; e.g. id {i}: {ref} {x[max(0, k - 30):k + 30]!r} vs {t} {y[max(0, k - 30):k + 30]!r}"
                if only_a or only_b:
                    msg += f"; e.g. ids {sorted(only_a, key=str)[:5]} / {sorted(only_b, key=str)[:5]}"
                verdict.append(msg)

    table = fmt_table(rows)
    print()
    print(f"Input: {n_docs:,} docs, {n_bytes / 1e6:,.1f} MB JSONL in {len(files)} file(s); "
          f"{os.cpu_count()} CPUs; Python {platform.python_version()}; "
          "load average before each run " + ", ".join(f"{r['loadavg_1m_before']:.1f}" for r in runs))
    print()
    print(table)
    print()
    for v in verdict:
        print("- " + v)

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    versions = {}
    for mod in ("curate", "datatrove", "polars", "ray", "pyarrow", "deltalake"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:  # noqa: BLE001
            pass
    result = {
        "benchmark": "bench_pipeline", "time": stamp, "argv": sys.argv[1:],
        "input": {"files": list(map(str, files)), "docs": n_docs, "jsonl_bytes": n_bytes, "file_bytes": file_bytes},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": versions, "results": rows, "runs": runs, "checks": verdict, "table": table,
    }
    path = RESULTS / f"bench_pipeline-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nresults: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}", file=sys.stderr)
    if not a.keep and not a.tmp:
        shutil.rmtree(work, ignore_errors=True)
    elif a.keep:
        print(f"outputs kept in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
