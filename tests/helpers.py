"""Helpers shared by the tests (importable as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def curate_exe() -> list[str]:
    exe = shutil.which("curate", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "curate"]


def run_cli(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", "CURATE_TEST": "1", **(env or {})}
    return subprocess.run(
        [*curate_exe(), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def write_jsonl(path: Path, rows: list[dict[str, object] | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def write_pipeline(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


