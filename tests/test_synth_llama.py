"""Real generation with the bundled Gemma 3 270M on CPU (llama.cpp), through `curate run` on a real
local Ray: provenance columns, a versioned dataset, and a rerun served entirely by the cache."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from helpers import run_cli, write_pipeline

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the synth extra)")

from curate.synth.engines import Completion, LlamaCppEngine, Request  # noqa: E402
from curate.synth.generation import EngineParams  # noqa: E402

pytestmark = pytest.mark.slow


def test_llama_cpp_generates_deterministically_per_seed() -> None:
    e = LlamaCppEngine(EngineParams())
    e.setup(threads=1)
    got: dict[int, Completion] = {}
    reqs = [Request("The water cycle is", 12, 0.6, 0.95, 7), Request("The water cycle is", 12, 0.6, 0.95, 7),
            Request("The water cycle is", 12, 0.6, 0.95, 8)]
    e.generate(reqs, lambda i, r: got.__setitem__(i, r))  # type: ignore[arg-type]
    assert all(isinstance(got[i], Completion) for i in range(3))
    assert got[0].text == got[1].text and got[0].text.strip()
    assert got[0].completion_tokens == 12 and got[0].finish_reason == "length" and got[0].prompt_tokens >= 4
    e.close()


def test_generate_textbooks_on_cpu_then_a_rerun_from_the_cache(tmp_path: Path) -> None:
    pipe = write_pipeline(tmp_path / "t.yaml", f"""stages:
  - generate_textbooks:
      topics: [photosynthesis, fractions]
      formats: [textbook]
      audiences: [young_children]
      sampling: {{max_tokens: 16}}
    run: {{batch_size: 1}}
  - synth_checks: {{drop_truncated: false, min_words: 1}}
output: {{dataset: {tmp_path}/out}}
ray: {{num_cpus: 2}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    df = pl.read_delta(str(tmp_path / "out")).sort("id")
    assert len(df) == 2
    for col in ("text", "audience", "format", "model", "engine", "topic", "seed_id", "seed_hash", "template", "template_hash",
                "sampling", "sample", "request_seed", "prompt", "prompt_tokens", "completion_tokens", "finish_reason", "parent_id"):
        assert col in df.columns, col
    row = df.row(0, named=True)
    assert row["engine"] == "llama_cpp" and row["model"] == "gemma-3-270m-q4_k_m" and row["audience"] == "young_children"
    assert row["format"] == "textbook" and json.loads(row["sampling"])["max_tokens"] == 16
    assert row["completion_tokens"] > 0 and row["text"].strip() and "young children" in row["prompt"]
    first = json.loads(run_cli("versions", str(tmp_path / "out"), "--json").stdout)[0]["run"]
    c = {s["stage"]: s for s in first["stages"]}["generate_textbooks"]["counters"]
    assert (c["engine_calls"], c["cache_hits"]) == (2, 0)
    dry = run_cli("run", str(pipe), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "already cached: 2" in dry.stdout and "to generate: 0" in dry.stdout, dry.stdout + dry.stderr

    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    runs = json.loads(run_cli("versions", str(tmp_path / "out"), "--json").stdout)
    assert [r["version"] for r in runs] == [1, 0]
    c = {s["stage"]: s for s in runs[0]["run"]["stages"]}["generate_textbooks"]["counters"]
    assert (c["engine_calls"], c["cache_hits"], c["requests"]) == (0, 2, 2)
    assert pl.read_delta(str(tmp_path / "out")).sort("id")["text"].to_list() == df["text"].to_list()
