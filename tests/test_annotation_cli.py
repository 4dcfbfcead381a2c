"""`curate annotate` admin commands run as a user runs them (subprocesses), and the export of
submitted clips to the clips Delta dataset read back with polars."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

import polars as pl
from curate.annotation.app import create_app
from curate.annotation.db import Database
from curate.annotation.settings import Settings
from curate.annotation.store import BlobStore
from fastapi.testclient import TestClient
from helpers import EVALDATA, need_data, run_cli

LJ = EVALDATA / "speech" / "ljspeech"
SAMPLES = Path(__file__).resolve().parents[1] / "annotation" / "sample_images"
CONTRACT = {
    "id": pl.String, "audio_uri": pl.String, "audio_sha256": pl.String, "audio_format": pl.String,
    "duration_s": pl.Float64, "image_id": pl.String, "image_uri": pl.String, "image_sha256": pl.String,
    "annotator_id": pl.String, "submitted_at": pl.Datetime("us", "UTC"),
}


def lj_wavs(n: int) -> list[Path]:
    need_data(LJ / "transcripts.tsv", "LJ Speech clips")
    return sorted(LJ.glob("*.wav"))[:n]


class Data:
    """A data folder as the commands use it (the CURATE_ANNOTATION_* variables point at it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db_url = f"sqlite:///{root / 'annotation.db'}"
        self.store = str(root / "blobs")
        self.dataset = str(root / "clips")
        self.env = {"CURATE_ANNOTATION_DATA": str(root), "CURATE_ANNOTATION_DB": self.db_url,
                    "CURATE_ANNOTATION_STORE": self.store}

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = run_cli("annotate", *args, cwd=self.root, env=self.env, timeout=120)
        if ok:
            assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
        return proc

    def client(self) -> TestClient:
        return TestClient(create_app(Settings(db_url=self.db_url, store_url=self.store, dataset=self.dataset,
                                              spool_dir=str(self.root / "spool"), rate_limit="0")))

    def upload_all(self, token: str, wavs: list[Path]) -> list[dict]:
        out = []
        with self.client() as c:
            h = {"Authorization": f"Bearer {token}"}
            for wav in wavs:
                img = c.get("/api/next", headers=h).json()
                r = c.post("/api/clips", headers=h, data={"image_id": img["id"]}, files={"file": (wav.name, wav.read_bytes())})
                assert r.status_code == 201, r.text
                out.append(r.json())
        return out


@pytest.fixture
def data(tmp_path) -> Data:
    return Data(tmp_path)


def test_sample_images_are_small_and_reproducible(tmp_path) -> None:
    shipped = sorted(SAMPLES.glob("*.png"))
    assert 5 <= len(shipped) <= 8 and all(p.stat().st_size < 60_000 for p in shipped)
    subprocess.run([sys.executable, "-m", "curate.annotation.make_sample_images", str(tmp_path)], check=True,
                   capture_output=True)
    made = sorted(tmp_path.glob("*.png"))
    assert [p.name for p in made] == [p.name for p in shipped]
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in made] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in shipped]


def test_import_images_is_idempotent_and_add_annotator_prints_the_token_last(data) -> None:
    first = data.cli("import-images", "--samples")
    n = len(list(SAMPLES.glob("*.png")))
    assert f"imported {n} new image(s) into set 'default' (0 already there" in first.stdout
    again = data.cli("import-images", str(SAMPLES))
    assert f"imported 0 new image(s) into set 'default' ({n} already there" in again.stdout
    data.cli("import-images", str(SAMPLES), "--set", "b")
    proc = data.cli("add-annotator", "alice")
    token = proc.stdout.strip().splitlines()[-1]
    assert token.startswith("cur_") and " " not in token and len(token) > 40
    db = Database(data.db_url)
    ann = db.annotator_by_token(token)
    assert ann is not None and ann.name == "alice" and db.progress(ann) == (0, n)
    blobs = [p for p in (data.root / "blobs").rglob("*") if p.is_file()]
    assert sorted(p.name for p in blobs) == sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in SAMPLES.glob("*.png"))
    dup = data.cli("add-annotator", "alice", ok=False)
    assert dup.returncode == 2 and "already exists" in dup.stderr
    bad = data.cli("import-images", ok=False)
    assert bad.returncode == 2 and "FOLDER" in bad.stderr


def test_every_command_explains_itself(data) -> None:
    for cmd in ("serve", "import-images", "add-annotator", "progress", "export"):
        proc = data.cli(cmd, "--help")
        assert "--db" in proc.stdout and "--store" in proc.stdout, cmd
    assert "--export-every" in data.cli("serve", "--help").stdout


