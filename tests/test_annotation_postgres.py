"""The annotation app's metadata on a real PostgreSQL (Debian's, started by the test under /tmp on
a loopback port as the `postgres` user) as well as on SQLite: the same assertions on both."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import PgCluster, postgres_cluster

from curate.annotation.db import Database


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'annotations.db'}"
    cluster: PgCluster = request.getfixturevalue("pg")
    return cluster.new_database("t_" + uuid.uuid4().hex[:12])


def test_the_cluster_is_a_private_loopback_server_run_by_postgres(pg: PgCluster) -> None:
    import os
    import pwd

    import psycopg

    with psycopg.connect(pg.dsn) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        listen = conn.execute("SHOW listen_addresses").fetchone()[0]
        port = int(conn.execute("SHOW port").fetchone()[0])
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
