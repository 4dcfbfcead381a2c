"""Real parts for the annotation app's tests: the app itself served by `curate annotate serve` in
its own process on a random loopback port (its data, images and annotators made with the real
admin commands), speech clips (LJ Speech from tests/data/evaldata, espeak-ng for plumbing only: its
voice is hard for Whisper), and Debian's chromium driven by Playwright with a fake microphone
that plays a wav file (never `playwright install`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import EVALDATA, curate_exe, need_data
from sysdeps import need_chromium, need_program

if TYPE_CHECKING:
    from playwright.sync_api import Browser

LJSPEECH = EVALDATA / "speech" / "ljspeech"
APP_START_TIMEOUT_S = 60


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- clips -------------------------------------------------------------------------------------

def lj_clips() -> list[tuple[Path, str]]:
    """The LJ Speech clips beside the repository with their reference transcripts, sorted by id."""
    need_data(LJSPEECH / "transcripts.tsv", "LJ Speech clips")
    texts = {}
    for line in (LJSPEECH / "transcripts.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip():
            clip_id, text = line.split("\t", 1)
            texts[clip_id] = text
    return [(LJSPEECH / f"{cid}.wav", texts[cid]) for cid in sorted(texts)]


def cut_wav(src: Path, dst: Path, fraction: float) -> Path:
    """The first ``fraction`` of a wav file's frames as a new wav (a different, still real clip)."""
    with wave.open(str(src), "rb") as r:
        params = r.getparams()
        frames = r.readframes(int(r.getnframes() * fraction))
    with wave.open(str(dst), "wb") as w:
        w.setparams(params)
        w.writeframes(frames)
    return dst


def distinct_lj_clips(folder: Path, n: int) -> list[Path]:
    """``n`` distinct real speech clips: the LJ Speech clips, then cut copies of them (first 90%,
    80%, ... of each), so every file has its own SHA-256."""
    clips = [p for p, _ in lj_clips()]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        src = clips[i % len(clips)]
        rnd = i // len(clips)
        out.append(src if rnd == 0 else cut_wav(src, folder / f"{src.stem}-cut{rnd}.wav", 1 - 0.1 * rnd))
    assert len({sha256_file(p) for p in out}) == n
    return out


def espeak_clip(path: Path, text: str) -> Path:
    """A wav of ``text`` spoken by espeak-ng (plumbing only: Whisper finds its voice hard)."""
    exe = need_program("espeak-ng", "espeak-ng")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([exe, "-v", "en-us", "-w", str(path), text], check=True, capture_output=True, timeout=60)
    return path


def make_images(folder: Path, n: int = 3) -> list[Path]:
    """``n`` small distinct PNG images."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = Image.new("RGB", (160, 120), ((60 * i) % 256, 120, 200 - 40 * i))
        ImageDraw.Draw(img).rectangle((20 + 10 * i, 20, 80 + 10 * i, 90), fill=(250, 250, 250))
        p = folder / f"image_{i}.png"
        img.save(p)
        out.append(p)
    return out


# ---- the app -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AnnotationApp:
    """A running `curate annotate serve`: its address and the settings the admin commands take."""

    base_url: str
    db_url: str
    store: str
    folder: Path
    log: Path
    #: take the server down / bring it back on the same address and data (set by annotation_app)
    start: Callable[[], None] = lambda: None
    stop: Callable[[], None] = lambda: None

    @property
    def env(self) -> dict[str, str]:
        """The environment that points the admin commands at this app's data (settings.py)."""
        return {"CURATE_ANNOTATION_DATA": str(self.folder), "CURATE_ANNOTATION_DB": self.db_url,
                "CURATE_ANNOTATION_STORE": self.store}

    def admin(self, *args: str) -> str:
        """Run `curate annotate ARGS` on this app's data; its stdout. Fails the test on a non-zero
        exit. Runs in this process (click's runner on the `curate` command itself: the same code
        without a new interpreter and its imports, which cost seconds per call on this machine)."""
        from click.testing import CliRunner
        from curate.pipelines.cli import cli

        res = CliRunner().invoke(cli, ["annotate", *args], env=self.env, catch_exceptions=False)
        assert res.exit_code == 0, f"curate annotate {' '.join(args)} failed:\n{res.output}"
        return res.stdout

    def add_annotator(self, name: str) -> str:
        """A new annotator's token: the last line `add-annotator` prints."""
        return self.admin("add-annotator", name).strip().splitlines()[-1].strip()

    def headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"curate annotate serve exited ({proc.returncode}):\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"curate annotate serve not ready after {APP_START_TIMEOUT_S} s:\n{log.read_text(errors='replace')}")


@contextlib.contextmanager
def annotation_app(folder: Path, db_url: str | None = None, images: int = 3,
                   extra_serve_args: tuple[str, ...] = ()) -> Iterator[AnnotationApp]:
    """The app on 127.0.0.1 (a random port) with its store under ``folder``, metadata in SQLite
    there (or at ``db_url``), ``images`` generated images imported with `import-images`. The
    yielded app's ``stop()`` and ``start()`` take the server down and bring it back on the same
    address with the same data (an outage)."""
    folder.mkdir(parents=True, exist_ok=True)
    db = db_url or f"sqlite:///{folder / 'annotations.db'}"
    store = str(folder / "store")
    port = free_port()
    app = AnnotationApp(f"http://127.0.0.1:{port}", db, store, folder, folder / "serve.log")
    if images:
        app.admin("import-images", str(make_images(folder / "images", images)[0].parent))
    env = {**os.environ, "CURATE_TEST": "1", "CURATE_ANNOTATION_DATA": str(folder)}
    command = [*curate_exe(), "annotate", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", db, "--store", store, *extra_serve_args]
    running: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        with open(app.log, "ab") as log:
            running.append(subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT))
        _wait_ready(app.base_url, running[-1], app.log)

    def stop() -> None:
        while running:
            proc = running.pop()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    app.start, app.stop = start, stop
    try:
        start()
        yield app
    finally:
        stop()


# ---- the browser -------------------------------------------------------------------------------

def chromium_args(fake_audio: Path | None) -> list[str]:
    args = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # chromium's sandbox refuses to start as root
    return args


@contextlib.contextmanager
def chromium(fake_audio: Path | None = None) -> Iterator[Browser]:
    """Debian's chromium (headless) through Playwright; its microphone plays ``fake_audio`` (a wav,
    looped). Yields a playwright ``Browser``."""
    exe = need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=chromium_args(fake_audio))
        try:
            yield browser
        finally:
            browser.close()
