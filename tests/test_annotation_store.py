"""The annotation app's storage: the content-addressed blob store (local folder and an fsspec
URL) and the SQLAlchemy metadata on a real SQLite file."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading

import pytest

pytest.importorskip("sqlalchemy")

from curate.annotation.db import Database, hash_token
from curate.annotation.store import BlobStore, is_sha256, sha256_file
from curate.pipelines.fs import TMP_MARK


def _all_files(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_local_put_is_content_addressed_and_leaves_no_temp_files(tmp_path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    src = tmp_path / "a.bin"
    src.write_bytes(b"hello clip")
    sha = store.put_file(str(src))
    assert sha == hashlib.sha256(b"hello clip").hexdigest()
    assert store.uri(sha) == str(tmp_path / "blobs" / sha[:2] / sha[2:4] / sha)
    assert open(store.uri(sha), "rb").read() == b"hello clip"
    assert store.read_bytes(sha) == b"hello clip" and store.size(sha) == 10 and store.exists(sha)
    assert _all_files(str(tmp_path / "blobs")) == [f"{sha[:2]}/{sha[2:4]}/{sha}"]
    assert not any(TMP_MARK in f for f in _all_files(str(tmp_path)))


def test_storing_the_same_bytes_again_does_not_rewrite_the_blob(tmp_path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    sha = store.put_bytes(b"x" * 1000)
    path = store.uri(sha)
    os.utime(path, (1_000_000, 1_000_000))
    assert store.put_bytes(b"x" * 1000) == sha
    assert os.stat(path).st_mtime == 1_000_000  # untouched: a reader is never disturbed


def test_concurrent_puts_of_one_blob(tmp_path) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    data = os.urandom(300_000)
    out: list[str] = []
    threads = [threading.Thread(target=lambda: out.append(store.put_bytes(data))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(out)) == 1 and store.read_bytes(out[0]) == data
    assert _all_files(str(tmp_path / "blobs")) == [f"{out[0][:2]}/{out[0][2:4]}/{out[0]}"]


def test_a_failed_write_leaves_nothing_under_the_blob_name(tmp_path, monkeypatch) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    src = tmp_path / "a.bin"
    src.write_bytes(b"payload")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.put_file(str(src))
    monkeypatch.undo()
    sha = sha256_file(str(src))
    assert not store.exists(sha)
    assert not any(TMP_MARK in f for f in _all_files(str(tmp_path / "blobs")))


def test_fsspec_url_store() -> None:
    store = BlobStore("memory://curate-test-blobs")
    sha = store.put_bytes(b"in memory")
    assert store.uri(sha) == f"memory://curate-test-blobs/{sha[:2]}/{sha[2:4]}/{sha}"
    assert store.exists(sha) and store.read_bytes(sha) == b"in memory" and store.local_path(sha) is None
    import fsspec

    names = fsspec.filesystem("memory").find("/curate-test-blobs")
    assert names == [f"/curate-test-blobs/{sha[:2]}/{sha[2:4]}/{sha}"]


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "ab" * 31 + "zz", "AB" * 32, ""])
def test_blob_names_are_only_sha256_digests(tmp_path, bad) -> None:
    store = BlobStore(str(tmp_path / "blobs"))
    assert not is_sha256(bad)
    with pytest.raises(ValueError, match="SHA-256"):
        store.uri(bad)


def test_sqlite_settings_and_hashed_tokens(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.create_all()
    ann, token = db.add_annotator("alice", "s1")
    with db.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    db.dispose()
    raw = sqlite3.connect(str(tmp_path / "a.db"))
    stored = raw.execute("select token_sha256 from annotators").fetchall()
    raw.close()
    assert stored == [(hash_token(token),)] and token not in open(tmp_path / "a.db", "rb").read().decode("latin-1")
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    assert db.annotator_by_token(token).id == ann.id
    assert db.annotator_by_token(token + "x") is None
    with pytest.raises(ValueError, match="already exists"):
        db.add_annotator("alice")


def test_next_image_progress_and_idempotent_clips(tmp_path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a.db'}")
    db.create_all()
    shas = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    for i, sha in enumerate(shas):
        img, new = db.add_image(sha, format="png", width=4, height=4, size_bytes=10, source_name=f"{i}.png", set_name="s1")
        assert new
    assert not db.add_image(shas[0], format="png", width=4, height=4, size_bytes=10, source_name="0.png", set_name="s1")[1]
    db.add_image(shas[0], format="png", width=4, height=4, size_bytes=10, source_name="0.png", set_name="s2")
    alice, _ = db.add_annotator("alice", "s1")
    bob, _ = db.add_annotator("bob", "s2")
    assert db.next_image(alice).sha256 == shas[0] and db.progress(alice) == (0, 3) and db.progress(bob) == (0, 1)
    kw = dict(audio_format="wav", codec="pcm_s16le", duration_s=2.5, size_bytes=100)
    c1, created = db.add_clip(annotator_id=alice.id, image_id=db.next_image(alice).id, audio_sha256="a" * 64, **kw)
    assert created and c1.id.startswith("clip_")
    again, created = db.add_clip(annotator_id=alice.id, image_id=c1.image_id, audio_sha256="a" * 64, **kw)
    assert not created and again.id == c1.id
    assert db.next_image(alice).sha256 == shas[1] and db.progress(alice) == (1, 3)
    assert db.progress(bob) == (0, 1)  # alice's clip is not bob's progress
    assert db.clip_of(bob.id, c1.id) is None and db.clip_of(alice.id, c1.id).id == c1.id
    assert [c.id for c in db.clips_of(alice.id)] == [c1.id] and db.clips_of(bob.id) == []
