"""Helpers shared by the tests (importable as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: real evaluation data (LJ Speech clips, SPDX licence texts), kept in the repository
EVALDATA = ROOT / "tests" / "data" / "evaldata"


def curate_exe() -> list[str]:
    exe = shutil.which("curate", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "curate"]


def run_cli(*args: str, cwd: Path | str | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", "CURATE_TEST": "1", **(env or {})}
    return subprocess.run(
        [*curate_exe(), *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def need_data(path: Path, what: str) -> None:
    """Fail (never skip) when evaluation data that is part of the repository is missing."""
    import pytest

    if not path.exists():
        pytest.fail(f"{what}: {path} is missing (tests/data/evaldata is part of the repository)")


def write_jsonl(path: Path, rows: list[dict[str, object] | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def write_pipeline(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path




@contextlib.contextmanager
def local_ray_cluster(cpus_per_node: tuple[int, ...] = (1, 1)) -> Iterator[str]:
    """A Ray cluster of several nodes on loopback (`ray start --head` + `ray start --address`);
    yields its address. Ray's token authentication is on, as on a real cluster: runs against it
    need RAY_AUTH_MODE=token. Stops only its own processes (`ray stop` would stop every Ray on the
    machine): those whose command line names its private temp dir or its GCS address."""
    import psutil

    ray_exe = str(Path(sys.executable).parent / "ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    env.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="cr", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    try:
        head, *others = cpus_per_node
        subprocess.run([ray_exe, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", f"--num-cpus={head}",
                        "--include-dashboard=false", f"--temp-dir={temp}", "--disable-usage-stats"],
                       check=True, capture_output=True, env=env, timeout=180)
        for cpus in others:
            subprocess.run([ray_exe, "start", f"--address={address}", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}",
                            "--disable-usage-stats"], check=True, capture_output=True, env=env, timeout=180)
        yield address
    finally:
        import re

        me = os.getpid()
        # other nodes name the head by the machine's address, whatever --node-ip-address says
        joined = re.compile(rf"gcs[-_]address=\S*:{port}\b|address=\S*:{port}\b")
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
                if proc.info["pid"] != me and (temp in cmd or joined.search(cmd)):
                    proc.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        shutil.rmtree(temp, ignore_errors=True)
