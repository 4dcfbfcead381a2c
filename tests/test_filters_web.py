"""The example pipeline pipelines/examples/web.yaml, run once through `curate run`, offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def curate_bin() -> list[str]:
    local = ROOT / ".venv" / "bin" / "curate"
    found = str(local) if local.exists() else shutil.which("curate")
    return [found] if found else [sys.executable, "-m", "curate.pipelines.cli"]


def test_web_example_runs_offline(tmp_path: Path):
    env = dict(
        os.environ,
        CURATE_OUT=str(tmp_path),
        HF_HUB_OFFLINE="1",
        # any HTTP(S) download attempt would go to a closed local port and fail
        HTTP_PROXY="http://127.0.0.1:9",
        HTTPS_PROXY="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
        https_proxy="http://127.0.0.1:9",
    )
    r = subprocess.run(
        [*curate_bin(), "run", "pipelines/examples/web.yaml", "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    show = subprocess.run([*curate_bin(), "show", str(tmp_path / "web"), "--json"], cwd=ROOT, capture_output=True, text=True, env=env)
    assert show.returncode == 0, show.stderr
    info = json.loads(show.stdout)
    assert {"language", "language_score", "quality_score"} <= set(info["schema"])
    run = info["run"]
    stages = {s["stage"]: s for s in run["stages"]}
    for name in ("language", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality", "quality_classifier", "exact_dedup"):
        assert name in stages
    assert stages["gopher_quality"]["dropped_by_rule"].get("gopher_below_alpha_threshold", 0) > 0
    assert 0 < info["rows"] < 2662
    meta = run["stage_metadata"]
    assert meta["quality_classifier"]["model"].endswith("filters/models/pydocs-quality.ftz")
    card = json.loads((ROOT / "filters" / "models" / "pydocs-quality.ftz.json").read_text())
    assert meta["quality_classifier"]["model_sha256"] == card["sha256"]
    assert meta["language"]["model"].endswith("lid.176.ftz")
