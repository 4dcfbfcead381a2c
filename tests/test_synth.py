"""curate.synth without a model: the grid and its determinism, prompt templates, the cache key,
the post-generation checks, the vLLM engine's request/response mapping (against a clearly named
fake of vLLM's output objects: vLLM cannot be installed here), `curate run --dry-run`, and that no
engine library is imported unless chosen. Generation itself: tests/test_synth_llama.py and
tests/test_synth_openai.py."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from curate.pipelines.errors import ConfigError
from curate.pipelines.execution.apply import run_on_table
from curate.synth.cache import request_key
from curate.synth.checks import ChecksParams, SynthChecks
from curate.synth.engines import Request, completion_from_vllm, vllm_sampling_kwargs
from curate.synth.textbooks import GenerateTextbooks, TextbookParams
from helpers import run_cli, write_pipeline


def stage(tmp_path: Path, **kw: object) -> GenerateTextbooks:
    s = GenerateTextbooks(TextbookParams(**kw))  # type: ignore[arg-type]
    s.check(tmp_path)
    return s


def test_grid_is_topics_x_formats_x_audiences_x_languages(tmp_path: Path) -> None:
    (tmp_path / "topics.txt").write_text("# a comment\nalgebra\nbirds\n\nclouds\nbirds\n")
    s = stage(tmp_path, topics_file="topics.txt", formats=["textbook", "story"], audiences=["young_children", "college"],
              languages=["English", "French"], samples=3)
    rows = list(s.source_rows() or [])
    assert len(rows) == 3 * 2 * 2 * 2  # duplicate topic and comment left out
    assert len({r["id"] for r in rows}) == len(rows)
    reqs = [r for row in rows for r in s.requests(row)]
    assert len(reqs) == 24 * 3
    cell, k, req = reqs[0]
    assert (cell["seed_text"], cell["format"], cell["audience"], cell["language"], k) == ("algebra", "textbook", "young_children", "English", 0)
    assert "textbook about algebra" in req.prompt and "young children" in req.prompt and "French" not in req.prompt
    french = next(r for c, _k, r in reqs if c["language"] == "French" and c["format"] == "story")
    assert "in French" in french.prompt and french.prompt.rstrip().endswith("Once upon a time,")
    # every sample has its own seed; the same grid gives the same seeds, another seed others
    assert len({r.seed for _c, _k, r in reqs}) == len(reqs)
    again = stage(tmp_path, topics_file="topics.txt", formats=["textbook", "story"], audiences=["young_children", "college"],
                  languages=["English", "French"], samples=3)
    assert [r for row in again.source_rows() or [] for _c, _k, r in again.requests(row)] == [r for _c, _k, r in reqs]
    other = stage(tmp_path, topics_file="topics.txt", formats=["textbook", "story"], audiences=["young_children", "college"],
                  languages=["English", "French"], samples=3, seed=1)
    assert {r.seed for row in other.source_rows() or [] for _c, _k, r in other.requests(row)}.isdisjoint({r.seed for _c, _k, r in reqs})


def test_max_seeds_selects_deterministically(tmp_path: Path) -> None:
    topics = [f"topic {i}" for i in range(20)]
    pick = lambda seed: [r["topic"] for r in stage(tmp_path, topics=topics, max_seeds=5, seed=seed).source_rows() or []]  # noqa: E731
    assert pick(3) == pick(3) and len(pick(3)) == 5
    assert pick(3) != pick(4)
    assert pick(3) == sorted(pick(3), key=topics.index)  # the list's order is kept


def test_transformation_rows_and_sample_fraction(tmp_path: Path) -> None:
    s = stage(tmp_path, mode="transformation", formats=["rewrite_qa", "rewrite_wikipedia"], audiences=["college"], max_seed_chars=10)
    assert s.source_rows() is None and s.input_columns() == ("text",)
    cells = s.requests({"id": "doc1", "text": "0123456789 and more that is cut"})
    assert [c["format"] for c, _k, _r in cells] == ["rewrite_qa", "rewrite_wikipedia"]
    assert "0123456789\n" in cells[0][2].prompt and "and more" not in cells[0][2].prompt
    half = stage(tmp_path, mode="transformation", sample_fraction=0.5, seed=7)
    chosen = [half.selected({"id": f"d{i}"}) for i in range(400)]
    assert 150 < sum(chosen) < 250 and chosen == [half.selected({"id": f"d{i}"}) for i in range(400)]


def test_bad_params_and_templates_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs `topics`"):
        TextbookParams()
    with pytest.raises(ValueError, match="needs a model name"):
        TextbookParams(topics=["x"], engine={"name": "openai"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no template for format 'poem'.*shipped: blog_post"):
        stage(tmp_path, topics=["x"], formats=["poem"])
    (tmp_path / "poem.jinja").write_text("A poem about {{ topic }} for {{ audience_desc }}:\n")
    s = stage(tmp_path, topics=["the moon"], formats=["poem"], templates={"poem": "poem.jinja"}, audiences=["sailors"])
    assert s.requests(next(iter(s.source_rows() or [])))[0][2].prompt == "A poem about the moon for sailors:\n"
    (tmp_path / "bad.jinja").write_text("{% if %}")
    with pytest.raises(ConfigError, match="template 'bad'"):
        stage(tmp_path, topics=["x"], formats=["bad"], templates={"bad": "bad.jinja"})


def test_cache_key_covers_prompt_model_engine_sampling_and_sample() -> None:
    r = Request("p", 16, 0.6, 0.95, 1)
    base = request_key("llama_cpp", "m", r, 0)
    assert base == request_key("llama_cpp", "m", Request("p", 16, 0.6, 0.95, 1), 0)
    variants = [
        request_key("openai", "m", r, 0), request_key("llama_cpp", "m2", r, 0), request_key("llama_cpp", "m", r, 1),
        request_key("llama_cpp", "m", dataclasses.replace(r, prompt="q"), 0),
        request_key("llama_cpp", "m", dataclasses.replace(r, temperature=0.7), 0),
        request_key("llama_cpp", "m", dataclasses.replace(r, max_tokens=17), 0),
        request_key("llama_cpp", "m", dataclasses.replace(r, seed=2), 0),
        request_key("llama_cpp", "m", dataclasses.replace(r, stop=("\n",)), 0),
        request_key("llama_cpp", "m", dataclasses.replace(r, frequency_penalty=0.5), 0),
        request_key("llama_cpp", "m", dataclasses.replace(r, presence_penalty=0.5), 0),
    ]
    assert len({base, *variants}) == len(variants) + 1


# ---------------------------------------------------------------- vLLM mapping (fake vLLM objects)


@dataclasses.dataclass
class FakeVllmCompletionOutput:
    """Stands in for vllm.CompletionOutput (vLLM cannot be installed on these machines)."""

    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclasses.dataclass
class FakeVllmRequestOutput:
    """Stands in for vllm.RequestOutput."""

    prompt_token_ids: list[int]
    outputs: list[FakeVllmCompletionOutput]


def test_vllm_request_and_response_mapping() -> None:
    kw = vllm_sampling_kwargs(Request("p", 64, 0.6, 0.95, 42, ("\n\n",)))
    assert kw == {"max_tokens": 64, "temperature": 0.6, "top_p": 0.95, "seed": 42, "stop": ["\n\n"]}
    assert "stop" not in vllm_sampling_kwargs(Request("p", 64, 0.6, 0.95, 42))
    assert vllm_sampling_kwargs(Request("p", 64, 0.6, 0.95, 42, (), 0.5, 0.25))["frequency_penalty"] == 0.5
    c = completion_from_vllm(FakeVllmRequestOutput([1, 2, 3], [FakeVllmCompletionOutput("hello", [7, 8], "length")]))
    assert (c.text, c.prompt_tokens, c.completion_tokens, c.finish_reason) == ("hello", 3, 2, "length")


def test_no_engine_library_is_imported_unless_chosen(tmp_path: Path) -> None:
    code = """
