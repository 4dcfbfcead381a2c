"""The registry is lazy: naming a stage imports its module only, `curate run` of a text pipeline
imports no filter, model or GPU module, and subcommands load when named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import run_cli, write_jsonl, write_pipeline


def _modules_after(code: str, cwd: Path) -> list[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loading_a_pipeline_imports_only_the_stages_it_names(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "x"}])
    pipe = write_pipeline(tmp_path / "p.yaml", f"input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}\nstages: [normalize, exact_dedup]\noutput: {{dataset: {tmp_path}/o}}\n")
    mods = _modules_after(f"from curate.pipelines.config import load_pipeline\nload_pipeline({str(pipe)!r})", tmp_path)
    assert "curate.pipelines.stages.normalize" in mods and "curate.pipelines.stages.exact_dedup" in mods
    assert not [m for m in mods if m.startswith(("curate.filters", "curate.synth", "curate.annotation"))]
    assert "ray" not in mods and "curate.pipelines.execution" not in mods, "nothing of Ray before the run starts"


def test_import_curate_is_free_of_side_effects(tmp_path: Path) -> None:
    mods = _modules_after("import curate", tmp_path)
    assert not [m for m in mods if m.startswith("curate.") and m != "curate._version"], "import curate imports no subpackage"


def test_subcommands_are_listed_without_being_imported(tmp_path: Path) -> None:
    mods = _modules_after(
        "from click.testing import CliRunner\nfrom curate.pipelines.cli import cli\nr = CliRunner().invoke(cli, ['--help'])\nassert 'quality' in r.output, r.output",
        tmp_path,
    )
    assert "curate.filters.quality_cli" not in mods
    out = run_cli("quality", "--help")
    assert out.returncode == 0 and "Usage:" in out.stdout
