"""System programs some tests drive for real (Debian's chromium, PostgreSQL, espeak-ng).

Where one is missing the test skips, saying which program and which Debian package provides it;
under CI (``CI=1``/``CI=true`` or ``CURATE_REQUIRE_SYSTEM_DEPS=1``, set by ``.ci/run``) it fails
instead, so CI cannot pass by silently skipping the tests that need them."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


def system_deps_required() -> bool:
    return (os.environ.get("CI", "").lower() in ("1", "true")
            or os.environ.get("CURATE_REQUIRE_SYSTEM_DEPS", "") == "1")


def missing_system_dep(what: str, package: str) -> None:
    """Skip (or, under CI, fail) the calling test: ``what`` is missing."""
    import pytest

    msg = f"needs {what} (Debian package `{package}`: apt-get install {package}; .ci/run installs it)"
    if system_deps_required():
        pytest.fail(msg + "; CURATE_REQUIRE_SYSTEM_DEPS=1/CI=1, so this fails instead of skipping")
    pytest.skip(msg)


def need_program(name: str, package: str) -> str:
    """The absolute path of the program ``name`` on PATH, or skip/fail as above."""
    path = shutil.which(name)
    if path is None:
        missing_system_dep(f"the program `{name}` on PATH", package)
        raise AssertionError("unreachable")  # pytest.skip/fail raise
    return path


def need_chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        missing_system_dep(f"Debian's chromium at {CHROMIUM}", "chromium")
    return CHROMIUM


def need_postgres_bindir() -> Path:
    """The bin folder of the newest Debian PostgreSQL (``/usr/lib/postgresql/N/bin``), which
    holds ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if not found:
        missing_system_dep("PostgreSQL's initdb and pg_ctl under /usr/lib/postgresql/*/bin", "postgresql")
    return Path(found[-1]).parent
