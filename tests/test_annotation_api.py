"""The annotation app's HTTP API over the real app (FastAPI's TestClient: the real ASGI app, real
SQLite, real blob store on disk) with real speech: LJ Speech clips, converted with PyAV in the
test to every accepted format."""

from __future__ import annotations

import hashlib
import os
import wave
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
av = pytest.importorskip("av")

from curate.annotation.app import create_app
from curate.annotation.db import Database
from curate.annotation.images import import_images
from curate.annotation.settings import Settings
from curate.annotation.store import BlobStore
from fastapi.testclient import TestClient
from helpers import EVALDATA, need_data
from PIL import Image

LJ = EVALDATA / "speech" / "ljspeech"
# (container format for PyAV, codec, extension, sample rate or None to keep the source's)
FORMATS = {
    "wav": ("wav", "pcm_s16le", None),
    "mp3": ("mp3", "libmp3lame", None),
    "ogg": ("ogg", "libopus", 48000),
    "webm": ("webm", "libopus", 48000),
    "m4a": ("ipod", "aac", None),
    "flac": ("flac", "flac", None),
}


def lj(name: str = "LJ001-0002") -> Path:
    need_data(LJ / f"{name}.wav", "LJ Speech clips")
    return LJ / f"{name}.wav"


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def convert(src: Path, dst: Path, ext: str, seconds: float | None = None) -> Path:
    """``src`` re-encoded by PyAV as ``ext`` (optionally only its first ``seconds``)."""
    fmt, codec, rate = FORMATS[ext]
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        ist = inp.streams.audio[0]
        rate = rate or ist.rate
        ost = out.add_stream(codec, rate=rate, layout="mono")
        sample_fmt = ost.codec_context.format.name
        res = av.AudioResampler(format=sample_fmt, layout="mono", rate=rate)
        frame_size = ost.codec_context.frame_size or 1024
        fifo = av.AudioFifo()
        taken = 0.0
        for frame in inp.decode(ist):
            if seconds is not None and taken >= seconds:
                break
            taken += frame.samples / frame.sample_rate
            for f in res.resample(frame):
                fifo.write(f)
        for f in res.resample(None):
            fifo.write(f)
        while fifo.samples:
            f = fifo.read(min(frame_size, fifo.samples), partial=True) if codec != "pcm_s16le" else fifo.read(fifo.samples)
            f.pts = None
            for p in ost.encode(f):
                out.mux(p)
        for p in ost.encode(None):
            out.mux(p)
    return dst


def make_images(folder: Path, n: int, green: int = 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (32, 24), (40 * i, green, 200)).save(folder / f"img{i}.png")
    return folder


