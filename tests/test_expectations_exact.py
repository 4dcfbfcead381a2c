"""The publish gate against Great Expectations itself: data made here in several shards, evaluated
by curate in several parts and hash buckets (with a sample far smaller than the data, so that any
expectation still decided on a sample would miss the single planted violations), and by GE on the
whole table as one pandas frame. Same verdict and same observed value for every case.

Also a version with no rows and no shards (judged on its schema, as GE judges an empty frame)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from curate.pipelines.expectations import aggregates
from curate.pipelines.expectations import evaluate as ev
from curate.pipelines.expectations.gate import evaluate
from curate.pipelines.expectations.spec import parse_expectations
from curate.pipelines.yamlsource import Located

pytest.importorskip("great_expectations")

ROWS, SHARDS = 6_000, 6


def make_tables() -> list[pa.Table]:
    rng = np.random.default_rng(7)
    n = ROWS
    ids = [f"doc-{i}" for i in range(n)]
    ids[4321] = "doc-17"  # one duplicate pair
    score = rng.normal(0.5, 0.1, n)
    score[5555] = 9.5  # one outlier
    score[[10, 20, 30]] = np.nan  # NaN is null for GE on pandas
    lang = np.array(["en", "de", "fr"])[rng.integers(0, 3, n)].astype(object)
    lang[3333] = "xx"  # one value outside the set
    lang[[5, 6]] = None
    n_int = rng.integers(0, 1000, n)
    a, b = rng.integers(0, 50, n), rng.integers(0, 200, n)
    seq = (np.arange(n) // 2).astype(np.float64)  # increasing, with ties
    seq[1000] = 0  # out of order where two shards meet
    seq[2700] = 5  # ... where two batches meet
    seq[2350] = 1  # ... inside a batch
    seq[[3000, 3001]] = np.nan  # a shard starting with nulls: compared from its first value
    table = pa.table({
        "id": ids, "score": score, "lang": pa.array(lang, pa.string()), "n": n_int,
        "a": a, "b": b, "text": [f"text {i % 4000}" for i in range(n)],
        "seq": seq, "desc": np.arange(n, 0, -1),
    })
    step = n // SHARDS
    return [table.slice(k * step, step) for k in range(SHARDS)]


CASES: list[dict[str, Any]] = [
    {"expect_column_max_to_be_between": {"column": "score", "max_value": 5}},
    {"expect_column_max_to_be_between": {"column": "score", "max_value": 10}},
    {"expect_column_min_to_be_between": {"column": "n", "min_value": 0}},
    {"expect_column_sum_to_be_between": {"column": "n", "min_value": 1, "max_value": 10**9}},
    {"expect_column_mean_to_be_between": {"column": "score", "min_value": 0.4, "max_value": 0.6}},
    {"expect_column_stdev_to_be_between": {"column": "score", "max_value": 0.2}},
    {"expect_column_distinct_values_to_be_in_set": {"column": "lang", "value_set": ["en", "de", "fr"]}},
    {"expect_column_distinct_values_to_be_in_set": {"column": "lang", "value_set": ["en", "de", "fr", "xx"]}},
    {"expect_column_distinct_values_to_contain_set": {"column": "lang", "value_set": ["en", "it"]}},
    {"expect_column_distinct_values_to_equal_set": {"column": "lang", "value_set": ["en", "de", "fr", "xx"]}},
    {"expect_column_unique_value_count_to_be_between": {"column": "text", "min_value": 4000, "max_value": 4000}},
    {"expect_column_unique_value_count_to_be_between": {"column": "id", "min_value": ROWS}},
    {"expect_column_proportion_of_unique_values_to_be_between": {"column": "text", "min_value": 0.6}},
    {"expect_column_proportion_of_unique_values_to_be_between": {"column": "score", "min_value": 0.99}},
    {"expect_column_values_to_be_unique": {"column": "id"}},
    {"expect_column_values_to_be_unique": {"column": "id", "mostly": 0.99}},
    {"expect_column_values_to_be_unique": {"column": "text"}},
    {"expect_compound_columns_to_be_unique": {"column_list": ["a", "b"]}},
    {"expect_compound_columns_to_be_unique": {"column_list": ["id", "n"]}},
    {"expect_column_median_to_be_between": {"column": "score", "min_value": 0.45, "max_value": 0.55}},
    {"expect_column_median_to_be_between": {"column": "n", "max_value": 400}},
    {"expect_column_quantile_values_to_be_between": {"column": "n", "quantile_ranges": {
        "quantiles": [0.05, 0.5, 0.95], "value_ranges": [[0, 100], [400, 600], [900, 1000]]}}},
    {"expect_table_columns_to_match_set": {"column_set": ["id", "score", "lang", "n", "a", "b", "text"]}},
    {"expect_table_column_count_to_be_between": {"min_value": 8}},
    {"expect_column_to_exist": {"column": "lang"}},
    {"expect_column_values_to_be_of_type": {"column": "n", "type_": "str"}},
    {"expect_column_values_to_be_of_type": {"column": "n", "type_": "int64"}},
    {"expect_column_values_to_be_in_type_list": {"column": "score", "type_list": ["int64", "str"]}},
    {"expect_column_values_to_be_in_type_list": {"column": "score", "type_list": ["float64"]}},
    {"expect_column_type_to_be": {"column": "n", "type_": "int64"}},
    {"expect_column_type_to_be": {"column": "n", "type_": "float64"}},
    {"expect_column_most_common_value_to_be_in_set": {"column": "lang", "value_set": ["en"]}},
    {"expect_column_most_common_value_to_be_in_set": {"column": "text", "value_set": ["text 1", "text 2"], "ties_okay": True}},
    {"expect_column_most_common_value_to_be_in_set": {"column": "text", "value_set": ["text 1", "text 2"]}},
    {"expect_column_proportion_of_non_null_values_to_be_between": {"column": "lang", "min_value": 0.9999}},
    {"expect_column_proportion_of_non_null_values_to_be_between": {"column": "score", "min_value": 0.99}},
    {"expect_column_values_to_be_increasing": {"column": "seq"}},
    {"expect_column_values_to_be_increasing": {"column": "seq", "mostly": 0.999}},
    {"expect_column_values_to_be_increasing": {"column": "seq", "strictly": True, "mostly": 0.3}},
    {"expect_column_values_to_be_decreasing": {"column": "desc", "strictly": True}},
    {"expect_column_values_to_be_decreasing": {"column": "seq"}},
    {"expect_column_value_z_scores_to_be_less_than": {"column": "score", "threshold": 5, "double_sided": True}},
    {"expect_column_values_to_not_be_outliers": {"column": "n"}},
    {"expect_column_max_to_be_between": {"column": "score", "max_value": 5, "row_condition": "n > 500", "condition_parser": "pandas"}},
    {"expect_column_mean_to_be_between": {"column": "n", "min_value": 500, "row_condition": "lang == 'en'", "condition_parser": "pandas"}},
    {"expect_column_values_to_be_unique": {"column": "id", "row_condition": "a < 25", "condition_parser": "pandas"}},
    {"expect_column_distinct_values_to_be_in_set": {"column": "lang", "value_set": ["en"], "row_condition": "b > 100", "condition_parser": "pandas"}},
    {"expect_column_most_common_value_to_be_in_set": {"column": "a", "value_set": [7], "row_condition": "b < 20", "condition_parser": "pandas"}},
    {"expect_column_values_to_be_increasing": {"column": "seq", "row_condition": "a < 25", "condition_parser": "pandas"}},
]


def specs(items: list[dict[str, Any]]) -> list[Any]:
    return parse_expectations(items, Located("test.yaml", items, {}), Path("."))


def ge_results(frame: Any, items: list[dict[str, Any]]) -> list[Any]:
    import great_expectations as gx
    from great_expectations.expectations.registry import get_expectation_impl

    ctx = gx.get_context(mode="ephemeral")
    batch = ctx.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("b").get_batch(
        batch_parameters={"dataframe": frame})
    out = []
    for item in items:
        (name, kwargs), = item.items()
        out.append(batch.validate(get_expectation_impl(name)(**kwargs), result_format="SUMMARY"))
    return out


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):  # numpy scalars (GE) compared as Python values
        return sorted(repr(getattr(v, "item", lambda v=v: v)()) for v in a) == sorted(repr(getattr(v, "item", lambda v=v: v)()) for v in b)
    return bool(a == b)


def test_every_exact_expectation_agrees_with_great_expectations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev, "TASK_ROWS", 2_000)  # 3 parts
    monkeypatch.setattr(ev, "BATCH_ROWS", 700)  # several batches per shard
    monkeypatch.setattr(aggregates, "BUCKET_ROWS", 1_000)  # 8 hash buckets
    tables = make_tables()
    files = []
    for i, t in enumerate(tables):
        pq.write_table(t, tmp_path / f"part-{i}.parquet")
        files.append((str(tmp_path / f"part-{i}.parquet"), t.num_rows))
    ours = evaluate(specs(CASES), files).results
    theirs = ge_results(pa.concat_tables(tables).to_pandas(), CASES)
    disagree = []
    for item, got, want in zip(CASES, ours, theirs):
        (name, kwargs), = item.items()
        assert got.meta["curate"]["method"] == "exact", (name, got.meta)
        if got.success != want.success:
            disagree.append((name, kwargs, "verdict", got.success, want.success))
        for key in ("observed_value", "unexpected_count", "element_count", "missing_count"):
            if key in want.result and not same(got.result.get(key), want.result[key]):
                disagree.append((name, kwargs, key, got.result.get(key), want.result[key]))
    assert not disagree, "\n".join(map(str, disagree))
    # the planted rows are what failed
    verdicts = [r.success for r in ours]
    assert verdicts[0] is False and verdicts[1] is True and verdicts[14] is False and verdicts[15] is True and verdicts[25] is False
    increasing = next(r for item, r in zip(CASES, ours) if item == CASES[CASES.index({"expect_column_values_to_be_increasing": {"column": "seq"}})])
    assert not increasing.success and increasing.result["unexpected_count"] == 3  # the three planted, wherever they sit


def test_a_version_with_no_rows_is_judged_on_its_schema_as_ge_judges_an_empty_frame(tmp_path: Path) -> None:
    schema = pa.schema([("id", pa.string()), ("lang", pa.string()), ("score", pa.float64())])
    items: list[dict[str, Any]] = [
        {"expect_column_values_to_be_unique": {"column": "id"}},
        {"expect_column_distinct_values_to_be_in_set": {"column": "lang", "value_set": ["en"]}},
        {"expect_column_values_to_not_be_null": {"column": "id"}},
        {"expect_column_median_to_be_between": {"column": "score", "min_value": 0}},
        {"expect_table_columns_to_match_set": {"column_set": ["id", "lang", "score"]}},
        {"expect_column_mean_to_be_between": {"column": "score", "min_value": 0}},
    ]
    ours = evaluate(specs(items), [], schema=schema).results
    theirs = ge_results(schema.empty_table().to_pandas(), items)
    assert [r.success for r in ours] == [r.success for r in theirs], ([r.result for r in ours], [r.result for r in theirs])
    assert not any(r.exception_info.get("raised_exception") for r in ours), [r.exception_info for r in ours]


def test_nan_is_null_in_the_duplicate_rate_as_in_ge(tmp_path: Path) -> None:
    table = pa.table({"x": pa.array([1.0, float("nan"), float("nan"), None, 2.0, 2.0], pa.float64())})
    pq.write_table(table, tmp_path / "p.parquet")
    (result,) = evaluate(specs([{"curate_duplicate_rate": {"column": "x", "max_rate": 0.2}}]), [(str(tmp_path / "p.parquet"), 6)]).results
    assert result.result["observed_value"] == pytest.approx(1 / 6) and result.success  # only the second 2.0 repeats


def test_the_gate_in_curate_run_catches_the_single_bad_row_on_real_ray(tmp_path: Path) -> None:
    from helpers import run_cli, write_pipeline

    tables = make_tables()
    (tmp_path / "in").mkdir()
    for i, t in enumerate(tables):
        pq.write_table(t, tmp_path / "in" / f"part-{i}.parquet")
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: parquet, paths: [{tmp_path}/in]}}
stages:
  - length_filter: {{min_chars: 1}}
output: {{dataset: {tmp_path}/out}}
ray: {{num_cpus: 2}}
expectations:
  - expect_column_max_to_be_between: {{column: score, max_value: 5}}
  - expect_column_values_to_be_unique: {{column: id}}
  - expect_column_distinct_values_to_be_in_set: {{column: lang, value_set: [en, de, fr]}}
  - expect_column_sum_to_be_between: {{column: n, min_value: 1}}
  - expect_column_min_to_be_between: {{column: score, min_value: 1, row_condition: "lang == 'xx'", condition_parser: pandas}}
  - expect_column_most_common_value_to_be_in_set: {{column: text, value_set: ["text 1"]}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=600)
    assert out.returncode == 5, out.stderr
    text = " ".join(out.stderr.split())
    assert "expect_column_max_to_be_between" in text and "9.5" in text
    assert "expect_column_values_to_be_unique" in text and "2 unexpected" in text
    assert "expect_column_distinct_values_to_be_in_set" in text and "xx" in text
    failed = text.split("the failed ones:")[1]
    assert "expect_column_sum_to_be_between" not in failed
    # the one row with lang 'xx' has a normal score (< 1): found among 6,000 by its condition
    assert "expect_column_min_to_be_between" in failed and "lang == 'xx'" in failed
    # 2,000 texts appear twice each: every one of them is a most common value, so no single one is
    assert "expect_column_most_common_value_to_be_in_set" in failed
    assert "An unexpected Exception occurred during data docs rendering" not in text
    assert not (tmp_path / "out" / "_delta_log").exists() and not list((tmp_path / "out").glob("_curate_gate/*"))


def test_curate_check_with_an_unknown_column_is_a_usage_error_with_a_suggestion(tmp_path: Path) -> None:
    from deltalake import write_deltalake
    from helpers import run_cli

    write_deltalake(str(tmp_path / "ds"), pa.table({"id": ["a", "b"], "score": [0.1, 0.2]}))
    (tmp_path / "e.yaml").write_text("- expect_column_max_to_be_between: {column: scor, max_value: 1}\n"
                                     "- expect_column_values_to_not_be_null: {column: idd}\n"
                                     "- expect_column_mean_to_be_between: {column: score, min_valu: 0}\n", encoding="utf-8")
    out = run_cli("check", str(tmp_path / "ds"), "--expectations", str(tmp_path / "e.yaml"), "--report-dir", str(tmp_path / "r"), cwd=tmp_path)
    text = " ".join(out.stderr.split())
    assert out.returncode == 2, out.stderr
    assert "column 'scor' is not in" in text and "did you mean 'score'?" in text
    assert "column 'idd' is not in" in text and "did you mean 'id'?" in text  # every problem at once ...
    assert "min_valu" in text and "did you mean 'min_value'" in text  # ... a bad kwarg too


def test_quantiles_past_the_exact_size_come_from_a_sketch_within_its_stated_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregates, "EXACT_QUANTILE_ROWS", 1_000)
    monkeypatch.setattr(ev, "TASK_ROWS", 2_000)
    rng = np.random.default_rng(3)
    values = rng.lognormal(0, 1, 20_000)
    files = []
    for k in range(4):
        pq.write_table(pa.table({"x": values[k * 5000:(k + 1) * 5000]}), tmp_path / f"p{k}.parquet")
        files.append((str(tmp_path / f"p{k}.parquet"), 5000))
    (median,) = evaluate(specs([{"expect_column_median_to_be_between": {"column": "x", "min_value": 0.5, "max_value": 2}}]), files).results
    meta = median.meta["curate"]
    assert meta["method"] == "approximate" and 0 < meta["rank_error"] < 0.01
    rank = float((values <= median.result["observed_value"]).mean())  # the true rank of the value returned
    assert abs(rank - 0.5) <= meta["rank_error"], (rank, meta)
    assert median.success


def test_an_aggregate_of_a_text_column_is_not_evaluated_as_in_ge_and_does_not_crash(tmp_path: Path) -> None:
    pq.write_table(pa.table({"t": ["a", "b"]}), tmp_path / "p.parquet")
    items: list[dict[str, Any]] = [{"expect_column_mean_to_be_between": {"column": "t", "min_value": 0}}]
    (ours,) = evaluate(specs(items), [(str(tmp_path / "p.parquet"), 2)]).results
    (theirs,) = ge_results(pa.table({"t": ["a", "b"]}).to_pandas(), items)
    assert ours.success is theirs.success is False
    assert ours.exception_info["raised_exception"] and theirs.exception_info  # neither could evaluate it


def test_a_failed_uniqueness_names_the_rows_that_share_a_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ev, "TASK_ROWS", 1_000)  # the two rows sit in different parts
    monkeypatch.setattr(aggregates, "BUCKET_ROWS", 500)  # and the hash counts in several buckets
    n = 3_000
    emails = [f"user{i}@example.org" for i in range(n)]
    emails[2_500] = emails[10]  # one value twice, far apart
    table = pa.table({"id": [f"row-{i}" for i in range(n)], "email": emails, "a": [i % 7 for i in range(n)], "b": list(range(n))})
    table = table.set_column(3, "b", pa.array([5 if i in (100, 1_920) else i for i in range(n)]))  # (a, b) repeated once
    files = []
    for k in range(3):
        pq.write_table(table.slice(k * 1_000, 1_000), tmp_path / f"p{k}.parquet")
        files.append((str(tmp_path / f"p{k}.parquet"), 1_000))
    unique, compound = evaluate(specs([{"expect_column_values_to_be_unique": {"column": "email"}},
                                       {"expect_compound_columns_to_be_unique": {"column_list": ["a", "b"]}}]), files).results
    assert not unique.success and unique.result["unexpected_count"] == 2
    assert unique.result["partial_unexpected_list"] == ["user10@example.org"] * 2
    assert sorted(unique.result["partial_unexpected_ids"]) == ["row-10", "row-2500"]
    assert not compound.success and sorted(compound.result["partial_unexpected_ids"]) == ["row-100", "row-1920"]
    assert compound.result["partial_unexpected_list"] == [{"a": 2, "b": 5}] * 2
