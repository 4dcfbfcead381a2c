"""`decontaminate` stage: benchmark n-gram overlap hit and miss, flag mode, config-time checks."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from curate.filters.decontaminate import Decontaminate
from curate.pipelines.errors import ConfigError

QUESTION = (
    "Which of the following best describes the role of the mitochondria in a eukaryotic cell "
    "when glucose is abundant and oxygen is available?"
)
OTHER = "What is the capital city of the country that hosted the first modern Olympic Games in 1896?"


@pytest.fixture
def bench_files(tmp_path: Path) -> Path:
    (tmp_path / "quiz.jsonl").write_text(
        json.dumps({"question": QUESTION, "choices": ["energy", "storage"], "answer": 0}) + "\n"
        + json.dumps({"question": "Too short item.", "answer": 1}) + "\n"
    )
    (tmp_path / "trivia.txt").write_text(OTHER + "\n")
    return tmp_path


def table(texts):
    return pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})


def make(tmp_path: Path, **params) -> Decontaminate:
    stage = Decontaminate(Decontaminate.Params(**params))
    stage.check(tmp_path)
    stage.setup()
    return stage


def test_hit_and_miss(bench_files: Path):
    stage = make(bench_files, benchmarks=["quiz.jsonl", "trivia.txt"])
    leaked = "Study guide. " + QUESTION.upper().replace(",", " ,") + " The answer is energy."
    clean = "The mitochondria is the powerhouse of the cell, as every student learns in biology class."
    partial = "Which of the following best describes the role of the mitochondria in plants?"  # 12 words shared
    trivia = "Quiz night: " + OTHER
    out = stage.process(table([leaked, clean, partial, trivia]))
    assert out.drops.mask.tolist() == [True, False, False, True]
    assert out.drops.rule[0] == "contaminated:quiz"
    assert "13-gram" in out.drops.reason[0] and "quiz" in out.drops.reason[0]
    assert out.drops.rule[3] == "contaminated:trivia"
    assert out.counters == {"matched_quiz": 1, "matched_trivia": 1}
    meta = stage.metadata()
    assert meta["benchmarks"]["quiz"]["items"] == 2 and meta["benchmarks"]["quiz"]["items_too_short"] == 1


def test_flag_mode_and_mapping(bench_files: Path):
    stage = make(bench_files, benchmarks={"mmlu_like": "quiz.jsonl"}, action="flag", n=8)
    out = stage.process(table([QUESTION, "nothing in common with any benchmark at all here"]))
    assert out.drops is None
    assert out.table.column("contaminated").to_pylist() == [True, False]
    assert out.table.column("contamination").to_pylist() == ["mmlu_like", None]


def test_min_matches(bench_files: Path):
    stage = make(bench_files, benchmarks=["quiz.jsonl"], min_matches=100)
    assert stage.process(table([QUESTION])).drops.mask.tolist() == [False]


def test_missing_benchmark_file_fails_at_config_time(tmp_path: Path):
    stage = Decontaminate(Decontaminate.Params(benchmarks=["missing/bench.jsonl"]))
    with pytest.raises(ConfigError, match="missing/bench.jsonl"):
        stage.check(tmp_path)


def test_pipeline_file_names_the_stage(tmp_path: Path):
    from curate.pipelines.config import load_pipeline

    (tmp_path / "in.jsonl").write_text('{"text": "x"}\n')
    p = tmp_path / "p.yaml"
    p.write_text(
        f"input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}\n"
        "stages:\n  - decontaminate: {benchmarks: [nowhere.jsonl]}\n"
        f"output: {{dataset: {tmp_path}/out}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_pipeline(p)
    assert "nowhere.jsonl" in str(err.value) and "p.yaml:3" in str(err.value)