class Env:
    def __init__(self, tmp: Path, **overrides) -> None:
        self.tmp = tmp
        kw = {"rate_limit": "0", "max_seconds": 30.0, "store_url": str(tmp / "blobs"), **overrides}
        self.settings = Settings(db_url=f"sqlite:///{tmp / 'a.db'}", dataset=str(tmp / "clips"),
                                 spool_dir=str(tmp / "spool"), **kw)
        self.db = Database(self.settings.db_url)
        self.db.create_all()
        self.store = BlobStore(self.settings.store_url)  # the same store the app opens
        import_images(self.db, self.store, str(make_images(tmp / "images", 3)), "s1")
        import_images(self.db, self.store, str(make_images(tmp / "other", 2, green=50)), "s2")  # other images
        self.tokens = {name: self.db.add_annotator(name, "s1")[1] for name in ("alice", "bob")}
        self.tokens["carol"] = self.db.add_annotator("carol", "s2")[1]
        self.client = TestClient(create_app(self.settings))

    def h(self, who: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def next(self, who: str = "alice") -> dict:
        r = self.client.get("/api/next", headers=self.h(who))
        assert r.status_code == 200, r.text
        return r.json()

    def upload(self, path: Path | None, who: str = "alice", image_id: str | None = None, name: str | None = None,
               data: bytes | None = None):
        image_id = image_id or self.next(who)["id"]
        payload = data if data is not None else path.read_bytes()
        return self.client.post("/api/clips", headers=self.h(who), data={"image_id": image_id},
                                files={"file": (name or (path.name if path else "x.wav"), payload, "application/octet-stream")})

    def clip_count(self) -> int:
        return sum(len(self.db.clips_of(a.id)) for a in self.db.annotators())

    def files_under(self, *parts: str) -> list[str]:
        root = self.tmp.joinpath(*parts)
        return sorted(str(Path(d, f).relative_to(root)) for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    with e.client:
        yield e


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    src = lj("LJ001-0002")  # 1.9 s
    out = tmp_path_factory.mktemp("clips")
    return {ext: convert(src, out / f"clip.{ext}", ext) if ext != "wav" else src for ext in FORMATS}


@pytest.mark.parametrize("ext", list(FORMATS))
def test_upload_each_format(env, clips, ext) -> None:
    path = clips[ext]
    img = env.next()
    assert img["done"] is False and img["progress"] == {"done": 0, "total": 3} and len(img["questions"]) == 7
    r = env.upload(path, image_id=img["id"])
    assert r.status_code == 201, r.text
    body = r.json()
    data = path.read_bytes()
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["format"] == ext and body["image_id"] == img["id"]
    assert abs(body["duration_s"] - wav_seconds(clips["wav"])) < 0.1, body  # decoded, not read from a header
    assert body["id"].startswith("clip_") and body["size_bytes"] == len(data)
    assert Path(body["audio_uri"]).read_bytes() == data  # the durable blob, named by its hash
    assert Path(body["audio_uri"]).name == body["sha256"]
    got = env.client.get(f"/api/clips/{body['id']}", headers=env.h())
    assert got.status_code == 200 and got.json() == body
    assert [c["id"] for c in env.client.get("/api/clips", headers=env.h()).json()["clips"]] == [body["id"]]
    assert env.client.get("/api/progress", headers=env.h()).json()["done"] == 1
    nxt = env.next()
    assert nxt["id"] != img["id"] and nxt["progress"] == {"done": 1, "total": 3}
    assert env.files_under("spool") == []  # the received upload was removed


def test_all_done_then_next_says_so(env, clips) -> None:
    for ext in ("wav", "mp3", "flac"):
        assert env.upload(clips[ext]).status_code == 201
    body = env.next()
    assert body["done"] is True and "all images" in body["detail"] and body["progress"] == {"done": 3, "total": 3}


def test_same_bytes_again_is_idempotent(env, clips) -> None:
    img = env.next()["id"]
    first = env.upload(clips["ogg"], image_id=img)
    again = env.upload(clips["ogg"], image_id=img, name="other-name.ogg")
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and env.clip_count() == 1
    other = env.upload(clips["ogg"], who="bob", image_id=img)  # another annotator: their own clip
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


def test_openapi_lists_the_api(env) -> None:
    spec = env.client.get("/openapi.json").json()
    for path in ("/api/next", "/api/clips", "/api/clips/{clip_id}", "/api/progress", "/images/{sha256}"):
        assert path in spec["paths"], path
    assert not any(p.startswith("/admin") for p in spec["paths"])


@pytest.mark.parametrize("method,path", [("get", "/api/next"), ("get", "/api/clips"), ("get", "/api/clips/clip_x"),
                                         ("get", "/api/progress"), ("post", "/api/clips")])
def test_every_endpoint_needs_a_valid_token(env, method, path) -> None:
    for headers in ({}, {"Authorization": "Bearer cur_wrong"}, {"Authorization": f"Basic {env.tokens['alice']}"},
                    {"Authorization": "Bearer "}):
        r = getattr(env.client, method)(path, headers=headers)
        assert r.status_code == 401, (headers, r.status_code, r.text)
        assert r.headers["www-authenticate"] == "Bearer" and isinstance(r.json()["detail"], str)


def test_another_annotators_clip_is_404(env, clips) -> None:
    clip_id = env.upload(clips["wav"]).json()["id"]
    r = env.client.get(f"/api/clips/{clip_id}", headers=env.h("bob"))
    assert r.status_code == 404 and clip_id in r.json()["detail"]
    assert env.client.get("/api/clips", headers=env.h("bob")).json() == {"clips": []}


def test_images_by_signed_url_or_token(env) -> None:
    img = env.next()
    sha = img["sha256"]
    r = env.client.get(img["url"])  # signed: no header needed (an <img> tag sends none)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert hashlib.sha256(r.content).hexdigest() == sha
    assert env.client.get(img["url"].replace("sig=", "sig=0")).status_code == 401
    assert env.client.get(f"/images/{sha}").status_code == 401
    assert env.client.get(f"/images/{sha}", headers=env.h("bob")).status_code == 200
    assert env.client.get(f"/images/{sha}", headers=env.h("carol")).status_code == 404  # not in carol's set
    assert env.client.get("/images/..%2F..%2Fetc%2Fpasswd", headers=env.h()).status_code == 404


def _nothing_stored(env) -> None:
    assert env.clip_count() == 0
    assert env.files_under("spool") == []
    image_blobs = {i.sha256 for i in [env.db.image_by_sha(s) for s in _blob_names(env)] if i is not None}
    assert image_blobs == set(_blob_names(env))  # only the images: no clip blob was written


def _blob_names(env) -> list[str]:
    return [Path(p).name for p in env.files_under("blobs")]


def test_bad_uploads_are_refused_with_a_reason(env, clips, tmp_path) -> None:
    cases = {
        "text named .wav": (b"hello, this is not audio at all\n" * 20, 422, "not an audio file"),
        "empty": (b"", 422, "empty"),
        "truncated wav": (clips["wav"].read_bytes()[: len(clips["wav"].read_bytes()) // 2], 422, "truncated"),
        "truncated mp3": (clips["mp3"].read_bytes()[: len(clips["mp3"].read_bytes()) // 2], 422, "truncated"),
        "truncated ogg": (clips["ogg"].read_bytes()[: len(clips["ogg"].read_bytes()) // 2], 422, "truncated"),
        "truncated flac": (clips["flac"].read_bytes()[: len(clips["flac"].read_bytes()) // 2], 422, "truncated or corrupt"),
        "a PNG named .wav": ((tmp_path / "images" / "img0.png").read_bytes(), 422, ""),
    }
    short = convert(clips["wav"], tmp_path / "short.wav", "wav", seconds=0.5)
    cases["too short"] = (short.read_bytes(), 422, "too short")
    img = env.next()["id"]
    for what, (data, status, words) in cases.items():
        r = env.upload(None, image_id=img, name="clip.wav", data=data)
        assert r.status_code == status, (what, r.status_code, r.text)
        detail = r.json()["detail"]
        assert isinstance(detail, str) and words in detail, (what, detail)
    _nothing_stored(env)


def test_form_mistakes(env, clips) -> None:
    data = clips["wav"].read_bytes()
    c, h = env.client, env.h()
    r = c.post("/api/clips", headers=h, files={"file": ("a.wav", data)})
    assert r.status_code == 422 and "image_id" in r.json()["detail"]
    r = c.post("/api/clips", headers=h, data={"image_id": env.next()["id"]})
    assert r.status_code == 422 and "file" in r.json()["detail"]
    r = c.post("/api/clips", headers=h, content=data, )
    assert r.status_code == 422 and "multipart" in r.json()["detail"]
    img3 = env.next("carol")["id"]  # an image of another set
    r = env.upload(clips["wav"], image_id=img3)
    assert r.status_code == 422 and "not in your assigned set" in r.json()["detail"]
    r = env.upload(clips["wav"], image_id="img_doesnotexist")
    assert r.status_code == 422
    _nothing_stored(env)


def test_too_long_and_oversized(tmp_path, clips) -> None:
    e = Env(tmp_path, max_upload_mb=0.05)  # 52 KB: the 1.9 s wav (84 KB) is over it, the mp3 (8 KB) is not
    e.settings.min_seconds, e.settings.max_seconds = 0.5, 1.5
    with e.client:
        r = e.upload(clips["wav"])
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        r = e.upload(clips["mp3"])
        assert r.status_code == 422 and "too long" in r.json()["detail"], r.text
        _nothing_stored(e)


def test_file_names_never_touch_the_filesystem(env, clips, tmp_path) -> None:
    data = clips["wav"].read_bytes()
    targets = ["../../etc/passwd.wav", "/etc/passwd", f"{tmp_path}/evil.wav", "..\\..\\win.wav", "a/../../../up.wav",
               f"../{tmp_path.name}-escape.wav"]
    before = set(os.listdir(tmp_path)) | set(os.listdir(tmp_path.parent))
    etc = os.stat("/etc/passwd")
    ids = set()
    img = env.next()["id"]
    for name in targets:
        r = env.upload(None, image_id=img, name=name, data=data)
        assert r.status_code in (200, 201), (name, r.text)
        ids.add(r.json()["id"])
        r = env.upload(None, image_id=img, name=name, data=b"not audio")
        assert r.status_code == 422
    assert len(ids) == 1  # the same bytes for the same image: one clip, whatever the file name
    assert set(os.listdir(tmp_path)) | set(os.listdir(tmp_path.parent)) == before
    assert not (tmp_path / "evil.wav").exists() and os.stat("/etc/passwd").st_mtime == etc.st_mtime
    sha = hashlib.sha256(data).hexdigest()
    assert f"{sha[:2]}/{sha[2:4]}/{sha}" in env.files_under("blobs") and env.files_under("spool") == []


def test_rate_limit_per_token(tmp_path, clips) -> None:
    e = Env(tmp_path, rate_limit="2/min")
    with e.client:
        img = e.next()["id"]
        assert e.upload(clips["wav"], image_id=img).status_code == 201
        assert e.upload(clips["wav"], image_id=img).status_code == 200
        r = e.upload(clips["mp3"], image_id=img)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60 and "retry" in r.json()["detail"]
        assert e.upload(clips["mp3"], who="bob").status_code == 201  # another token has its own budget
        assert e.client.get("/api/clips", headers=e.h()).status_code == 200  # reading is not limited


def test_the_page_has_the_elements_a_browser_test_uses(env) -> None:
    r = env.client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for el in ("token", "signin", "record", "stop", "playback", "submit", "file", "progress", "status", "image", "questions"):
        assert f'id="{el}"' in r.text, el
    assert "What objects are there, and how many of each?" in r.text
    js = env.client.get("/static/annotate.js")
    assert js.status_code == 200 and "MediaRecorder" in js.text and "Bearer" in js.text


def test_size_limit_holds_for_a_streamed_body_without_length(tmp_path, clips) -> None:
    """A chunked upload (no Content-Length) is stopped at the limit while it streams."""
    e = Env(tmp_path, max_upload_mb=0.05)
    with e.client:
        img = e.next()["id"]
        boundary = "curateboundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image_id\"\r\n\r\n{img}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
                "Content-Type: audio/wav\r\n\r\n").encode()
        sent = []

        def body():
            yield head
            for _ in range(400):  # 400 x 64 KB = 25 MB offered, 52 KB allowed
                sent.append(1)
                yield b"\0" * 65536
            yield f"\r\n--{boundary}--\r\n".encode()

        r = e.client.post("/api/clips", headers={**e.h(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
                          content=body())
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        _nothing_stored(e)


def test_the_app_on_an_fsspec_store(tmp_path, clips) -> None:
    """Blobs on an fsspec URL (memory://): uploads, images and the export all go through it."""
    import uuid

    import fsspec
    import polars as pl
    from curate.annotation.export import export_clips

    url = f"memory://curate-app-{uuid.uuid4().hex[:8]}"
    e = Env(tmp_path, store_url=url)
    with e.client:
        img = e.next()
        assert e.client.get(img["url"]).content == (tmp_path / "images" / "img0.png").read_bytes()
        r = e.upload(clips["webm"], image_id=img["id"])
        assert r.status_code == 201 and r.json()["audio_uri"].startswith(url + "/")
        with fsspec.open(r.json()["audio_uri"], "rb") as f:
            assert f.read() == clips["webm"].read_bytes()
    assert not [p for p in fsspec.filesystem("memory").find(url.split("://", 1)[1]) if ".curate-tmp-" in p]
    result = export_clips(e.db, BlobStore(url), str(tmp_path / "clips"))
    assert result.rows == 1 and result.version == 0
    row = pl.read_delta(str(tmp_path / "clips")).row(0, named=True)
    assert row["audio_uri"] == r.json()["audio_uri"] and row["image_uri"].startswith(url + "/")
