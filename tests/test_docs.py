"""The README matches the code: every config key is documented, the stage examples run, every stage
class is registered as an entry point."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from curate.pipelines.config import InputConfig, OutputConfig, PipelineConfig, RayConfig, RunConfig, StageRunConfig
from curate.pipelines.execution.apply import run_on_table
from curate.pipelines.stage import DROP_COLUMNS, DROP_REASON, DROP_RULE, PARENT_ID, POS, Stage
from helpers import ROOT
from pydantic import BaseModel

README = (ROOT / "README.md").read_text(encoding="utf-8")
REFERENCE = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
STAGES = (ROOT / "docs" / "stages.md").read_text(encoding="utf-8")


def _reference_block() -> str:
    section = REFERENCE.split("## Pipeline file reference", 1)[1]
    return section.split("```yaml", 1)[1].split("```", 1)[0]


def test_every_config_key_is_in_the_reference() -> None:
    block = _reference_block()
    documented = set(re.findall(r"^\s*([a-z_]+):", block, flags=re.M))
    models: list[type[BaseModel]] = [PipelineConfig, InputConfig, OutputConfig, RayConfig, RunConfig, StageRunConfig]
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


def _readme_code(heading: str, nth: int = 0, text: str = README) -> dict[str, Any]:
    """Execute the ``nth`` Python block after ``heading`` in the README (or ``text``); returns its namespace."""
    section = text.split(heading, 1)[1]
    code = section.split("```python")[nth + 1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_readme_stage_example_runs() -> None:
    namespace = _readme_code("## Writing a stage")
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
    assert cls.name == "not_mostly_code" and cls.Params.__name__ == "HasCodeParams"  # both inferred
    assert out.column(DROP_RULE).to_pylist() == [None, "mostly_code"]
    assert out.column(DROP_REASON).to_pylist() == [None, "67% of lines look like code"]


def test_readme_expand_example_runs() -> None:
    cls = _readme_code("### Expand: 1 -> N rows", text=STAGES)["Chunk"]
    stage = cls(cls.Params(max_chars=4))
    out = run_on_table(stage, pa.table({"id": ["a", "b"], "text": ["abcdefghij", "  "], "source": ["x", "y"]}))
    live = out.filter(pc.is_null(out.column("_drop_stage")))
    assert live.column("id").to_pylist() == ["a/0", "a/1", "a/2"]
    assert live.column(PARENT_ID).to_pylist() == ["a"] * 3
    assert live.column("text").to_pylist() == ["abcd", "efgh", "ij"]
    assert live.column("chunk_no").to_pylist() == [0, 1, 2]
    assert live.column("source").to_pylist() == ["x"] * 3  # inherited from the parent
    dropped = {r["id"]: r[DROP_RULE] for r in out.to_pylist() if r[DROP_RULE] not in (None, "_expanded")}
    assert dropped == {"b": "empty_text"}


def test_readme_generator_example_runs() -> None:
    cls = _readme_code("### Expand: 1 -> N rows", nth=1, text=STAGES)["Grid"]
    stage = cls(cls.Params(topics=["fractions", "photosynthesis"], samples=2))
    seeds = list(stage.source_rows())
    assert len(seeds) == 4 and seeds[0]["id"] == "fractions|children"
    out = run_on_table(stage, pa.Table.from_pylist(seeds))
    live = out.filter(pc.is_null(out.column("_drop_stage")))
    assert live.num_rows == 8, "the README says the generator pipeline writes 8 rows"
    assert "fractions|children/0" in live.column("id").to_pylist()


STAGE_PACKAGES = ("curate.pipelines.stages", "curate.filters", "curate.synth", "curate.annotation")


def test_every_stage_class_has_an_entry_point() -> None:
    """A stage class (a Stage subclass with a ``name``) defined in a stage package is registered in
    pyproject.toml's ``curate.stages`` entry points under that name, and every entry point of those
    packages names such a class: a stage cannot be added (or removed) without its entry point."""
    found: dict[str, str] = {}
    for package_name in STAGE_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__, package_name + "."):
            if info.name.rsplit(".", 1)[1].startswith("_"):
                continue
            module = importlib.import_module(info.name)
            for attr, obj in vars(module).items():
                if inspect.isclass(obj) and issubclass(obj, Stage) and obj.__module__ == module.__name__ and obj.name:
                    assert obj.name not in found, f"two stage classes are named {obj.name!r}: {found[obj.name]} and {info.name}:{attr}"
                    found[obj.name] = f"{info.name}:{attr}"
    registered = {
        ep.name: ep.value for ep in entry_points(group="curate.stages") if ep.value.startswith(tuple(p + "." for p in STAGE_PACKAGES))
    }
    missing = {n: v for n, v in found.items() if registered.get(n) != v}
    assert not missing, (
        f"stage classes without a matching entry point: {missing}; add them to pyproject.toml's "
        '[project.entry-points."curate.stages"] and reinstall (pip install -e .)'
    )
    stale = {n: v for n, v in registered.items() if found.get(n) != v}
    assert not stale, f"curate.stages entry points that name no stage class of the stage packages: {stale}"


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def _anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    import re

    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_the_readme_is_short_and_every_link_resolves() -> None:
    import re

    assert len(README.splitlines()) < 250, "the README is read in five minutes: the reference goes in docs/"
    broken = []
    for md in _markdown_files():
        text = md.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # a web address: not checked offline
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md
            if not dest.exists():
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text(encoding="utf-8")):
                broken.append(f"{md.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
