"""The plugin API's conveniences: a stage's name and Params inferred from its class, rule and
reason apart in keep()'s verdict, and teardown() called on actors at the end of a real run."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from curate.pipelines.execution.apply import run_on_table
from curate.pipelines.stage import DROP_COLUMNS, DROP_REASON, DROP_RULE, POS, Filter, Params, Stage, snake_case
from helpers import run_cli, write_jsonl, write_pipeline
from pydantic import Field


class WordParams(Params):
    min_words: int = Field(3, ge=0)


class FewWords(Filter[WordParams]):
    def keep(self, row: dict[str, Any]) -> Any:
        n = len(row["text"].split())
        if n >= self.params.min_words:
            return True
        if n == 0:
            return False, "empty"  # a rule name: the rule
        if n == 1:
            return False, f"{n} word"  # a text with figures: the reason, under the stage's rule
        return False, "too_few_words", f"{n} words"


def _apply(stage: Stage[Any], texts: list[str]) -> list[tuple[Any, Any]]:
    n = len(texts)
    batch = pa.table({"id": [str(i) for i in range(n)], "text": texts, POS: pa.array(range(n), pa.int64()),
                      **{c: pa.nulls(n, pa.string()) for c in DROP_COLUMNS}})
    out = run_on_table(stage, batch)
    return list(zip(out.column(DROP_RULE).to_pylist(), out.column(DROP_REASON).to_pylist()))


def test_name_and_params_are_inferred_from_the_class() -> None:
    assert FewWords.name == "few_words" and FewWords.Params is WordParams
    assert snake_case("HTMLCleaner") == "html_cleaner" and snake_case("NotMostlyCode") == "not_mostly_code"

    class _Helper(Filter[WordParams]):  # a helper base: no name of its own
        pass

    assert _Helper.name == "" and _Helper.Params is WordParams

    class Named(FewWords):  # a subclass of a named stage keeps its parent's name
        pass

    assert Named.name == "few_words"
    with pytest.raises(Exception, match="min_words"):
        FewWords.Params(min_words=-1)  # validated against its own model, not the empty base


def test_rule_and_reason_are_apart() -> None:
    got = _apply(FewWords(WordParams()), ["three words here", "", "one", "two words"])
    assert got == [(None, None), ("empty", "empty"), ("few_words", "1 word"), ("too_few_words", "2 words")]


@pytest.mark.slow  # (a real run on Ray)
def test_teardown_runs_on_every_actor_at_the_end_of_a_run(tmp_path: Path) -> None:
    plugins = Path(__file__).parent / "engine_plugins" / "curate_test_plugins.py"
    shutil.copy(plugins, tmp_path / plugins.name)  # a plugin next to the pipeline file
    write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": f"text {i}"} for i in range(20)])
    marker = tmp_path / "teardown.log"
    pipe = write_pipeline(tmp_path / "p.yaml", f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages:
  - curate_test_plugins:TornDown: {{marker: {marker}}}
output: {{dataset: {tmp_path}/out}}
ray: {{num_cpus: 2}}
""")
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert marker.exists() and marker.read_text().strip(), "teardown() was not called"
