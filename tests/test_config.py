"""Pipeline file validation: exact messages naming file, line, key, value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from curate.pipelines.config import load_pipeline
from curate.pipelines.errors import ConfigError
from helpers import run_cli, write_jsonl, write_pipeline

GOOD = """\
input:
  format: jsonl
  paths: [data/*.jsonl]
stages:
  - normalize: {}
  - length_filter: {min_chars: 50}
  - exact_dedup: {}
output:
  dataset: out/web        # a Delta table path or URL
  keep_dropped: true
"""


def _load_error(tmp_path: Path, text: str) -> str:
    p = write_pipeline(tmp_path / "pipeline.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(p)
    return str(info.value)


def test_minimal_form_is_valid(tmp_path: Path) -> None:
    p = write_pipeline(tmp_path / "pipeline.yaml", GOOD)
    pipe = load_pipeline(p)
    assert [s.name for s in pipe.stages] == ["normalize", "length_filter", "exact_dedup"]
    assert pipe.stages[1].params.min_chars == 50
    assert pipe.config.output.keep_dropped is True
    assert pipe.config.output.dropped_path == "out/web.dropped"
    assert len(pipe.fingerprint()) == 16


def test_unknown_stage_names_line_and_suggests(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, GOOD.replace("exact_dedup: {}", "exact_dedupe: {}"))
    assert msg.startswith(f"{tmp_path / 'pipeline.yaml'}:7: stages[2]: unknown stage type 'exact_dedupe'; known stages: ")
    assert "hint: did you mean 'exact_dedup'?" in msg


def test_wrong_type_names_key_value_and_allowed(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, GOOD.replace("min_chars: 50", "min_chars: fifty"))
    assert msg == (
        f"{tmp_path / 'pipeline.yaml'}:6: stages[1].length_filter.min_chars: "
        "Input should be a valid integer, unable to parse string as an integer (got 'fifty')"
    )


def test_out_of_range_value_says_what_is_allowed(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, GOOD.replace("min_chars: 50", "min_chars: -1"))
    assert msg == (
        f"{tmp_path / 'pipeline.yaml'}:6: stages[1].length_filter.min_chars: "
        "Input should be greater than or equal to 0 (got -1); allowed: a value >= 0"
    )


def test_missing_key(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, GOOD.replace("  dataset: out/web        # a Delta table path or URL\n", ""))
    assert msg == f"{tmp_path / 'pipeline.yaml'}:8: output.dataset: required key is missing"


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, GOOD.replace("  keep_dropped: true", "  keep_droped: true"))
    assert msg.startswith(f"{tmp_path / 'pipeline.yaml'}:10: output.keep_droped: unknown key (did you mean 'keep_dropped'?); allowed keys: ")
    assert "compression, dataset" in msg


def test_bad_enum_value(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, GOOD.replace("format: jsonl", "format: csv"))
    assert msg == (
        f"{tmp_path / 'pipeline.yaml'}:2: input.format: Input should be 'jsonl', 'parquet', 'text', 'delta' or 'audio' "
        "(got 'csv'); allowed: 'jsonl', 'parquet', 'text', 'delta' or 'audio'"
    )


def test_unknown_stage_param(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, GOOD.replace("min_chars: 50", "min_char: 50"))
    assert msg.startswith(f"{tmp_path / 'pipeline.yaml'}:6: stages[1].length_filter.min_char: unknown key (did you mean 'min_chars'?); allowed keys: ")
    assert "min_chars" in msg


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, GOOD.replace("  - exact_dedup: {}", "  - exact_dedup: {]"))
    assert msg.startswith(f"{tmp_path / 'pipeline.yaml'}:7:")
    assert "invalid YAML" in msg


def test_env_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUT_ROOT", "/data/curated")
    monkeypatch.setenv("MIN", "77")
    # inside a flow mapping ({...}) a ${VAR} must be quoted, as YAML requires
    text = GOOD.replace("out/web ", "${OUT_ROOT}/web ").replace("min_chars: 50", 'min_chars: "${MIN}"')
    text = text.replace("format: jsonl", "format: ${FMT:-jsonl}")
    pipe = load_pipeline(write_pipeline(tmp_path / "pipeline.yaml", text))
    assert pipe.config.output.dataset == "/data/curated/web"
    assert pipe.stages[1].params.min_chars == 77
    assert pipe.config.input.format == "jsonl"


def test_missing_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    msg = _load_error(tmp_path, GOOD.replace("out/web ", "${NOPE_NOT_SET}/web "))
    assert msg.startswith(f"{tmp_path / 'pipeline.yaml'}:9: output.dataset: environment variable NOPE_NOT_SET is not set")


def test_stage_entry_shape(tmp_path: Path) -> None:
    msg = _load_error(tmp_path, GOOD.replace("  - normalize: {}", "  - normalize: {}\n    length_filter: {}"))
    assert "stages[0]: each stage is a mapping of one stage type to its params" in msg


def test_validate_cli_exit_codes(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"id": "1", "text": "hello"}])
    write_pipeline(tmp_path / "pipeline.yaml", GOOD)
    ok = run_cli("validate", "pipeline.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "pipeline.yaml: valid (1 input files" in ok.stdout

    write_pipeline(tmp_path / "bad.yaml", GOOD.replace("min_chars: 50", "min_chars: fifty"))
    bad = run_cli("validate", "bad.yaml", cwd=tmp_path)
    assert bad.returncode == 2
    assert "bad.yaml:6: stages[1].length_filter.min_chars: Input should be a valid integer" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_missing_input_path_is_a_config_error(tmp_path: Path) -> None:
    write_pipeline(tmp_path / "pipeline.yaml", GOOD)
    res = run_cli("validate", "pipeline.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "input.paths[0]: no input files match 'data/*.jsonl'" in res.stderr


def test_an_interpolated_value_is_a_literal_string(tmp_path: Path) -> None:
    from curate.pipelines.yamlsource import load_yaml

    p = tmp_path / "p.yaml"
    p.write_text("a: ${OUT}/ds\nb: ${COLON}\nc: ${N}\nd: ${FLAG}\ne: '${N}'\n")
    env = {"OUT": "/tmp/my #1 dir", "COLON": "/tmp/a: b", "N": "4", "FLAG": "true"}
    data = load_yaml(p, env).data
    assert data == {"a": "/tmp/my #1 dir/ds", "b": "/tmp/a: b", "c": 4, "d": True, "e": "4"}


def test_the_output_is_checked_before_any_work(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "x"}])
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    for dataset, message in ((tmp_path / "afile", "is a file, not a dataset folder"),
                             (tmp_path / "notes", "is a folder that is not a curate dataset (it holds todo.txt)"),
                             ("nosuchscheme://bucket/ds", "cannot write to 'nosuchscheme://bucket/ds'")):
        pipe = write_pipeline(tmp_path / "p.yaml", f"input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}\noutput:\n  dataset: {dataset}\n")
        for command in ("validate", "run"):
            out = run_cli(command, str(pipe))
            assert out.returncode == 2, out.stderr
            said = " ".join(out.stderr.split())  # rich wraps long lines
            assert "p.yaml:3" in said and message in said, out.stderr


def test_each_fingerprint_leaves_out_only_what_does_not_change_what_a_run_writes(tmp_path: Path) -> None:
    pytest.importorskip("great_expectations")
    from curate.pipelines import runkey

    base = "input: {format: jsonl, paths: [in.jsonl]}\nstages:\n  - length_filter: {min_chars: 3}\noutput: {dataset: out}\n"
    variants = {
        "base": base,
        "ray": base + "ray: {address: 'ray://head:10001'}\n",
        "run": base + "run: {log_dir: elsewhere}\n",
        "gate": base + "expectations:\n  - expect_column_values_to_not_be_null: {column: text}\n",
        "stage": base.replace("min_chars: 3", "min_chars: 4"),
    }
    tasks = [{"path": "in.jsonl", "size": 10, "mtime": 1.0, "start": 0, "rows": None}]
    fps = {}
    for name, text in variants.items():
        pipe = load_pipeline(write_pipeline(tmp_path / f"{name}.yaml", text))
        fps[name] = (runkey.config_fingerprint(pipe), runkey.journal_key(pipe, tasks, "out"), runkey.recorded_fingerprint(pipe))
    run_key, journal, recorded = (dict((n, v[i]) for n, v in fps.items()) for i in range(3))
    assert run_key["ray"] == run_key["run"] == run_key["base"] != run_key["gate"] != run_key["stage"]
    assert journal["ray"] == journal["run"] == journal["gate"] == journal["base"] != journal["stage"]
    assert len(set(recorded.values())) == 5  # the lineage records the whole config
    assert runkey.journal_key(load_pipeline(tmp_path / "base.yaml"), [{**tasks[0], "size": 11}], "out") != journal["base"]
