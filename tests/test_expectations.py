"""The publish gate (issue 11, item 1): expectations in the pipeline file, evaluated with real
Great Expectations on the staged shards before the commit; `curate check` on committed versions.

Config errors run `curate validate` / `curate run` (no Ray starts); the evaluation is tested on
Parquet files in-process; two tests run `curate run` / `curate.run` on a real local Ray and read
the Delta log back."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curate.pipelines.errors import ConfigError, ExpectationsFailedError
from curate.pipelines.expectations import evaluate as ev
from curate.pipelines.expectations.gate import evaluate
from curate.pipelines.expectations.spec import parse_expectations
from curate.pipelines.yamlsource import Located
from deltalake import DeltaTable
from helpers import run_cli, write_jsonl, write_pipeline


def specs(items: list[Any]) -> list[Any]:
    return parse_expectations(items, Located("test.yaml", items, {}), Path("."))


def shards(tmp_path: Path, tables: list[pa.Table]) -> list[tuple[str, int]]:
    out = []
    for i, t in enumerate(tables):
        path = tmp_path / f"part-{i}.parquet"
        pq.write_table(t, path)
        out.append((str(path), t.num_rows))
    return out


def by_type(result: Any) -> dict[str, Any]:
    return {r.expectation_config.type: r for r in result.results}


# ------------------------------------------------------------------ config errors (no Ray)

BAD_NAME = """\
input: {format: jsonl, paths: [data/*.jsonl]}
stages:
  - normalize: {}
output: {dataset: out/web}
expectations:
  - expect_column_values_to_not_be_null: {column: text}
  - expect_column_values_to_not_be_nul: {column: text}
  - expect_table_row_count_to_be_between: {min_valu: 1}
"""


@pytest.mark.slow  # (no Ray: two `curate` processes, each importing Great Expectations, ~8 s)
def test_unknown_expectation_is_a_config_error_before_ray_starts(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"id": "1", "text": "some text"}])
    write_pipeline(tmp_path / "pipeline.yaml", BAD_NAME)
    for command in ("validate", "run"):
        r = run_cli(command, "pipeline.yaml", cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "pipeline.yaml:7: expectations[1].expect_column_values_to_not_be_nul: unknown expectation" in r.stderr
        assert "did you mean 'expect_column_values_to_not_be_null'?" in r.stderr
        assert "pipeline.yaml:8: expectations[2].expect_table_row_count_to_be_between.min_valu: unknown kwarg" in r.stderr
        assert "(did you mean 'min_value'?)" in r.stderr
    # nothing started, nothing written: no dataset, no run log, no gx/ folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "pipeline.yaml"]


@pytest.mark.slow  # (no Ray: two `curate` processes, each importing Great Expectations, ~8 s)
def test_expectation_columns_must_be_output_columns(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"id": "1", "text": "some text", "language": "en"}])
    write_pipeline(tmp_path / "pipeline.yaml", BAD_NAME.split("expectations:")[0] + """expectations:
  - expect_column_values_to_not_be_null: {column: txt}
  - curate_language_share: {allowed: [en], min_share: 0.9}
  - expect_column_to_exist: {column: language}
""")
    r = run_cli("validate", "pipeline.yaml", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "pipeline.yaml:6: expectations[0].expect_column_values_to_not_be_null.column: column 'txt' is not in the output; its columns: id, text" in r.stderr
    assert "hint: did you mean 'text'?" in r.stderr
    assert "pipeline.yaml:7: expectations[1].curate_language_share.column: column 'language' is not in the output" in r.stderr
    assert "expectations[2]" not in r.stderr  # expect_column_to_exist may name a missing column
    text = (tmp_path / "pipeline.yaml").read_text().replace("input: {format: jsonl, paths: [data/*.jsonl]}",
                                                           "input: {format: jsonl, paths: [data/*.jsonl], keep_fields: [language]}")
    write_pipeline(tmp_path / "pipeline.yaml", text.replace("{column: txt}", "{column: text}"))
    ok = run_cli("validate", "pipeline.yaml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "expectations: 3 (checked before publishing)" in ok.stdout


def test_suite_file_errors_name_the_suite_file_and_line(tmp_path: Path) -> None:
    suite = {"name": "web", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}},
        {"type": "expect_colum_values_to_be_in_set", "kwargs": {"column": "lang", "value_set": ["en"]}},
    ]}
    (tmp_path / "suite.json").write_text(json.dumps(suite, indent=2))
    with pytest.raises(ConfigError) as err:
        parse_expectations([{"suite": "suite.json"}], Located("p.yaml", [], {}), tmp_path)
    assert f"{tmp_path / 'suite.json'}:11: suite.json: expectations[1]: unknown expectation 'expect_colum_values_to_be_in_set'" in str(err.value)
    assert "did you mean 'expect_column_values_to_be_in_set'?" in str(err.value)
    suite["expectations"] = suite["expectations"][:1]
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    loaded = parse_expectations([{"suite": "suite.json"}], Located("p.yaml", [], {}), tmp_path)
    assert [(s.type, s.kwargs) for s in loaded] == [("expect_column_values_to_not_be_null", {"column": "text"})]


def test_sql_only_and_reserved_kwargs_are_rejected() -> None:
    with pytest.raises(ConfigError, match="cannot be evaluated on a dataset's Parquet shards"):
        specs([{"expect_table_row_count_to_equal_other_table": {"other_table_name": "x"}}])
    with pytest.raises(ConfigError, match="batch_id: set by curate"):
        specs([{"expect_column_values_to_not_be_null": {"column": "text", "batch_id": "x"}}])


# ------------------------------------------------------------------ evaluation (real GE, no Ray)


def test_map_expectations_merge_exactly_across_parts_and_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts added up over 4 parts x 3 batches equal one GE validation of the whole table."""
    monkeypatch.setattr(ev, "BATCH_ROWS", 40)
    monkeypatch.setattr(ev, "TASK_ROWS", 100)
    tables = [pa.table({"text": [None if (i * 7 + k) % 11 == 0 else f"t{i % 17}" for i in range(100)],
                        "n": [(i * k) % 50 for i in range(100)]}) for k in range(4)]
    files = shards(tmp_path, tables)
    assert len(ev.split(files, ev.TASK_ROWS)) == 4
    items: list[dict[str, Any]] = [
        {"expect_column_values_to_not_be_null": {"column": "text", "mostly": 0.95}},
        {"expect_column_values_to_be_between": {"column": "n", "min_value": 0, "max_value": 40}},
        {"expect_column_values_to_be_in_set": {"column": "text", "value_set": [f"t{i}" for i in range(15)], "mostly": 0.5}},
    ]
    merged = by_type(evaluate(specs(items), files))

    import great_expectations as gx

    whole = pa.concat_tables(tables).to_pandas()
    ctx = gx.get_context(mode="ephemeral")
    batch = ctx.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("b").get_batch(
        batch_parameters={"dataframe": whole})
    for item in items:
        (name, kwargs), = item.items()
        from great_expectations.expectations.registry import get_expectation_impl

        direct = batch.validate(get_expectation_impl(name)(**kwargs), result_format="SUMMARY")
        got = merged[name]
        assert got.meta["curate"]["method"] == "exact"
        assert got.success == direct.success, name
        for key in ("element_count", "unexpected_count", "missing_count"):
            if key in direct.result:
                assert got.result[key] == direct.result[key], (name, key)
    assert merged["expect_column_values_to_not_be_null"].result["unexpected_count"] == sum(
        1 for k in range(4) for i in range(100) if (i * 7 + k) % 11 == 0)


def test_row_count_and_sampled_expectations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATE_EXPECTATIONS_EXACT_ROWS", "50")
    files = shards(tmp_path, [pa.table({"n": list(range(k * 300, k * 300 + 300))}) for k in range(2)])
    result = by_type(evaluate(specs([
        {"expect_table_row_count_to_be_between": {"min_value": 600, "max_value": 600}},
        {"expect_table_row_count_to_equal": {"value": 601}},
        {"expect_column_mean_to_be_between": {"column": "n", "min_value": 100, "max_value": 500}},
        {"expect_column_median_to_be_between": {"column": "n", "min_value": 100, "max_value": 500}},
        {"expect_column_most_common_value_to_be_in_set": {"column": "n", "value_set": list(range(600)), "ties_okay": True}},
        {"expect_column_value_z_scores_to_be_less_than": {"column": "n", "threshold": 3, "double_sided": True}},
        {"expect_column_values_to_not_be_outliers": {"column": "n", "meta": {"sample_rows": 50}}},
    ]), files))
    rows = result["expect_table_row_count_to_be_between"]
    assert rows.success and rows.result["observed_value"] == 600 and rows.meta["curate"]["method"] == "exact"
    assert not result["expect_table_row_count_to_equal"].success
    mean = result["expect_column_mean_to_be_between"]  # merged exactly from every row, never sampled
    assert mean.meta["curate"]["method"] == "exact" and mean.result["observed_value"] == 299.5 and mean.success
    median = result["expect_column_median_to_be_between"]  # every value gathered below 10M rows: exact
    assert median.meta["curate"]["method"] == "exact" and median.result["observed_value"] == 299.5 and median.success
    common = result["expect_column_most_common_value_to_be_in_set"]  # value counts merged by value: exact
    assert common.meta["curate"]["method"] == "exact" and common.success and len(common.result["observed_value"]) == 600
    # z-scores need the whole column in one process: above the limit, never sampled unasked ...
    z = result["expect_column_value_z_scores_to_be_less_than"]
    assert not z.success and z.exception_info["raised_exception"]
    assert "not evaluated" in z.exception_info["exception_message"] and "sample_rows" in z.exception_info["exception_message"]
    # ... and judged on a sample of the size asked for when asked
    outliers = result["expect_column_values_to_not_be_outliers"]
    assert outliers.success and outliers.meta["curate"]["method"] == "sample" and outliers.meta["curate"]["sample_rows"] == 50


def test_the_sample_reads_only_its_columns_and_stays_within_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATE_EXPECTATIONS_EXACT_ROWS", "50")
    monkeypatch.setattr(ev, "EXACT_BYTES", 20_000)
    files = shards(tmp_path, [pa.table({"n": list(range(300)), "blob": [os.urandom(1000) for _ in range(300)]}) for _ in range(2)])
    mean = {"expect_column_value_z_scores_to_be_less_than": {"column": "n", "threshold": 3, "double_sided": True, "meta": {"sample_rows": 50}}}
    narrow = evaluate(specs([mean]), files).results[0]  # reads `n` only: 8 bytes a row, 25 rows per shard
    assert narrow.success and narrow.meta["curate"] == {**narrow.meta["curate"], "method": "sample", "sample_rows": 50}
    both = by_type(evaluate(specs([mean, {"expect_table_columns_to_match_set": {"column_set": ["n", "blob"]}},
                                   {"expect_table_column_count_to_equal": {"value": 3}}]), files))
    # the table's columns are judged on the schema, exactly: the sample still reads `n` only
    assert both["expect_table_columns_to_match_set"].success and both["expect_table_columns_to_match_set"].meta["curate"]["method"] == "exact"
    assert not both["expect_table_column_count_to_equal"].success and both["expect_table_column_count_to_equal"].result["observed_value"] == 2
    assert both["expect_column_value_z_scores_to_be_less_than"].meta["curate"]["sample_rows"] == 50


def test_curate_language_share(tmp_path: Path) -> None:
    files = shards(tmp_path, [pa.table({"language": ["en"] * 90 + ["de"] * 5 + [None] * 5})])
    passing = evaluate(specs([{"curate_language_share": {"allowed": ["en", "de"], "min_share": 0.95}}]), files)
    failing = evaluate(specs([{"curate_language_share": {"column": "language", "allowed": ["en"], "min_share": 0.95}}]), files)
    assert passing.success and passing.results[0].result["observed_value"] == pytest.approx(0.95)
    assert not failing.success and failing.results[0].result["observed_value"] == pytest.approx(0.90)


def test_curate_duplicate_rate_is_exact_across_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev, "BATCH_ROWS", 30)
    monkeypatch.setattr(ev, "TASK_ROWS", 100)
    # 300 rows, 250 distinct values: 50 repeat an earlier row (in the same batch, another batch, another shard); nulls never count
    values = [f"doc {i}" for i in range(250)] + [f"doc {i * 5}" for i in range(50)]
    tables = [pa.table({"text": values[k * 100:(k + 1) * 100] + [None] * 3}) for k in range(3)]
    files = shards(tmp_path, tables)
    ok = evaluate(specs([{"curate_duplicate_rate": {"max_rate": 0.2}}]), files).results[0]
    bad = evaluate(specs([{"curate_duplicate_rate": {"column": "text", "max_rate": 0.1}}]), files).results[0]
    assert ok.success and ok.result["duplicate_count"] == 50 and ok.result["element_count"] == 309
    assert not bad.success and bad.result["observed_value"] == pytest.approx(50 / 309)


def test_curate_row_count_change(tmp_path: Path) -> None:
    files = shards(tmp_path, [pa.table({"n": list(range(100))})])
    check = specs([{"curate_row_count_change": {"min_ratio": 0.5, "max_ratio": 2.0}}])
    assert evaluate(check, files, previous_rows=80).success  # 1.25
    shrunk = evaluate(check, files, previous_rows=300)  # 0.33
    assert not shrunk.success and shrunk.results[0].result["observed_value"] == pytest.approx(100 / 300)
    assert not evaluate(check, files, previous_rows=40).success  # 2.5
    first = evaluate(check, files, previous_rows=None)  # no previous version: nothing to compare
    assert first.success and first.results[0].result["details"]["note"] == "no previous version"


def test_warning_severity_reports_without_blocking(tmp_path: Path) -> None:
    files = shards(tmp_path, [pa.table({"text": ["a", "a", "b"]})])
    result = evaluate(specs([{"expect_column_values_to_be_unique": {"column": "text", "severity": "warning"}}]), files)
    assert result.success and not result.results[0].success


def test_gate_on_staged_shards_before_the_commit_in_both_modes(tmp_path: Path) -> None:
    """The gate sees the version about to be published: the staged shards (append: with the
    latest version's), compares with the latest version's row count, and commits nothing."""
    import io

    from curate.pipelines.expectations.gate import gate_staged
    from deltalake import write_deltalake
    from rich.console import Console

    uri = tmp_path / "ds"
    write_deltalake(str(uri), pa.table({"text": ["a", "b", "c", "d"]}))  # version 0: 4 rows
    pq.write_table(pa.table({"text": ["e", None]}), uri / "part-staged.parquet")  # staged, not committed
    staged = [{"path": "part-staged.parquet", "rows": 2}]
    checks = specs([
        {"expect_table_row_count_to_be_between": {"min_value": 6, "max_value": 6}},
        {"curate_row_count_change": {"min_ratio": 1.5, "max_ratio": 1.5}},
        {"expect_column_values_to_not_be_null": {"column": "text", "mostly": 0.8}},
    ])
    out = io.StringIO()
    info = gate_staged(checks, str(uri), staged, mode="append", storage_options={}, log_file=str(tmp_path / "logs" / "r1.log"),
                       run_id="r1", console=Console(file=out))
    assert info["success"] and info["rows"] == 6 and "3 of 3 expectations passed on 6 rows" in out.getvalue()
    with pytest.raises(ExpectationsFailedError) as err:  # overwrite: the version would hold 2 rows, half the previous
        gate_staged(checks, str(uri), staged, mode="overwrite", storage_options={}, log_file=str(tmp_path / "logs" / "r2.log"),
                    run_id="r2", console=Console(file=io.StringIO()))
    assert "curate_row_count_change(min_ratio=1.5, max_ratio=1.5) failed: observed 0.5 (previous version 4 rows, this one 2)" in err.value.message
    assert "expect_column_values_to_not_be_null(column='text', mostly=0.8) failed: 1 unexpected of 2 rows (50%)" in err.value.message
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "r1.expectations.html", "r1.expectations.json", "r2.expectations.html", "r2.expectations.json"]
    assert DeltaTable(str(uri)).version() == 0 and not (tmp_path / "gx").exists() and not Path("gx").exists()


def test_curate_check_with_a_suite_file_and_a_list_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`curate check` (in-process) on a table of two versions: a GE suite file, a YAML list with
    curate_row_count_change against the version before, exit codes 0 / 5 / 2."""
    from click.testing import CliRunner
    from curate.pipelines.expectations.cli import check
    from deltalake import write_deltalake

    monkeypatch.chdir(tmp_path)
    write_deltalake("ds", pa.table({"text": ["a", "b", "c", "d"]}))
    write_deltalake("ds", pa.table({"text": ["a", "b", None]}), mode="overwrite")  # version 1: 3 rows, one null
    suite = {"name": "s", "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "text"}, "severity": "warning"}]}
    Path("suite.json").write_text(json.dumps(suite))
    Path("list.yaml").write_text("- curate_row_count_change: {min_ratio: 0.9}\n- expect_column_values_to_not_be_null: {column: text, mostly: 0.6}\n")
    runner = CliRunner()
    warned = runner.invoke(check, ["ds", "--expectations", "suite.json", "--report-dir", "reports"])
    assert warned.exit_code == 0, warned.output  # severity warning: reported, not failed
    assert "warning:" in warned.output and "1 unexpected of 3 rows" in warned.output
    failed = runner.invoke(check, ["ds@1", "--expectations", "list.yaml", "--report-dir", "reports"])
    assert failed.exit_code == 5, failed.output
    assert "curate_row_count_change(min_ratio=0.9) failed: observed 0.75 (previous version 4 rows, this one 3)" in failed.output
    assert "expect_column_values_to_not_be_null" not in failed.output.split("the failed ones:")[1]  # 2 of 3 non-null >= 0.6
    first = runner.invoke(check, ["ds@0", "--expectations", "list.yaml", "--report-dir", "reports"])
    assert first.exit_code == 0, first.output  # version 0 has no previous version
    bad = runner.invoke(check, ["ds", "--expectations", "suite.json", "--pipeline", "p.yaml"])
    assert bad.exit_code == 2 and "not both" in bad.output
    none = runner.invoke(check, ["ds"])
    assert none.exit_code == 2 and "published without expectations" in none.output
    assert len(list(Path("reports").glob("check-ds-v1-*.expectations.json"))) == 2 and not Path("gx").exists()


# ------------------------------------------------------------------ curate run / curate.run / curate check (real Ray)

PIPELINE = """\
input:
  format: jsonl
  paths: [data/*.jsonl]
  keep_fields: [language]
stages:
  - normalize: {{}}
  - length_filter: {{min_chars: 20}}
output:
  dataset: out/web
  shard_rows: 25
ray:
  num_cpus: 2
expectations:
{expectations}
"""

GOOD = """\
  - expect_column_values_to_not_be_null: {column: text}
  - expect_table_row_count_to_be_between: {min_value: 50, max_value: 100}
  - curate_language_share: {allowed: [en], min_share: 0.9}
  - curate_duplicate_rate: {max_rate: 0.05}
  - curate_row_count_change: {min_ratio: 0.5, max_ratio: 2.0}
"""

BAD = """\
  - expect_column_values_to_not_be_null: {column: text}
  - expect_table_row_count_to_be_between: {min_value: 1000}
  - expect_column_values_to_be_in_set: {column: language, value_set: [en], mostly: 0.99}
"""


def make_corpus(tmp_path: Path) -> None:
    rows: list[dict[str, object] | str] = [{"id": f"d{i}", "text": f"Document number {i} has enough words to pass.", "language": "de" if i % 20 == 0 else "en"} for i in range(80)]
    write_jsonl(tmp_path / "data" / "a.jsonl", rows)


def versions(path: Path) -> int:
    return len(DeltaTable(str(path)).history()) if (path / "_delta_log").exists() else 0


@pytest.mark.slow
def test_gate_through_the_cli_and_curate_check(tmp_path: Path) -> None:
    make_corpus(tmp_path)
    write_pipeline(tmp_path / "good.yaml", PIPELINE.format(expectations=GOOD))
    write_pipeline(tmp_path / "bad.yaml", PIPELINE.format(expectations=BAD))
    good = run_cli("run", "good.yaml", "--no-progress", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "expectations: 5 of 5 expectations passed on 80 rows" in good.stderr
    dataset = tmp_path / "out" / "web"
    assert versions(dataset) == 1
    # the summary is in the commit metadata, read back from the Delta log
    log0 = (dataset / "_delta_log" / "00000000000000000000.json").read_text().splitlines()
    info = next(json.loads(line)["commitInfo"] for line in log0 if "commitInfo" in line)
    gate = json.loads(info["curate.run"])["expectations"]
    assert gate["success"] is True and gate["statistics"]["evaluated_expectations"] == 5
    assert {e["type"]: e["observed"] for e in gate["expectations"]}["curate_language_share"] == "observed 0.95"
    shown = run_cli("show", "out/web", cwd=tmp_path)
    assert "expectations: 5 of 5 passed before publishing" in shown.stdout, shown.stderr

    bad = run_cli("run", "bad.yaml", "--no-progress", cwd=tmp_path)
    assert bad.returncode == 5, bad.stderr
    assert versions(dataset) == 1  # nothing published
    assert "error: the publish gate failed, nothing was published: 1 of 3 expectations passed on 80 rows" in bad.stderr
    assert "error: bad.yaml:15: expect_table_row_count_to_be_between(min_value=1000) failed: observed 80" in bad.stderr
    assert ("error: bad.yaml:16: expect_column_values_to_be_in_set(column='language', mostly=0.99, value_set=['en']) failed: "
            "4 unexpected of 80 rows (5%), e.g. ['de', 'de', 'de', 'de']") in bad.stderr
    reports = sorted((tmp_path / ".curate" / "runs").glob("*.expectations.*"))
    assert len(reports) == 4  # JSON + HTML of each run
    failed_json = [p for p in reports if p.suffix == ".json" and not json.loads(p.read_text())["success"]]
    assert len(failed_json) == 1
    saved = json.loads(failed_json[0].read_text())
    assert saved["statistics"]["unsuccessful_expectations"] == 2
    page = failed_json[0].with_suffix(".html").read_text()  # self-contained: readable offline
    assert "http://" not in page and "https://" not in page and "<script" not in page
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Expectations FAILED" in text and "before publishing" in text and "1 of 3 expectations passed on 80 rows" in text
    assert "✗ failed (critical) expect_table_row_count_to_be_between(min_value=1000)" in text and "observed 80" in text
    assert "4 unexpected of 80 rows" in text and "exact, every row" in text and "✓ passed" in text
    ids = saved["results"][2]["result"]["partial_unexpected_ids"]  # the rows that failed, by id
    assert len(ids) == 4 and all(i in text for i in ids) and f"rows (id) {ids[:4]}" in bad.stderr
    assert not (tmp_path / "gx").exists()

    # curate check: the version's recorded expectations pass; the bad ones fail with exit 5
    ok = run_cli("check", "out/web@0", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "out/web@0: 5 of 5 expectations passed" in ok.stdout
    nope = run_cli("check", "out/web", "--pipeline", "bad.yaml", cwd=tmp_path)
    assert nope.returncode == 5, nope.stderr
    assert "out/web@0 does not meet its expectations" in nope.stderr and "failed: observed 80" in nope.stderr
    missing = run_cli("check", "out/nothing", "--pipeline", "bad.yaml", cwd=tmp_path)
    assert missing.returncode == 4, missing.stderr
    assert not (tmp_path / "gx").exists()


@pytest.mark.slow
def test_gate_through_the_python_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_session: Any) -> None:
    import curate

    make_corpus(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(ev, "TASK_ROWS", 30)  # shards of 25, 25, 25, 5 rows: 3 parts, one Ray task each
    write_pipeline(tmp_path / "bad.yaml", PIPELINE.format(expectations=BAD))
    monkeypatch.delenv("GX_ANALYTICS_ENABLED", raising=False)
    with pytest.raises(ExpectationsFailedError) as err:
        curate.run("bad.yaml")
    assert err.value.exit_code == 5
    assert err.value.summary["statistics"]["unsuccessful_expectations"] == 2
    assert all(os.path.exists(p) for p in err.value.reports)
    assert versions(tmp_path / "out" / "web") == 0
    assert "GX_ANALYTICS_ENABLED" not in os.environ  # set only while GE is imported or a context made
    write_pipeline(tmp_path / "good.yaml", PIPELINE.format(expectations=GOOD))
    result = curate.run("good.yaml")
    assert result.version == 0 and result.rows == 80
    assert result.expectations is not None and result.expectations["statistics"]["successful_expectations"] == 5
    assert result.resumed_tasks == 1  # the failed run's shards are reused: expectations are not part of the resume key
    assert "expectations: 80 rows in 4 shards, evaluated in 3 parts" in Path(result.log_file).read_text()
    assert versions(tmp_path / "out" / "web") == 1
    assert json.loads(DeltaTable(str(tmp_path / "out" / "web")).history(1)[0]["curate.run"])["expectations"]["success"] is True
    assert not (tmp_path / "gx").exists()