import sys
from pathlib import Path
from curate.synth.textbooks import GenerateTextbooks, TextbookParams
for engine in ({"name": "llama_cpp"}, {"name": "vllm", "model": "m"}, {"name": "openai", "model": "m"}):
    s = GenerateTextbooks(TextbookParams(topics=["a"], engine=engine))
    s.check(Path("."))
    s.describe_plan(); s.metadata(); list(s.source_rows())
print(sorted(m for m in ("vllm", "llama_cpp", "httpx", "torch", "ray") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_synth_checks_rules() -> None:
    prompt = "The following is a chapter from a textbook about birds, written for college students. " * 2
    ok = " ".join(f"word{i}" for i in range(30))
    rows = [
        {"id": "ok", "text": ok, "finish_reason": "stop", "prompt": prompt},
        {"id": "cut", "text": ok, "finish_reason": "length", "prompt": prompt},
        {"id": "short", "text": "too few words", "finish_reason": "stop", "prompt": prompt},
        {"id": "echo", "text": ok + " " + prompt[-100:], "finish_reason": "stop", "prompt": prompt},
        {"id": "loop", "text": "the bird is a bird " * 10, "finish_reason": "stop", "prompt": prompt},
    ]
    table = run_on_table(SynthChecks(ChecksParams()), pa.Table.from_pylist(rows))
    rules = dict(zip(table.column("id").to_pylist(), table.column("_drop_rule").to_pylist()))
    assert rules == {"ok": None, "cut": "truncated", "short": "too_short", "echo": "prompt_echo", "loop": "repetition"}
    reasons = dict(zip(table.column("id").to_pylist(), table.column("_drop_reason").to_pylist()))
    assert reasons["cut"] == "the engine stopped at max_tokens (finish_reason length) after 30 words"
    assert reasons["short"] == "3 words, fewer than min_words 20"
    assert reasons["echo"].startswith("the text repeats the 80 characters at the end of its prompt: ")
    assert reasons["loop"] == "89% of its word 4-grams are repeats (max_repeated_ngrams 0.3)"
    relaxed = run_on_table(SynthChecks(ChecksParams(drop_truncated=False, min_words=0, echo_chars=0, max_repeated_ngrams=1)), pa.Table.from_pylist(rows))
    assert relaxed.column("_drop_rule").null_count == len(rows)


def test_dry_run_prints_the_grid_and_estimates_without_running(tmp_path: Path) -> None:
    pipe = write_pipeline(tmp_path / "t.yaml", f"""stages:
  - generate_textbooks:
      topics: [algebra, birds, clouds]
      formats: [textbook, blog_post]
      audiences: [young_children, college]
      samples: 2
      sampling: {{max_tokens: 100}}
      engine: {{name: llama_cpp, tokens_per_second: 50}}
    run: {{concurrency: 2}}
  - synth_checks: {{}}
output: {{dataset: {tmp_path}/out}}
""")
    out = run_cli("run", str(pipe), "--dry-run", cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "grid cells: 12 (3 seeds x 2 formats x 2 audiences x 1 languages)" in out.stdout
    assert "prompts: 24" in out.stdout and "already cached: 0" in out.stdout
    assert "completion tokens (at most): 2400" in out.stdout
    assert "estimated time (at most): 24s at 50 tokens/s x 2 actor(s)" in out.stdout
    assert "synth_checks (no plan to describe)" in out.stdout
    assert not (tmp_path / "out").exists()


def test_request_cache_on_a_url_filesystem() -> None:
    """The cache goes through curate.pipelines.fs: the same code on a local folder or an fsspec URL
    (memory:// here; s3:// and gs:// with the output's storage_options)."""
    from curate.synth.cache import RequestCache
    from curate.synth.engines import Completion

    cache = RequestCache("memory://synth-test/out/_curate_synth_cache", {})
    key = request_key("llama_cpp", "m", Request("p", 8, 0.6, 0.95, 1), 0)
    assert cache.get(key) is None and cache.count() == 0
    cache.put(key, Completion("text", 3, 8, "length"))
    assert cache.get(key) == Completion("text", 3, 8, "length") and cache.count() == 1


def test_an_engine_whose_package_is_missing_is_a_config_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install curate[annotation]` alone has no llama.cpp (nothing is compiled): a caption or
    generator stage on the llama_cpp engine says so before Ray starts. (This environment has every
    package, so the lookup is told that llama_cpp is not there.)"""
    import importlib.util

    from curate.annotation.caption import Caption, CaptionParams

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ConfigError) as info:
        Caption(CaptionParams()).check(tmp_path)
    assert "stage caption: engine 'llama_cpp' needs the package llama-cpp-python" in info.value.message
    assert "curate[synth]" in (info.value.hint or "") and "openai" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="generate_textbooks: engine 'llama_cpp' needs"):
        GenerateTextbooks(TextbookParams(topics=["volcanoes"])).check(tmp_path)
    Caption(CaptionParams(engine={"name": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"})).check(tmp_path)  # not needed there
