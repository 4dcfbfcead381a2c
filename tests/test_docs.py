"""The README matches the code: every config key is documented, the stage example runs."""

from __future__ import annotations

import re

import pyarrow as pa
from helpers import ROOT
from pydantic import BaseModel

from curate.pipelines.config import InputConfig, OutputConfig, PipelineConfig, RayConfig, RunConfig
from curate.pipelines.execution.apply import run_on_table
from curate.pipelines.stage import DROP_COLUMNS, DROP_RULE, POS

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _reference_block() -> str:
    section = README.split("## Pipeline file reference", 1)[1]
    return section.split("```yaml", 1)[1].split("```", 1)[0]


def test_every_config_key_is_in_the_reference() -> None:
    block = _reference_block()
    documented = set(re.findall(r"^\s*([a-z_]+):", block, flags=re.M))
    models: list[type[BaseModel]] = [PipelineConfig, InputConfig, OutputConfig, RayConfig, RunConfig]
    for model in models:
        for key in model.model_fields:
            assert key in documented, f"{model.__name__}.{key} is missing from the README's pipeline reference"


def test_reference_defaults_match_the_code() -> None:
    block = _reference_block()
    for model in (InputConfig, OutputConfig, RunConfig):
        for key, field in model.model_fields.items():
            m = re.search(rf"^\s*{key}:\s*(\S+)", block, flags=re.M)
            if m is None or field.is_required():
                continue
            default = field.get_default(call_default_factory=True)
            shown = m.group(1)
            if isinstance(default, bool):
                assert shown == str(default).lower(), key
            elif isinstance(default, int) and key != "shard_bytes":
                assert int(shown) == default, key
            elif isinstance(default, str) and key not in ("format",):
                assert shown == default, key


def test_every_builtin_stage_is_documented() -> None:
    from curate.pipelines.registry import builtin_stages

    docs = README + "".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))
    for name in builtin_stages():
        assert f"`{name}`" in docs, f"stage {name} is not documented in README.md or docs/"


def test_readme_stage_example_runs() -> None:
    section = README.split("### Writing a stage", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    cls = namespace["NotMostlyCode"]
    stage = cls(cls.Params())  # type: ignore[operator]
    n = 2
    batch = pa.table(
        {
            "id": ["prose", "code"],
            "text": ["Just words.\nMore words.", "def f():\n    return 1\n    pass"],
            POS: pa.array(range(n), pa.int64()),
            **{c: pa.nulls(n, pa.string()) for c in DROP_COLUMNS},
        }
    )
    out = run_on_table(stage, batch)
    assert out.column(DROP_RULE).to_pylist() == [None, "code_fraction 0.67"]
