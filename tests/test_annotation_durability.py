"""The real server (`curate annotate serve`, uvicorn on loopback): killed with SIGKILL while clips
are being uploaded, after a restart every acknowledged clip is there, with its bytes; an upload
far over the size limit gets its 413 (not a broken connection) and leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from helpers import EVALDATA, curate_exe, need_data, run_cli

LJ = EVALDATA / "speech" / "ljspeech"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(root: Path, env: dict[str, str], port: int, *extra: str) -> subprocess.Popen[bytes]:
    log = open(root / f"serve-{port}.log", "wb")
    proc = subprocess.Popen([*curate_exe(), "annotate", "serve", "--port", str(port), "--rate-limit", "0",
                             "--log-level", "warning", *extra], cwd=root, env={**os.environ, **env}, stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (root / f"serve-{port}.log").read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not start")


@pytest.mark.slow
def test_sigkill_during_uploads_loses_no_acknowledged_clip(tmp_path) -> None:
    need_data(LJ / "transcripts.tsv", "LJ Speech clips")
    wavs = sorted(LJ.glob("*.wav"))
    env = {"CURATE_ANNOTATION_DATA": str(tmp_path)}
    assert run_cli("annotate", "import-images", "--samples", cwd=tmp_path, env=env).returncode == 0
    tokens = [run_cli("annotate", "add-annotator", f"a{i}", cwd=tmp_path, env=env).stdout.strip().splitlines()[-1]
              for i in range(4)]
    port = _port()
    proc = _serve(tmp_path, env, port)
    acked: list[tuple[str, str, str]] = []  # (token, clip id, sha256)
    lock = threading.Lock()
    stop = threading.Event()

    def worker(token: str, k: int) -> None:
        h = {"Authorization": f"Bearer {token}"}
        i = k
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            while not stop.is_set():
                data = wavs[i % len(wavs)].read_bytes()
                i += 4
                try:
                    img = c.get("/api/next", headers=h).json()
                    if img.get("done"):
                        return
                    r = c.post("/api/clips", headers=h, data={"image_id": img["id"]}, files={"file": ("c.wav", data)})
                except httpx.TransportError:
                    return  # the server died under this request: it was not acknowledged
                if r.status_code in (200, 201):
                    with lock:
                        acked.append((token, r.json()["id"], hashlib.sha256(data).hexdigest()))

    threads = [threading.Thread(target=worker, args=(t, k)) for k, t in enumerate(tokens)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(acked) < 6:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: other uploads are in flight
    proc.wait()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert len(acked) >= 6, "too few uploads were acknowledged before the kill"
    port2 = _port()
    proc = _serve(tmp_path, env, port2)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port2}", timeout=30) as c:
            for token, clip_id, sha in acked:
                r = c.get(f"/api/clips/{clip_id}", headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, (clip_id, r.text)
                body = r.json()
                assert body["sha256"] == sha
                assert hashlib.sha256(Path(body["audio_uri"]).read_bytes()).hexdigest() == sha
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_oversized_uploads_get_413_from_the_real_server(tmp_path) -> None:
    env = {"CURATE_ANNOTATION_DATA": str(tmp_path)}
    assert run_cli("annotate", "import-images", "--samples", cwd=tmp_path, env=env).returncode == 0
    token = run_cli("annotate", "add-annotator", "a", cwd=tmp_path, env=env).stdout.strip().splitlines()[-1]
    port = _port()
    proc = _serve(tmp_path, env, port, "--max-upload-mb", "1")
    try:
        base, h = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
        img = httpx.get(f"{base}/api/next", headers=h).json()["id"]
        data = os.urandom(30 * 1024 * 1024)
        r = httpx.post(f"{base}/api/clips", headers=h, data={"image_id": img}, files={"file": ("a.wav", data)}, timeout=60)
        assert r.status_code == 413 and "limit of 1 MB" in r.json()["detail"]

        def chunks():  # no Content-Length: stopped while it streams
            yield (f'--b\r\nContent-Disposition: form-data; name="image_id"\r\n\r\n{img}\r\n--b\r\n'
                   'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n').encode()
            for i in range(0, len(data), 65536):
                yield data[i:i + 65536]
            yield b"\r\n--b--\r\n"

        r = httpx.post(f"{base}/api/clips", headers={**h, "Content-Type": "multipart/form-data; boundary=b"},
                       content=chunks(), timeout=60)
        assert r.status_code == 413 and "limit of 1 MB" in r.json()["detail"]
        assert httpx.get(f"{base}/api/clips", headers=h).json() == {"clips": []}
        assert os.listdir(tmp_path / "spool") == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_killed_servers_half_received_upload_is_removed_when_it_starts_again(tmp_path) -> None:
    env = {"CURATE_ANNOTATION_DATA": str(tmp_path)}
    assert run_cli("annotate", "import-images", "--samples", cwd=tmp_path, env=env).returncode == 0
    token = run_cli("annotate", "add-annotator", "a", cwd=tmp_path, env=env).stdout.strip().splitlines()[-1]
    spool = tmp_path / "spool"
    live = spool / f"upload-{socket.gethostname()}-{os.getpid()}-other.part"  # a live process's upload (this test's)
    port = _port()
    proc = _serve(tmp_path, env, port)
    live.write_bytes(b"still arriving")
    sent = threading.Event()

    def slow_body():  # a multipart body that never finishes arriving
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="c.wav"\r\n\r\n' + b"\0" * 65536
        sent.set()
        time.sleep(60)
        yield b"\r\n--b--\r\n"

    def upload() -> None:
        try:
            httpx.post(f"http://127.0.0.1:{port}/api/clips", content=slow_body(), timeout=90,
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "multipart/form-data; boundary=b"})
        except httpx.TransportError:
            pass

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(list(spool.glob("upload-*"))) < 2:
        time.sleep(0.05)
    left = [p for p in spool.glob("upload-*") if p != live]
    assert sent.is_set() and len(left) == 1 and f"-{proc.pid}-" in left[0].name, list(spool.iterdir())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc = _serve(tmp_path, env, _port())
    try:
        assert sorted(spool.iterdir()) == [live]  # the dead server's part is gone at once; the live one stays
    finally:
        proc.terminate()
        proc.wait(timeout=30)
