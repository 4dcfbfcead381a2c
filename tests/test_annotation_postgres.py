"""The annotation app's metadata on a real PostgreSQL (Debian's, started by the test under /tmp on
a loopback port as the `postgres` user) as well as on SQLite: the same assertions on both."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from curate.annotation.db import Database
from pg import PgCluster, db_url, pg  # noqa: F401 - fixtures


def test_the_cluster_is_a_private_loopback_server_run_by_postgres(pg: PgCluster) -> None:
    import os
    import pwd

    import psycopg

    def show(conn: psycopg.Connection, setting: str) -> str:
        row = conn.execute(f"SHOW {setting}").fetchone()
        assert row is not None
        return str(row[0])

    with psycopg.connect(pg.dsn) as conn:
        data_dir, listen, port = show(conn, "data_directory"), show(conn, "listen_addresses"), int(show(conn, "port"))
    assert Path(data_dir).is_relative_to(pg.folder) and str(pg.folder).startswith("/tmp/")
    assert listen == "127.0.0.1" and port == pg.port
    if os.geteuid() == 0:
        assert pwd.getpwuid(os.stat(data_dir).st_uid).pw_name == "postgres"


def test_concurrent_identical_uploads_record_one_clip(db_url: str) -> None:
    """Eight threads record the same upload at once (a client retrying while its first request is
    still in flight): exactly one clip is created, every caller gets its id back, on both kinds of
    database (on Postgres the losers go through the unique constraint's IntegrityError)."""
    db = Database(db_url)
    db.create_all()
    sha = hashlib.sha256(b"image").hexdigest()
    img, _ = db.add_image(sha, format="png", width=4, height=4, size_bytes=5, source_name="i.png", set_name="s")
    ann, _token = db.add_annotator("alice", "s")
    barrier = threading.Barrier(8)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            barrier.wait()
            clip, created = db.add_clip(annotator_id=ann.id, image_id=img.id, audio_sha256="c" * 64, audio_format="wav",
                                        codec="pcm_s16le", duration_s=2.0, size_bytes=1000)
            results.append((clip.id, created))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(results) == 8 and len({cid for cid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert [c.id for c in db.clips_of(ann.id)] == [results[0][0]]
    assert db.progress(ann) == (1, 1) and db.next_image(ann) is None
    db.dispose()


def test_the_app_on_each_database(db_url: str, tmp_path: Path) -> None:
    """Through `curate annotate serve` on this database: upload, list, an idempotent re-upload,
    another annotator's clip is 404, then `curate annotate export` writes the clips dataset."""
    import httpx
    import polars as pl
    from annotation_fixtures import annotation_app, espeak_clip, sha256_file

    one = espeak_clip(tmp_path / "one.wav", "A red bicycle leans against a white wall.")
    two = espeak_clip(tmp_path / "two.wav", "Three boats float on a calm blue lake.")
    with annotation_app(tmp_path / "app", db_url=db_url, images=2) as app:
        alice, bob = app.add_annotator("alice"), app.add_annotator("bob")
        c = httpx.Client(base_url=app.base_url, timeout=60)
        image = c.get("/api/next", headers=app.headers(alice)).json()["id"]
        first = c.post("/api/clips", headers=app.headers(alice), data={"image_id": image},
                       files={"file": ("one.wav", one.read_bytes(), "audio/wav")})
        assert first.status_code == 201, first.text
        clip = first.json()
        assert clip["sha256"] == sha256_file(one) and clip["id"].startswith("clip_")
        again = c.post("/api/clips", headers=app.headers(alice), data={"image_id": image},
                       files={"file": ("renamed.wav", one.read_bytes(), "audio/wav")})
        assert again.status_code == 200 and again.json()["id"] == clip["id"], again.text
        listed = c.get("/api/clips", headers=app.headers(alice)).json()
        listed = listed["clips"] if isinstance(listed, dict) else listed
        assert [x["id"] for x in listed] == [clip["id"]]
        assert c.get(f"/api/clips/{clip['id']}", headers=app.headers(alice)).json()["sha256"] == clip["sha256"]
        assert c.get(f"/api/clips/{clip['id']}", headers=app.headers(bob)).status_code == 404
        bob_image = c.get("/api/next", headers=app.headers(bob)).json()["id"]
        r = c.post("/api/clips", headers=app.headers(bob), data={"image_id": bob_image},
                   files={"file": ("two.wav", two.read_bytes(), "audio/wav")})
        assert r.status_code == 201, r.text
        bob_clip = r.json()
        app.admin("export")
        app.admin("export")  # nothing new: no second copy of a row
        c.close()
    clips = pl.read_delta(str(tmp_path / "app" / "clips"))
    assert sorted(clips["id"]) == sorted([clip["id"], bob_clip["id"]])
    for row in clips.iter_rows(named=True):
        assert sha256_file(Path(row["audio_uri"])) == row["audio_sha256"]
        assert row["audio_format"] == "wav" and 1.0 < row["duration_s"] < 10.0
    assert set(clips["audio_sha256"]) == {sha256_file(one), sha256_file(two)}
    assert clips.schema["submitted_at"] == pl.Datetime("us", "UTC")
