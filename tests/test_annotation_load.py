"""A bounded load test of the annotation app on loopback: 50 concurrent uploads of distinct real
speech clips (LJ Speech and cut copies) by 5 annotators, with the metadata in SQLite and in a real
Postgres; no 5xx, and every acknowledged clip (201) is in the store and the database with the
SHA-256 of the bytes that were sent."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from annotation_fixtures import AnnotationApp, annotation_app, distinct_lj_clips, sha256_file
from curate.annotation.db import Database
from curate.annotation.store import BlobStore
from pg import db_url, pg  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow

UPLOADS = 50
ANNOTATORS = 5  # 10 uploads each: under the default per-token rate limit (30/min)


async def upload_all(app: AnnotationApp, jobs: list[tuple[str, str, Path]]) -> list[tuple[int, dict, float]]:
    """POST every (token, image_id, clip) at once; (status, JSON body, seconds) per job."""
    import httpx

    async with httpx.AsyncClient(base_url=app.base_url, timeout=120) as client:
        async def one(token: str, image_id: str, clip: Path) -> tuple[int, dict, float]:
            t0 = time.perf_counter()
            r = await client.post("/api/clips", headers=app.headers(token), data={"image_id": image_id},
                                  files={"file": (clip.name, clip.read_bytes(), "audio/wav")})
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {"text": r.text}
            return r.status_code, body, time.perf_counter() - t0

        return await asyncio.gather(*(one(*job) for job in jobs))


def test_50_concurrent_uploads_are_all_durable(db_url: str, tmp_path: Path) -> None:
    import httpx

    clips = distinct_lj_clips(tmp_path / "clips", UPLOADS)
    with annotation_app(tmp_path / "app", db_url=db_url) as app:
        tokens = [app.add_annotator(f"loader{i}") for i in range(ANNOTATORS)]
        image_of = {}
        for tok in tokens:
            r = httpx.get(app.base_url + "/api/next", headers=app.headers(tok), timeout=30)
            assert r.status_code == 200, r.text
            image_of[tok] = r.json()["id"]
        jobs = [(tokens[i % ANNOTATORS], image_of[tokens[i % ANNOTATORS]], clip) for i, clip in enumerate(clips)]
        t0 = time.perf_counter()
        results = asyncio.run(upload_all(app, jobs))
        wall = time.perf_counter() - t0
        statuses = [status for status, _, _ in results]
        assert not [s for s in statuses if s >= 500], f"5xx answers: {results}\n{app.log.read_text()[-4000:]}"
        acknowledged = [(job, body) for job, (status, body, _) in zip(jobs, results) if status == 201]
        # all 50 should be accepted on loopback; the durability check below covers whatever was
        assert len(acknowledged) == UPLOADS, [(s, b) for s, b, _ in results if s != 201]
        # the API agrees, per annotator (each sees their own)
        for tok in tokens:
            r = httpx.get(app.base_url + "/api/clips", headers=app.headers(tok), timeout=30)
            assert r.status_code == 200
            listed = clip_list(r.json())
            assert len(listed) == UPLOADS // ANNOTATORS
        store = BlobStore(app.store)
        db = Database(app.db_url)
        in_db = {c.id: c for c in db.all_clips()}
        for (tok, image_id, clip), body in acknowledged:
            sha = sha256_file(clip)
            assert body["sha256"] == sha
            assert store.exists(sha) and sha256_file(Path(store.uri(sha))) == sha
            row = in_db[body["id"]]
            assert row.audio_sha256 == sha and row.image_id == image_id
            r = httpx.get(f"{app.base_url}/api/clips/{body['id']}", headers=app.headers(tok), timeout=30)
            assert r.status_code == 200 and r.json()["sha256"] == sha
        assert len(in_db) == UPLOADS
        db.dispose()
    latencies = sorted(t for _, _, t in results)
    print(f"{UPLOADS} concurrent uploads in {wall:.2f} s; latency p50 {latencies[len(latencies) // 2]:.2f} s, "
          f"max {latencies[-1]:.2f} s")


def clip_list(body: object) -> list[dict]:
    """GET /api/clips's list of clips (a bare list, or under "clips")."""
    if isinstance(body, dict):
        body = body["clips"]
    assert isinstance(body, list)
    return body
