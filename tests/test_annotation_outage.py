"""Issue 16's repro, with real parts: spoken clips (espeak-ng) in a clips dataset, the annotation
pipeline (transcribe with faster-whisper tiny.en, caption with the `openai` engine) through
`curate run` on a real local Ray, the caption engine a real llama.cpp server on loopback.

The engine is down for the first run: the run fails (exit 6, the engine's URL and error printed)
and publishes nothing. The engine comes back on the same address: the next run captions every
clip exactly once, from the transcripts the failed run made (Whisper is not run again)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from annotation_fixtures import espeak_clip
from helpers import run_cli, write_pipeline
from test_synth_openai import FaultProxy, free_port, llama_server  # noqa: F401  (the real llama.cpp server, reused)

pytest.importorskip("faster_whisper", reason="needs faster-whisper (the annotation extra)")

pytestmark = pytest.mark.slow

SENTENCES = [
    "A red bicycle leans against a white wall next to two green doors.",
    "Three small boats float on a calm lake under a cloudy sky.",
    "A black cat sleeps on a wooden table beside a bowl of oranges.",
]
#: what caption may still drop a clip for, for good (the small model's caption is not faithful)
PERMANENT = {"unfaithful_caption", "truncated_caption", "empty_caption", "empty_transcript", "flagged_transcript"}


def test_a_caption_engine_outage_loses_no_clip_and_redoes_no_transcript(tmp_path: Path, llama_server: str) -> None:  # noqa: F811
    for i, text in enumerate(SENTENCES):
        espeak_clip(tmp_path / "wav" / f"clip{i}.wav", text)
    env = {"HF_HUB_OFFLINE": "1"}
    clips = write_pipeline(tmp_path / "clips.yaml", f"""input: {{format: audio, paths: [{tmp_path}/wav]}}
output: {{dataset: {tmp_path}/clips, mode: append}}
""")
    made = run_cli("run", str(clips), "--no-progress", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    port = free_port()
    pipe = write_pipeline(tmp_path / "annotations.yaml", f"""input: {{format: delta, paths: [{tmp_path}/clips], since_version: last}}
stages:
  - transcribe: {{}}
    run: {{cpus: 1, concurrency: 1}}
  - caption:
      engine: {{name: openai, base_url: "http://127.0.0.1:{port}/v1", model: gemma-3-270m, max_retries: 1, backoff: 0.05}}
    run: {{cpus: 0.5, concurrency: 1, batch_size: 8}}
output: {{dataset: {tmp_path}/out, mode: append, keep_dropped: true}}
ray: {{num_cpus: 2}}
""")
    down = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, env=env, timeout=600)
    assert down.returncode == 6, down.stderr
    err = " ".join(down.stderr.split())
    assert "the run failed and published nothing: stage caption:" in err and f"http://127.0.0.1:{port}/v1/completions" in err
    assert "connection error" in err and "max_failed_fraction 0" in err
    assert not (tmp_path / "out" / "_delta_log").exists()

    proxy = FaultProxy(llama_server, port=port)  # the engine is back, at the same address
    try:
        up = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, env=env, timeout=600)
        assert up.returncode == 0, up.stderr
        df = pl.read_delta(str(tmp_path / "out"))
        dropped = pl.read_delta(str(tmp_path / "out.dropped")) if (tmp_path / "out.dropped" / "_delta_log").exists() else pl.DataFrame({"id": [], "rule": []})
        ids = sorted(pl.read_delta(str(tmp_path / "clips"))["id"])
        assert sorted([*df["id"], *dropped["id"]]) == ids  # every clip exactly once
        assert set(dropped["rule"]) <= PERMANENT, dropped
        assert df["caption"].drop_nulls().len() == df.height and df["caption_model"].unique().to_list() == ["openai:gemma-3-270m"]
        assert df["transcript"].drop_nulls().len() == df.height
        run = json.loads(run_cli("versions", str(tmp_path / "out"), "--json").stdout)[0]["run"]
        stages = {s["stage"]: s for s in run["stages"]}
        assert stages["transcribe"]["counters"].get("audio_ms", 0) == 0  # no clip transcribed again
        asked = stages["caption"]["counters"]["engine_calls"]
        assert asked == proxy.requests == len(ids) - len(dropped.filter(pl.col("rule").is_in(["empty_transcript", "flagged_transcript"])))
        assert asked >= 2, dropped  # the engine was asked for (nearly) every clip: Whisper heard them
        assert run["pending"] is None and run["retried"]["files_from_journal"] >= 1

        again = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, env=env, timeout=600)
        assert again.returncode == 0, again.stderr
        assert pl.read_delta(str(tmp_path / "out")).height == df.height and proxy.requests == asked  # nothing twice
    finally:
        proxy.close()
