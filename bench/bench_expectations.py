"""The publish gate's cost: `curate check` (the gate's own path: parts, batches, merged counts
and exact aggregates, distinct values counted in hash buckets; nothing sampled) vs Great Expectations validating the whole table as one pandas frame (what a
user would write by hand), on the same Delta table, in one invocation.

    .venv/bin/python bench/bench_expectations.py [--rows 1000000] [--shards 10]

Prints wall time and peak RSS of each (each runs in its own process, so imports are included),
and whether both judged every expectation alike.
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

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

EXPECTATIONS = """\
- expect_column_values_to_not_be_null: {column: text}
- expect_column_values_to_be_in_set: {column: language, value_set: [en, de, fr]}
- expect_column_value_lengths_to_be_between: {column: text, min_value: 1, max_value: 200}
- expect_table_row_count_to_be_between: {min_value: 1000}
- curate_language_share: {column: language, allowed: [en], min_share: 0.5}
- curate_duplicate_rate: {column: text, max_rate: 0.05}
- expect_column_mean_to_be_between: {column: score, min_value: 0.4, max_value: 0.6}
- expect_column_max_to_be_between: {column: score, max_value: 1}
- expect_column_stdev_to_be_between: {column: score, max_value: 0.5}
- expect_column_values_to_be_unique: {column: id}
- expect_column_distinct_values_to_be_in_set: {column: language, value_set: [en, de, fr]}
- expect_column_proportion_of_unique_values_to_be_between: {column: text, min_value: 0.99}
- expect_column_most_common_value_to_be_in_set: {column: language, value_set: [en]}
- expect_column_proportion_of_non_null_values_to_be_between: {column: text, min_value: 0.99}
- expect_column_mean_to_be_between: {column: score, min_value: 0.4, max_value: 0.6, row_condition: "language == 'en'", condition_parser: pandas}
"""

# GE directly: the same expectations that GE itself knows (the curate_* checks are curate's own)
DIRECT = r"""
import json, sys, time, os
os.environ["GX_ANALYTICS_ENABLED"] = "False"
t0 = time.perf_counter()
import great_expectations as gx
import polars as pl
df = pl.read_delta(sys.argv[1]).to_pandas()
ctx = gx.get_context(mode="ephemeral")
batch = ctx.data_sources.add_pandas("p").add_dataframe_asset("a").add_batch_definition_whole_dataframe("b").get_batch(
    batch_parameters={"dataframe": df})
ex = gx.expectations
suite = [
    ex.ExpectColumnValuesToNotBeNull(column="text"),
    ex.ExpectColumnValuesToBeInSet(column="language", value_set=["en", "de", "fr"]),
    ex.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=200),
    ex.ExpectTableRowCountToBeBetween(min_value=1000),
    ex.ExpectColumnMeanToBeBetween(column="score", min_value=0.4, max_value=0.6),
    ex.ExpectColumnMaxToBeBetween(column="score", max_value=1),
    ex.ExpectColumnStdevToBeBetween(column="score", max_value=0.5),
    ex.ExpectColumnValuesToBeUnique(column="id"),
    ex.ExpectColumnDistinctValuesToBeInSet(column="language", value_set=["en", "de", "fr"]),
    ex.ExpectColumnProportionOfUniqueValuesToBeBetween(column="text", min_value=0.99),
    ex.ExpectColumnMostCommonValueToBeInSet(column="language", value_set=["en"]),
    ex.ExpectColumnProportionOfNonNullValuesToBeBetween(column="text", min_value=0.99),
    ex.ExpectColumnMeanToBeBetween(column="score", min_value=0.4, max_value=0.6, row_condition="language == 'en'", condition_parser="pandas"),
]
ok = [batch.validate(e).success for e in suite]
print(json.dumps({"success": ok, "seconds": time.perf_counter() - t0}))
"""


def make_table(path: Path, rows: int, shards: int) -> None:
    from deltalake import write_deltalake

    rng = np.random.default_rng(0)
    per = rows // shards
    for s in range(shards):
        n = per if s < shards - 1 else rows - per * (shards - 1)
        words = rng.integers(0, 50_000, n)
        table = pa.table({
            "id": pa.array([f"d{s}-{i}" for i in range(n)]),
            "text": pa.array([f"document {s}-{i} about topic {w % 97}" for i, w in enumerate(words)]),
            "language": pa.array(rng.choice(["en", "en", "en", "de", "fr"], n)),
            "score": pa.array(rng.random(n)),
        })
        write_deltalake(str(path), table, mode="append" if s else "overwrite")


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *cmd], cwd=cwd, capture_output=True, text=True,
                         env={**os.environ, "GX_ANALYTICS_ENABLED": "False"})
    wall = time.perf_counter() - t0
    rss = [line for line in res.stderr.splitlines() if line.startswith("MAXRSS ")]
    return wall, int(rss[-1].split()[1]) / 1024 if rss else float("nan"), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        make_table(work / "ds", args.rows, args.shards)
        print(f"table: {args.rows:,} rows in {args.shards} shards ({time.perf_counter() - t0:.1f}s to write)")
        (work / "exp.yaml").write_text(EXPECTATIONS)
        curate = str(Path(PY).with_name("curate"))
        wall, rss, res = timed([curate, "check", str(work / "ds"), "--expectations", "exp.yaml", "--report-dir", str(work / "r")], work)
        print(f"curate check ({EXPECTATIONS.count('- ')} expectations, 2 of them curate's, all exact): {wall:.1f}s, peak RSS {rss:.0f} MB, exit {res.returncode}, "
              f"{wall / args.rows * 1e6:.2f} us/row")
        if res.returncode != 0:  # every expectation holds on this table: anything else is a failure
            print(res.stdout[-2000:], res.stderr[-2000:])
            raise SystemExit(1)
        (work / "direct.py").write_text(DIRECT)
        wall2, rss2, res2 = timed([PY, "direct.py", str(work / "ds")], work)
        if res2.returncode != 0:
            print(res2.stderr[-2000:])
            raise SystemExit(1)
        out = json.loads(res2.stdout.strip().splitlines()[-1])
        print(f"Great Expectations on one pandas frame ({DIRECT.count('ex.Expect')} expectations): {wall2:.1f}s, peak RSS {rss2:.0f} MB, "
              f"{wall2 / args.rows * 1e6:.2f} us/row, results {out['success']}")


if __name__ == "__main__":
    main()
