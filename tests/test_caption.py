"""Stage `caption` with real engines: the bundled Gemma 3 270M on CPU (llama.cpp) on real LJ Speech
transcripts, and the `openai` engine against a real llama.cpp server on loopback through
`curate run` on a real local Ray. Plus what is checked before Ray starts (template, params)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import EVALDATA, need_data, run_cli, write_pipeline
from test_synth_openai import FaultProxy, llama_server, proxy  # noqa: F401  (the real llama.cpp server and its fault proxy, reused)

pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the synth extra)")

from curate.annotation.caption import TEMPLATE, Caption, CaptionParams, support  # noqa: E402
from curate.pipelines.config import load_pipeline  # noqa: E402
from curate.pipelines.errors import ConfigError  # noqa: E402
from curate.pipelines.execution.apply import apply_stage, with_engine_columns  # noqa: E402
from curate.pipelines.stage import DROP_REASON, DROP_RULE  # noqa: E402

LJ = EVALDATA / "speech" / "ljspeech"


def lj_transcripts(n: int) -> list[tuple[str, str]]:
    need_data(LJ / "transcripts.tsv", "LJ Speech transcripts")
    lines = (LJ / "transcripts.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t", 1)) for line in lines if "\t" in line][:n]  # type: ignore[misc]


def transcripts_table(n: int = 2) -> pa.Table:
    """``n`` real transcripts, one empty, one flagged by transcribe's hallucination checks."""
    real = lj_transcripts(n)
    return pa.table({
        "id": [i for i, _ in real] + ["empty", "flagged"],
        "transcript": [t for _, t in real] + ["   ", "thank you for watching thank you for watching"],
        "transcript_flags": pa.array([[] for _ in real] + [[], ["repeated_ngram", "filler_phrase"]], pa.list_(pa.string())),
    })


def _example_captions() -> list[str]:
    return [line.removeprefix("Caption:").strip() for line in TEMPLATE.read_text(encoding="utf-8").splitlines()
            if line.startswith("Caption:") and line.strip() != "Caption:"]


def test_template_and_params_are_checked_before_ray_starts(tmp_path: Path) -> None:
    def load(stage_yaml: str) -> None:
        load_pipeline(write_pipeline(tmp_path / "p.yaml", f"""input: {{format: parquet, paths: [{tmp_path}]}}
stages:
  - caption: {stage_yaml}
output: {{dataset: {tmp_path}/out}}
"""))

    with pytest.raises(ConfigError, match=r"p\.yaml:3: .*template 'nope.jinja' not found"):
        load("{template: nope.jinja}")
    (tmp_path / "no_var.jinja").write_text("Describe the image.\nCaption:", encoding="utf-8")
    with pytest.raises(ConfigError, match="never puts the transcript in the prompt"):
        load("{template: no_var.jinja}")
    (tmp_path / "broken.jinja").write_text("{{ transcript ", encoding="utf-8")
    with pytest.raises(ConfigError, match="broken.jinja: TemplateSyntaxError"):
        load("{template: broken.jinja}")
    with pytest.raises(ConfigError, match=r"stages\[0\]\.caption\.engine\.name"):
        load("{engine: gpt}")
    with pytest.raises(ConfigError, match="engine openai needs a model name"):
        load("{engine: openai}")
    (tmp_path / "mine.jinja").write_text("Transcript: {{ transcript }}\nClean caption:\n", encoding="utf-8")
    load("{template: mine.jinja, drop_flagged: false}")  # valid


def test_the_prompt_holds_the_transcript_and_the_pixmo_rules() -> None:
    stage = Caption(CaptionParams(max_transcript_chars=40))
    prompt = stage.prompt("  um there are three cats on a red sofa and a sign saying OPEN  ")
    assert prompt.endswith("Transcript: um there are three cats on a red sofa an\nCaption:")  # cut to 40 chars, stripped
    for rule in ("counts", "text exactly as written", "add nothing", "never mention the speaker"):
        assert rule in prompt
    a, b = stage.request("one"), stage.request("two")
    assert a.seed != b.seed and stage.request("one") == a and a.stop == ("\n",) and a.temperature == 0.0


def test_support_is_the_share_of_caption_words_the_speaker_said() -> None:
    said = "um so there's a a red car, no wait, two red cars parked on the left"
    assert support("Two red cars parked on the left.", said) == 1.0
    assert support("A red car on the left, next to a blue house.", said) == pytest.approx(7 / 11)
    assert support("A beach with five people playing volleyball.", said) == pytest.approx(1 / 7)  # "a"
    assert support("", said) == 0.0


