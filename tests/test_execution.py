"""Unit tests of the engine's parts without Ray: the plan check, applying stages to a batch
(Expand children, weights, positions), the writer's counts and the run journal."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from curate.pipelines import journal
from curate.pipelines.config import parse_pipeline
from curate.pipelines.errors import ConfigError, StageError
from curate.pipelines.execution.apply import apply_expand, apply_stage, child_positions, child_weights, with_engine_columns
from curate.pipelines.execution.driver import ray_args
from curate.pipelines.execution.writer import WriteTarget, count_rows, merge_counts, write_block
from curate.pipelines.plan import check_columns, checkpoint_before_global
from curate.pipelines.stage import (
    BORN,
    DROP_RULE,
    DROP_STAGE,
    PARENT_ID,
    POS,
    ROW_WEIGHT,
    TASK,
    WEIGHT,
    DropRow,
    Expand,
    Filter,
    Params,
    Resources,
    Stage,
)
from curate.pipelines.yamlsource import Located


class Chunks(Expand[Params]):
    name = "chunks"

    def expand(self, row: dict[str, Any]) -> Iterable[dict[str, Any]]:
        if row["text"] == "bad":
            raise DropRow("bad_input", "the text is bad")
        return [{"text": w} for w in row["text"].split()]


class Upper(Stage[Params]):
    name = "upper"
    writes = ("upper",)

    def process(self, batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        return batch.append_column("upper", pc.utf8_upper(batch.column("text")))


class Crash(Filter[Params]):
    name = "crash"

    def keep(self, row: dict[str, Any]) -> bool:
        if row["id"] == "b":
            raise KeyError("nope")
        return True


def rows(texts: list[str], task: int = 0) -> pa.Table:
    t = pa.table({"id": [chr(ord("a") + i) for i in range(len(texts))], "text": texts, POS: pa.array(range(100, 100 + len(texts)), pa.int64())})
    return with_engine_columns(t, task)


# ---------------------------------------------------------------- plan check


def pipeline(stages: list[Any], input_: dict[str, Any] | None = None) -> Any:
    data: dict[str, Any] = {"stages": stages, "output": {"dataset": "/tmp/x"}}
    if input_ is not None:
        data["input"] = input_
    return parse_pipeline(Located("/tmp/p.yaml", data, {}))


def test_plan_check_accepts_columns_made_by_earlier_stages() -> None:
    p = pipeline([{"exact_dedup": {"field": "text"}}, {"minhash_dedup": {}}], {"format": "jsonl", "paths": ["x"]})
    assert check_columns(p, ["id", "text"], "input")[:2] == ["id", "text"]


def test_plan_check_names_stage_column_and_what_exists() -> None:
    p = pipeline([{"normalize": {}}, {"exact_dedup": {"field": "title"}}], {"format": "jsonl", "paths": ["x"]})
    with pytest.raises(ConfigError) as err:
        check_columns(p, ["id", "text", "url"], "input")
    msg = err.value.message
    assert "stage 'exact_dedup' reads column 'title'" in msg and "available: id (input), text (input), url (input)" in msg


def test_plan_check_knows_expand_adds_parent_id() -> None:
    p = pipeline([{"normalize": {}}, {"exact_dedup": {"field": "parent_id"}}], {"format": "jsonl", "paths": ["x"]})
    with pytest.raises(ConfigError):
        check_columns(p, ["id", "text"], "input")
    p.stages.insert(0, Chunks(Params()))
    assert PARENT_ID in check_columns(p, ["id", "text"], "input")


def test_checkpoint_only_when_work_before_the_global_stage_is_expensive() -> None:
    p = pipeline([{"normalize": {}}, {"exact_dedup": {}}], {"format": "jsonl", "paths": ["x"]})
    assert not checkpoint_before_global(p.stages)
    assert checkpoint_before_global([Chunks(Params()), *p.stages])
    assert checkpoint_before_global([p.stages[0].with_(gpus=1), p.stages[1]])
    assert not checkpoint_before_global([p.stages[0]])


# ---------------------------------------------------------------- run settings


def test_run_settings_override_class_defaults_and_map_to_ray() -> None:
    stage = Upper(Params())
    assert stage.settings.batch_size == 4096 and stage.settings.resources == Resources()
    tuned = stage.with_(batch_size=64, gpus=0.5, concurrency=3, max_retries=0)
    assert stage.settings.batch_size == 4096, "with_ returns a copy"
    args = ray_args(tuned, {"CPU": 8, "GPU": 2})
    assert args["batch_size"] == 64 and args["num_gpus"] == 0.5 and args["max_retries"] == 0
    assert args["compute"].size == 3
    stateful = Upper(Params()).with_(gpus=0.5)
    stateful.stateful = True  # type: ignore[misc]
    pool = ray_args(stateful, {"CPU": 8, "GPU": 2})["compute"]
    assert pool.min_size == pool.max_size == 4, "a GPU actor pool is sized by GPUs: 2 GPUs / 0.5 each"


# ---------------------------------------------------------------- applying stages


def test_expand_children_ids_positions_and_exact_weights() -> None:
    batch = rows(["one two three", "", "bad", "four"])
    out, report = apply_expand(Chunks(Params()), "chunks", batch)
    live = out.filter(pa.compute.is_null(out.column(DROP_STAGE)))
    assert live.column("id").to_pylist() == ["a/0", "a/1", "a/2", "d/0"]
    assert live.column(PARENT_ID).to_pylist() == ["a", "a", "a", "d"]
    assert live.column(BORN).to_pylist() == ["chunks"] * 4
    dead = {r["id"]: r for r in out.filter(pa.compute.is_valid(out.column(DROP_STAGE))).to_pylist()}
    assert dead["b"][DROP_RULE] == "no_output" and dead["c"][DROP_RULE] == "bad_input"
    assert dead["a"][DROP_RULE] == "_expanded" and dead["a"][WEIGHT] == 0
    # weights are conserved exactly: what the 4 parents carried, their children and drops carry
    assert sum(out.column(WEIGHT).to_pylist()) == 4 * ROW_WEIGHT
    # positions depend only on (parent position, child number): same in any batch
    again, _ = apply_expand(Chunks(Params()), "chunks", rows(["one two three"]))
    assert again.column(POS).to_pylist()[:3] == live.column(POS).to_pylist()[:3]
    assert len(set(live.column(POS).to_pylist())) == 4 and min(live.column(POS).to_pylist()) >= 1 << 62
    assert (report.rows_in, report.dropped, report.rows_out) == (4, 2, 4)


def test_child_weights_split_exactly() -> None:
    w = np.array([ROW_WEIGHT] * 7, dtype=np.int64)
    k = np.arange(7, dtype=np.int64)
    assert child_weights(w, k, np.full(7, 7)).sum() == ROW_WEIGHT
    assert len(set(child_positions(np.full(1000, 5), np.arange(1000)).tolist())) == 1000


def test_a_stage_sees_its_columns_and_pos_and_the_engine_keeps_the_rest() -> None:
    out, _ = apply_stage(Upper(Params()), "upper", rows(["x", "y"], task=7))
    assert out.column("upper").to_pylist() == ["X", "Y"] and out.column(TASK).to_pylist() == [7, 7]


def test_a_stage_error_names_the_stage_and_the_row() -> None:
    with pytest.raises(StageError) as err:
        apply_stage(Crash(Params()), "crash", rows(["x", "y", "z"]))
    assert err.value.message == "stage crash failed on row 'b': KeyError: 'nope'"


# ---------------------------------------------------------------- writer and journal


def test_counts_come_from_the_data(tmp_path: Path) -> None:
    out, _ = apply_expand(Chunks(Params()), "chunks", rows(["one two", "", "x"]))
    counts = count_rows(out)
    assert counts["inputs"] == 3 and counts["born"] == {"chunks": 3} and counts["expanded"] == {"chunks": 2}
    assert counts["dropped"] == {"chunks": {"no_output": 1}}
    total: dict[str, Any] = {}
    merge_counts(total, counts)
    merge_counts(total, counts)
    assert total["inputs"] == 6 and total["dropped"]["chunks"]["no_output"] == 2


def test_journal_marks_a_task_complete_only_when_all_its_rows_are_written(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    key = journal.journal_key("fp", [("a", 1, 2.0)], uri, "overwrite")
    j = journal.Journal.open(uri, key, "attempt1", {})
    target = WriteTarget(main_uri=uri, dropped_uri=None, run_id="r1", shard_rows=100, shard_bytes=1 << 20,
                         compression="zstd", storage_options={}, journal_uri=j.attempt_uri)
    first, _ = apply_expand(Chunks(Params()), "chunks", rows(["one two", "three"], task=0))
    other = rows(["x"], task=1)
    journal.record_read(j.attempt_uri, 0, 2, {})
    journal.record_read(j.attempt_uri, 1, 1, {})
    # task 0's rows arrive in two blocks; the first block also holds task 1's row
    result = write_block(pa.concat_tables([first.slice(0, 1), other], promote_options="permissive"), target)
    assert sorted(set(result.column("task").to_pylist())) == [0, 1]
    later = journal.Journal.open(uri, key, "attempt2", {})
    assert set(later.reused) == {1}, "task 0 is not complete yet"
    write_block(first.slice(1), target)
    write_block(first.slice(1), target)  # a retried block rewrites the same record
    later = journal.Journal.open(uri, key, "attempt3", {})
    assert set(later.reused) == {0, 1}
    assert sum(f["rows"] for w in later.reused[0].writes for f in w["files"] if f["kind"] == "main") == 3
    later.discard()
    assert journal.Journal.open(uri, key, "attempt4", {}).reused == {}


def test_a_truncated_journal_record_means_unfinished(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    j = journal.Journal.open(uri, "k", "a1", {})
    journal.record_read(j.attempt_uri, 0, 1, {})
    (Path(j.attempt_uri) / "write").mkdir(parents=True)
    (Path(j.attempt_uri) / "write" / "0-x.json").write_text(json.dumps({"task": 0, "weight": ROW_WEIGHT})[:10])
    assert journal.Journal.open(uri, "k", "a2", {}).reused == {}