def test_export_appends_only_new_clips(data) -> None:
    wavs = lj_wavs(3)
    data.cli("import-images", "--samples")
    token = data.cli("add-annotator", "alice").stdout.strip().splitlines()[-1]
    acked = data.upload_all(token, wavs[:2])
    out = data.cli("export")
    assert f"appended 2 clip(s) to {data.dataset} as version 0" in out.stdout
    df = pl.read_delta(data.dataset)
    assert dict(df.schema) == CONTRACT
    assert sorted(df["id"]) == sorted(c["id"] for c in acked)
    row = df.filter(pl.col("id") == acked[0]["id"]).row(0, named=True)
    assert Path(row["audio_uri"]).read_bytes() == wavs[0].read_bytes()
    assert row["audio_sha256"] == hashlib.sha256(wavs[0].read_bytes()).hexdigest() and row["audio_format"] == "wav"
    assert Path(row["image_uri"]).is_file() and hashlib.sha256(Path(row["image_uri"]).read_bytes()).hexdigest() == row["image_sha256"]
    assert row["annotator_id"].startswith("ann_") and row["submitted_at"].tzinfo is not None
    assert abs(row["duration_s"] - acked[0]["duration_s"]) < 1e-3
    assert "nothing new to export" in data.cli("export").stdout
    more = data.upload_all(token, wavs[2:3])
    assert f"appended 1 clip(s) to {data.dataset} as version 1" in data.cli("export").stdout
    v1 = pl.read_delta(data.dataset)
    assert v1.height == 3 and v1["id"].n_unique() == 3
    assert pl.read_delta(data.dataset, version=0).height == 2  # version 0 untouched: append-only
    assert set(v1["id"]) - set(df["id"]) == {more[0]["id"]}
    prog = data.cli("progress", "--json").stdout
    assert '"clips": 3' in prog and '"exported": 3' in prog


def test_an_export_killed_after_its_commit_does_not_duplicate(data) -> None:
    wavs = lj_wavs(2)
    data.cli("import-images", "--samples")
    token = data.cli("add-annotator", "alice").stdout.strip().splitlines()[-1]
    acked = data.upload_all(token, wavs)
    # the process dies right after the Delta commit, before the database records it
    script = ("import os, sys; import curate.annotation.export as e; e._finish = lambda *a: os._exit(9); "
              "from curate.annotation.cli import annotate; annotate(['export'])")
    proc = subprocess.run([sys.executable, "-c", script], cwd=data.root, env={**os.environ, **data.env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert pl.read_delta(data.dataset).height == 2  # committed ...
    assert '"exported": 0' in data.cli("progress", "--json").stdout  # ... but not recorded
    out = data.cli("export")
    assert "these 2 clip(s) were already in" in out.stdout and "as version 0 (appended by an export that stopped before recording it" in out.stdout
    df = pl.read_delta(data.dataset)
    assert df.height == 2 and sorted(df["id"]) == sorted(c["id"] for c in acked)
    from deltalake import DeltaTable

    assert DeltaTable(data.dataset).version() == 0  # no second commit
    assert "nothing new to export" in data.cli("export").stdout
    assert '"exported": 2' in data.cli("progress", "--json").stdout


def test_serve_refuses_bad_settings(data) -> None:
    proc = data.cli("serve", "--min-seconds", "5", "--max-seconds", "2", ok=False)
    assert proc.returncode == 2 and "min_seconds" in proc.stderr
    proc = data.cli("serve", "--rate-limit", "lots", ok=False)
    assert proc.returncode == 2 and "rate limit 'lots'" in proc.stderr
    proc = data.cli("serve", "--db", "nosuchdriver://x", ok=False)
    assert proc.returncode == 2 and "cannot open the database" in proc.stderr


def test_the_server_exports_on_a_timer_when_asked(data) -> None:
    wavs = lj_wavs(1)
    data.cli("import-images", "--samples")
    token = data.cli("add-annotator", "alice").stdout.strip().splitlines()[-1]
    s = Settings(db_url=data.db_url, store_url=data.store, dataset=data.dataset, spool_dir=str(data.root / "spool"),
                 rate_limit="0", export_every=0.5)
    import time

    with TestClient(create_app(s)) as c:
        h = {"Authorization": f"Bearer {token}"}
        img = c.get("/api/next", headers=h).json()
        r = c.post("/api/clips", headers=h, data={"image_id": img["id"]}, files={"file": ("a.wav", wavs[0].read_bytes())})
        assert r.status_code == 201
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (data.root / "clips" / "_delta_log").is_dir():
            time.sleep(0.2)
    df = pl.read_delta(data.dataset)
    assert df["id"].to_list() == [r.json()["id"]]


def test_concurrent_exports_append_each_clip_once(data) -> None:
    import threading

    from curate.annotation.export import export_clips

    wavs = lj_wavs(4)
    data.cli("import-images", "--samples")
    token = data.cli("add-annotator", "alice").stdout.strip().splitlines()[-1]
    acked = data.upload_all(token, wavs)
    results, errors = [], []

    def run() -> None:
        try:
            results.append(export_clips(Database(data.db_url), BlobStore(data.store), data.dataset))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    df = pl.read_delta(data.dataset)
    assert sorted(df["id"]) == sorted(c["id"] for c in acked)  # each clip exactly once
    assert sum(r.rows for r in results if not r.resumed) == len(acked)
    assert [r.describe().startswith("appended ") for r in results].count(True) == 1  # one says it appended them
    for r in results:
        if r.resumed:  # the others say who did, never "appended"
            assert r.committed_by in ("concurrent", "earlier"), r
            assert ("appended nothing" in r.describe()) or ("nothing appended again" in r.describe()), r.describe()
    from deltalake import DeltaTable

    assert DeltaTable(data.dataset).version() == 0  # one batch, one commit
    parquet = [p for p in (data.root / "clips").glob("*.parquet")]
    assert len(parquet) == 1  # the losers' shards were removed