def _apply(stage: Caption, table: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    out, report = apply_stage(stage, "caption", with_engine_columns(table))
    return out, report.counters


def test_bundled_gemma_captions_real_transcripts_and_a_rerun_comes_from_the_cache(tmp_path: Path) -> None:
    table = transcripts_table(2)
    stage = Caption(CaptionParams(cache_uri=str(tmp_path / "cache")))
    stage.check(tmp_path)
    out, counters = _apply(stage, table)
    rows = {r["id"]: r for r in out.to_pylist()}
    real = [i for i in rows if i.startswith("LJ")]
    assert len(real) == 2
    for rid in real:
        r = rows[rid]
        assert r[DROP_RULE] is None, r
        assert r["caption"] and r["caption"].strip() == r["caption"], r
        assert r["caption_model"] == "llama_cpp:gemma-3-270m-q4_k_m"
        assert r["transcript"] == dict(lj_transcripts(2))[rid]  # the raw transcript is kept
        assert r["caption"] not in _example_captions(), "the model copied the prompt's example instead of the transcript"
        assert stage.prompt(r["transcript"]).count(r["transcript"].strip()) == 1
    assert (rows["empty"][DROP_RULE], rows["flagged"][DROP_RULE]) == ("empty_transcript", "flagged_transcript")
    assert "repeated_ngram, filler_phrase" in rows["flagged"][DROP_REASON]
    assert rows["empty"]["caption"] is None and rows["empty"]["caption_model"] is None
    assert counters["requests"] == counters["engine_calls"] == 2 and counters["cache_hits"] == 0
    assert counters["empty_transcripts"] == 1 and counters["flagged_transcripts"] == 1
    assert counters["completion_tokens"] > 0 and counters["prompt_tokens"] > 100

    again = Caption(CaptionParams(cache_uri=str(tmp_path / "cache")))  # a new worker: nothing in memory
    again.check(tmp_path)
    out2, counters2 = _apply(again, table)
    assert (counters2["engine_calls"], counters2["cache_hits"]) == (0, 2)
    assert out2.column("caption").to_pylist() == out.column("caption").to_pylist()
    assert not again.generator.loaded  # the model was never loaded

    # a short transcript that is no image description: the 270M model tends to answer with the
    # prompt's example; such a caption must not pass as this clip's
    short = pa.table({"id": ["short"], "transcript": ["has never been surpassed."], "transcript_flags": pa.array([[]], pa.list_(pa.string()))})
    row = _apply(stage, short)[0].to_pylist()[0]
    if row[DROP_RULE] is None:
        assert support(row["caption"], "has never been surpassed.") >= 0.5, row
    else:
        assert row[DROP_RULE] == "unfaithful_caption" and "occur in the transcript" in row[DROP_REASON], row
        assert row["caption"] is None


@pytest.mark.slow
def test_openai_engine_through_curate_run_with_retries_drops_and_the_cache(tmp_path: Path, proxy: FaultProxy) -> None:
    pq.write_table(transcripts_table(2), tmp_path / "transcripts.parquet")
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: parquet, paths: [{tmp_path}/transcripts.parquet]}}
stages:
  - caption:
      engine: {{name: openai, base_url: "{proxy.url}", model: gemma-3-270m, concurrency: 1, backoff: 0.05}}
    run: {{batch_size: 4}}
output: {{dataset: {tmp_path}/out, keep_dropped: true}}
ray: {{num_cpus: 2}}
""")
    # the real server behind a proxy: the first request gets a 429 (retried), the second a 400
    # (not retried: its row is dropped with the server's message), every later one is forwarded
    proxy.script = ["429", "400"]
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert proxy.requests == 3 and proxy.forwarded == 1
    df = pl.read_delta(str(tmp_path / "out"))
    refs = dict(lj_transcripts(2))
    assert df.height == 1 and df["id"][0] in refs
    assert df["caption_model"][0] == "openai:gemma-3-270m" and df["caption"][0].strip()
    assert df["transcript"][0] == refs[df["id"][0]]
    dropped = {r["id"]: r for r in pl.read_delta(str(tmp_path / "out.dropped")).iter_rows(named=True)}
    failed = next(i for i in refs if i not in set(df["id"]))
    assert {i: (r["stage"], r["rule"]) for i, r in dropped.items()} == {
        "empty": ("caption", "empty_transcript"), "flagged": ("caption", "flagged_transcript"), failed: ("caption", "request_failed")}
    assert "HTTP 400" in dropped[failed]["reason"] and "injected 400" in dropped[failed]["reason"]
    run = json.loads(run_cli("versions", str(tmp_path / "out"), "--json").stdout)[0]["run"]
    st = {s["stage"]: s for s in run["stages"]}["caption"]
    assert (st["in"], st["out"], st["dropped"]) == (4, 1, 3)
    assert (st["counters"]["engine_calls"], st["counters"]["failed_requests"], st["counters"]["cache_hits"]) == (2, 1, 0)
    meta = run["stage_metadata"]["caption"]
    assert meta["model"] == "openai:gemma-3-270m" and len(meta["template_hash"]) == 16

    # again: the caption made is served from the cache; only the failed row asks the server
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr
    assert proxy.requests == 4 and proxy.forwarded == 2
    assert sorted(pl.read_delta(str(tmp_path / "out"))["id"]) == sorted(refs)
    st = {s["stage"]: s for s in json.loads(run_cli("versions", str(tmp_path / "out"), "--json").stdout)[0]["run"]["stages"]}["caption"]
    assert (st["counters"]["engine_calls"], st["counters"]["cache_hits"], st["out"]) == (1, 1, 2)


def test_actors_holding_every_cpu_fail_fast_instead_of_waiting_forever(tmp_path: Path) -> None:
    # caption's actor would hold both CPUs and leave the reader none: Ray Data would wait forever
    pq.write_table(pa.table({"id": ["a"], "transcript": ["two red cars on the left"]}), tmp_path / "t.parquet")
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: parquet, paths: [{tmp_path}/t.parquet]}}
stages:
  - caption: {{drop_flagged: false}}
    run: {{cpus: 2}}
output: {{dataset: {tmp_path}/out}}
ray: {{num_cpus: 2}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr
    assert "(caption: 1 x 2) and the reader needs 0.5, but the Ray cluster has 2" in out.stderr
    assert not (tmp_path / "out" / "_delta_log").exists()
