#!/usr/bin/env python3
"""Where Ray start-up time goes for a 2-CPU local ``curate run`` (issue 8: "cut what curate adds").

Each configuration runs in a fresh interpreter (as ``curate run`` does) and reports, in seconds:

  import_ray       ``import ray`` + ``import ray.data`` (curate imports both before ``ray.init``)
  import_curate    ``curate.pipelines.runner`` and the minhash stage (pyarrow, numpy, pydantic, native)
  init             ``ray.init(...)`` with the configuration's options (GCS, raylet, workers pool)
  first_task       the first trivial task's round trip (a worker process starting, importing Ray)
  two_tasks        two tasks at once after that (both CPUs' workers)
  data_first       a first tiny Ray Data ``map_batches`` + materialise (its executor's start-up)
  shutdown         ``ray.shutdown()``

Configurations: ``curate`` (runner.py's options: no dashboard, log_to_driver off, Ray's logging set
up, a ``runtime_env`` with ``env_vars: {PYTHONPATH}`` for plugin stages), ``curate-no-runtime-env``
(the same without the runtime_env), ``ray-default`` (``ray.init(num_cpus=2)``: dashboard on).

usage: .venv/bin/python bench/bench_minhash_startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r'''
import json, logging, os, sys, time
cfg = sys.argv[1]
out = {}
t = time.perf_counter()
import ray, ray.data
out["import_ray"] = time.perf_counter() - t
t = time.perf_counter()
import curate.pipelines.runner  # noqa: F401
import curate.filters.minhash_dedup  # noqa: F401
out["import_curate"] = time.perf_counter() - t
kw = {"num_cpus": 2}
if cfg.startswith("curate"):
    kw.update(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False, configure_logging=True)
    if cfg == "curate":
        kw["runtime_env"] = {"env_vars": {"PYTHONPATH": os.getcwd()}}
t = time.perf_counter()
ray.init(**kw)
out["init"] = time.perf_counter() - t

@ray.remote(num_cpus=1)
def f(x):
    return os.getpid()

t = time.perf_counter()
ray.get(f.remote(0))
out["first_task"] = time.perf_counter() - t
t = time.perf_counter()
ray.get([f.remote(i) for i in range(2)])
out["two_tasks"] = time.perf_counter() - t
import pyarrow as pa
t = time.perf_counter()
ray.data.from_arrow(pa.table({"x": list(range(1000))})).map_batches(lambda b: b, batch_format="pyarrow").materialize()
out["data_first"] = time.perf_counter() - t
t = time.perf_counter()
ray.shutdown()
out["shutdown"] = time.perf_counter() - t
print(json.dumps(out))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--configs", default="curate,curate-no-runtime-env,ray-default")
    a = ap.parse_args()
    rows: dict[str, list[dict[str, float]]] = {}
    for rep in range(a.repeat):
        for cfg in a.configs.split(","):
            load = os.getloadavg()[0]
            t0 = __import__("time").perf_counter()
            res = subprocess.run([sys.executable, "-c", CHILD, cfg], capture_output=True, text=True, env=dict(os.environ, RAY_DEDUP_LOGS="0"))
            wall = __import__("time").perf_counter() - t0
            if res.returncode:
                print(res.stderr[-2000:], file=sys.stderr)
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            r["process_wall"], r["load"] = wall, load
            rows.setdefault(cfg, []).append(r)
            print(cfg, rep + 1, json.dumps({k: round(v, 2) for k, v in r.items()}), file=sys.stderr)
    keys = ["import_ray", "import_curate", "init", "first_task", "two_tasks", "data_first", "shutdown", "process_wall", "load"]
    print("| config | " + " | ".join(keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for cfg, rs in rows.items():
        print(f"| {cfg} (median of {len(rs)}) | " + " | ".join(f"{statistics.median(r[k] for r in rs):.2f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
