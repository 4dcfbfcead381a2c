"""Mistakes caught by `curate validate` (before Ray starts), not by a run that fails after minutes:
a generator given an input, a template naming an unknown variable, a stage writing over a column
an earlier stage made, a mistyped key beside a stage hiding the file's other errors, and "did you
mean" for misspelled keys, params, templates and audiences."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli, write_pipeline

pytest.importorskip("jinja2", reason="needs jinja2 (the synth extra)")


def validate(tmp_path: Path, text: str) -> tuple[int, str]:
    pipe = write_pipeline(tmp_path / "p.yaml", text)
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "hello"}\n', encoding="utf-8")
    out = run_cli("validate", str(pipe), cwd=tmp_path, timeout=120)
    return out.returncode, " ".join(out.stderr.split())


def test_a_generator_with_an_input_is_refused_naming_both(tmp_path: Path) -> None:
    code, err = validate(tmp_path, f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages:
  - generate_textbooks: {{topics: [volcanoes]}}
output: {{dataset: {tmp_path}/out}}
""")
    assert code == 2, err
    assert "p.yaml:3: stage 'generate_textbooks' makes its own rows" in err and "but the pipeline also has an input (" in err
    assert "p.yaml:1)" in err and "mode: transformation" in err


def test_a_template_with_an_undefined_variable_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    (tmp_path / "mine.jinja").write_text("Write about {{ topicz }} for {{ audience }}.\n", encoding="utf-8")
    code, err = validate(tmp_path, f"""stages:
  - generate_textbooks: {{topics: [volcanoes], formats: [mine], templates: {{mine: mine.jinja}}}}
output: {{dataset: {tmp_path}/out}}
""")
    assert code == 2, err
    assert "template 'mine': 'topicz' is undefined" in err and "did you mean {{ topic }}?" in err


def test_a_stage_writing_over_an_earlier_stages_column_is_refused_naming_both(tmp_path: Path) -> None:
    code, err = validate(tmp_path, f"""stages:
  - generate_textbooks: {{topics: [volcanoes]}}
  - language: {{}}
output: {{dataset: {tmp_path}/out}}
""")
    assert code == 2, err
    assert "p.yaml:3: stage 'language' writes column 'language', which stage generate_textbooks already produced" in err
    # and one from the input: told to leave it out of the input
    (tmp_path / "lang.jsonl").write_text('{"id": "a", "text": "hello", "language": "English"}\n', encoding="utf-8")
    code, err = validate(tmp_path, f"""input: {{format: jsonl, paths: [{tmp_path}/lang.jsonl], keep_fields: [language]}}
stages:
  - language: {{}}
output: {{dataset: {tmp_path}/out}}
""")
    assert code == 2 and "writes column 'language', which input already produced" in err and "input.keep_fields" in err, err


def test_a_mistyped_key_beside_a_stage_does_not_hide_the_other_errors(tmp_path: Path) -> None:
    code, err = validate(tmp_path, f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages:
  - normalize: {{}}
    runn: {{cpus: 1}}
  - length_filter: {{min_char: 50}}
  - fineweb_quality: {{}}
    run: {{cpu: 1}}
output: {{dataset: {tmp_path}/out, keep_droped: true}}
""")
    assert code == 2, err
    assert "p.yaml:3: stages[0]: each stage is a mapping" in err and "'runn' beside it: did you mean 'run'?" in err
    assert "stages[1].length_filter.min_char: unknown key (did you mean 'min_chars'?)" in err
    assert "stages[2].run.cpu: unknown key (did you mean 'cpus'?)" in err
    assert "output.keep_droped: unknown key (did you mean 'keep_dropped'?)" in err


@pytest.mark.parametrize(("stage", "expected"), [
    ("minhash_dedup: {threshhold: 0.8}", "unknown key (did you mean 'threshold'?)"),
    ("pii: {feild: text}", "unknown key (did you mean 'field'?)"),
    ("generate_textbooks: {topics: [x], formats: [rewrite_textbok]}", "did you mean 'rewrite_textbook'?"),
    ("generate_textbooks: {topics: [x], audiences: [young_childrens]}", "did you mean 'young_children'?"),
])
def test_did_you_mean_for_keys_templates_and_audiences(tmp_path: Path, stage: str, expected: str) -> None:
    code, err = validate(tmp_path, f"""stages:
  - {stage}
output: {{dataset: {tmp_path}/out}}
""")
    assert code == 2 and expected in err, err


def test_an_audience_far_from_every_known_one_is_a_phrase_used_as_written(tmp_path: Path) -> None:
    code, err = validate(tmp_path, f"""stages:
  - generate_textbooks: {{topics: [x], audiences: [retired engineers who like birds]}}
output: {{dataset: {tmp_path}/out}}
""")
    assert code == 0, err


def test_a_stage_column_problem_does_not_hide_an_expectation_column_problem(tmp_path: Path) -> None:
    pytest.importorskip("great_expectations")
    code, err = validate(tmp_path, f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages:
  - exact_dedup: {{field: body}}
output: {{dataset: {tmp_path}/out}}
expectations:
  - expect_column_values_to_not_be_null: {{column: txt}}
""")
    assert code == 2, err
    assert "stage 'exact_dedup' reads column 'body'" in err
    assert "column 'txt' is not in the output" in err and "did you mean 'text'?" in err


def test_a_bad_expectation_kwarg_does_not_hide_an_unknown_expectation_column(tmp_path: Path) -> None:
    pytest.importorskip("great_expectations")
    code, err = validate(tmp_path, f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages:
  - length_filter: {{min_chars: 1}}
output: {{dataset: {tmp_path}/out}}
expectations:
  - expect_column_values_to_not_be_null: {{column: txt}}
  - expect_column_mean_to_be_between: {{column: text, min_valu: 0}}
""")
    assert code == 2, err
    assert "min_valu" in err and "did you mean 'min_value'" in err
    assert "column 'txt' is not in the output" in err and "did you mean 'text'?" in err
