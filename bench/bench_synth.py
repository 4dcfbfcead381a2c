"""Tokens/s of generate_textbooks through `curate run` vs the raw engine on the same prompts.

One run: the same grid (topics x formats x audiences, one sample each) is generated twice with
the llama_cpp engine and the bundled Gemma 3 270M on one thread:

1. raw: ``LlamaCppEngine.generate`` on the stage's own requests (same prompts, seeds, sampling),
   in this process, timed from the model load to the last completion;
2. ``curate run`` of a pipeline with the stage (``cache: false``, one actor, ``cpus: 1``),
   reported two ways: the stage's generation time (its worker seconds in the commit metadata: the
   model load, which the stage does on its first cache miss, and the generation, as for raw) and end to end (the whole command, including
   Ray's start, the model load and the Delta commit).

    python bench/bench_synth.py [--topics 4] [--max-tokens 64]

Figures are recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOPICS = ["photosynthesis", "fractions", "the water cycle", "magnetism", "volcanoes", "the French revolution", "prime numbers", "cells"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topics", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=64)
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from curate.synth.engines import LlamaCppEngine
    from curate.synth.textbooks import GenerateTextbooks, TextbookParams

    params = dict(topics=TOPICS[: args.topics], formats=["textbook", "story"], audiences=["young_children", "college"],
                  sampling={"max_tokens": args.max_tokens}, engine="llama_cpp", cache=False)
    stage = GenerateTextbooks(TextbookParams(**params))  # type: ignore[arg-type]
    stage.check(Path.cwd())
    reqs = [r for row in stage.source_rows() or [] for (_c, _k, r) in stage.requests(row)]

    eng = LlamaCppEngine(stage.params.engine)
    t0 = time.perf_counter()
    eng.setup(threads=1)
    done: dict[int, object] = {}
    eng.generate(reqs, done.__setitem__)
    raw_s = time.perf_counter() - t0
    raw_tokens = sum(c.completion_tokens for c in done.values())  # type: ignore[attr-defined]
    eng.close()

    with tempfile.TemporaryDirectory() as tmp:
        pipe = Path(tmp) / "bench.yaml"
        pipe.write_text(json.dumps({
            "stages": [{"generate_textbooks": params, "run": {"cpus": 1, "concurrency": 1, "batch_size": 8}}],
            "output": {"dataset": f"{tmp}/out"}, "ray": {"num_cpus": 2},
        }))
        exe = Path(sys.executable).parent / "curate"
        t0 = time.perf_counter()
        subprocess.run([str(exe), "run", str(pipe), "--no-progress"], check=True, cwd=tmp)
        e2e_s = time.perf_counter() - t0
        meta = json.loads(subprocess.run([str(exe), "versions", f"{tmp}/out", "--json"], check=True, capture_output=True, text=True).stdout)[0]["run"]
    st = {s["stage"]: s for s in meta["stages"]}["generate_textbooks"]
    tokens = st["counters"]["completion_tokens"]
    stage_s = st.get("worker_seconds") or st.get("seconds")
    print(f"prompts: {len(reqs)}, max_tokens {args.max_tokens}, model {eng.model}, 1 thread")
    print(f"raw engine:         {raw_tokens} tokens in {raw_s:.1f}s = {raw_tokens / raw_s:.1f} tokens/s")
    if stage_s:
        print(f"curate run (stage): {tokens} tokens in {stage_s:.1f}s = {tokens / stage_s:.1f} tokens/s ({tokens / stage_s / (raw_tokens / raw_s):.0%} of raw)")
    print(f"curate run (end to end, Ray start, model load, commit): {e2e_s:.1f}s = {tokens / e2e_s:.1f} tokens/s ({tokens / e2e_s / (raw_tokens / raw_s):.0%} of raw)")


if __name__ == "__main__":
    main()
