#!/usr/bin/env python3
"""An earlier commit's curate as an importable package, to benchmark it side by side with the
working tree in one run (``--baseline COMMIT`` of bench_pipeline.py / bench_filters.py).

The editable install maps ``curate``, ``curate.pipelines``, ``curate.filters``, ... onto the
repository's top-level folders. This builds the same layout from ``git archive COMMIT`` under
``bench/data/baseline-<commit>/curate`` (cached) and copies the working tree's built native module
(``curate/_native*.so``) into it: the baseline is the earlier *Python* code on the current Rust
core (the Rust core only gained functions since the engine split). Put the returned folder first
on ``PYTHONPATH`` of a ``curate run`` (Ray workers inherit it through the runner's runtime_env):
it is found before the editable install's finder.

    .venv/bin/python bench/baseline.py ab778c0      # prints the folder for PYTHONPATH
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "bench" / "data"
#: top-level folders mapped to curate.<name> by the package-dir of pyproject.toml
SUBPACKAGES = ("pipelines", "filters", "synth", "annotation")


def make_baseline(commit: str) -> Path:
    sha = subprocess.run(["git", "rev-parse", "--short=12", commit], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()
    root = DATA / f"baseline-{sha}"
    done = root / "_SUCCESS"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    src = root / "src"
    src.mkdir(parents=True)
    tar = subprocess.run(["git", "archive", sha], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(src, filter="data")
    pkg = root / "curate"
    shutil.copytree(src / "curate", pkg)
    for name in SUBPACKAGES:
        if (src / name).is_dir():
            shutil.copytree(src / name, pkg / name)
    natives = list((REPO / "curate").glob("_native*.so"))
    if not natives:
        sys.exit("no built native module in curate/ (build the working tree first)")
    for so in natives:
        shutil.copy2(so, pkg / so.name)
    shutil.rmtree(src)
    done.write_text(sha + "\n")
    return root


if __name__ == "__main__":
    print(make_baseline(sys.argv[1] if len(sys.argv) > 1 else "HEAD"))
