"""The `openai` engine against a real OpenAI-compatible server on loopback: llama-cpp-python's
server (`python -m llama_cpp.server`) with the bundled Gemma 3 270M, behind a fault-injecting
proxy (written here, stdlib only) that answers 429/500/401/400, hangs past the client's timeout,
or forwards to the real server, and counts every request it receives.

Also the request cache end to end: a `curate run` killed mid-generation and run again asks the
server only for the completions not cached yet (counted at the proxy), and a repeated run asks
for none."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from helpers import curate_exe, run_cli, write_pipeline

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server] (the dev extra)")

from curate.synth.cache import CACHE_FOLDER  # noqa: E402
from curate.synth.engines import Completion, EngineError, OpenAIEngine, Request, RequestFailed, bundled_model_path  # noqa: E402
from curate.synth.generation import EngineParams  # noqa: E402

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with the bundled model; yields its base URL."""
    port = free_port()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_model_path()), "--model_alias", "gemma-3-270m",
         "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--verbose", "false"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/models", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}") from None
                time.sleep(0.3)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


class FaultProxy:
    """An HTTP proxy in front of the real server. ``script`` is consumed one action per request:
    ``"429"``, ``"500"``, ``"401"``, ``"400"`` (answer that status), ``"hang"`` (answer nothing for
    ``hang_s`` seconds), ``"ok"`` (forward); when it is empty every request is forwarded after
    ``delay`` seconds. ``requests`` counts what arrived, ``forwarded`` what reached the server."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.script: list[str] = []
        self.delay = 0.0
        self.hang_s = 5.0
        self.requests = 0
        self.forwarded = 0
        self.in_flight = 0
        self.last_arrival = 0.0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with proxy.lock:
                    proxy.requests += 1
                    proxy.in_flight += 1
                    proxy.last_arrival = time.time()
                    action = proxy.script.pop(0) if proxy.script else "ok"
                try:
                    self._handle(action, body)
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1

            def _handle(self, action: str, body: bytes) -> None:
                if action == "hang":
                    time.sleep(proxy.hang_s)
                    return self._send(504, b'{"error": "hung"}')
                if action != "ok":
                    status = int(action)
                    headers = {"Retry-After": "0"} if status == 429 else {}
                    return self._send(status, json.dumps({"error": {"message": f"injected {status}"}}).encode(), headers)
                time.sleep(proxy.delay)
                req = urllib.request.Request(proxy.upstream + self.path.removeprefix("/v1"), data=body, headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(req, timeout=120) as resp:
                        data, status = resp.read(), resp.status
                except urllib.error.HTTPError as exc:
                    data, status = exc.read(), exc.code
                with proxy.lock:
                    proxy.forwarded += 1
                self._send(status, data)

            def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a timeout)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_quiet(self, seconds: float = 3.0, timeout: float = 60.0) -> None:
        """Until nothing is in flight and nothing arrived for ``seconds`` (a killed run's Ray
        workers can outlive its driver for a moment and finish a request)."""
        deadline = time.time() + timeout
        while time.time() < deadline and (self.in_flight or time.time() - self.last_arrival < seconds):
            time.sleep(0.1)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def proxy(llama_server: str) -> Iterator[FaultProxy]:
    p = FaultProxy(llama_server)
    yield p
    p.close()


def engine(proxy: FaultProxy, **kw: Any) -> OpenAIEngine:
    cfg = EngineParams(name="openai", model="gemma-3-270m", base_url=proxy.url, backoff=0.05, **kw)
    e = OpenAIEngine(cfg)
    e.setup()
    return e


def generate(e: OpenAIEngine, n: int, max_tokens: int = 8) -> list[Completion | RequestFailed]:
    results: dict[int, Completion | RequestFailed] = {}
    e.generate([Request(f"The capital of France is{' ' * i}", max_tokens, 0.6, 0.95, i) for i in range(n)], results.__setitem__)
    return [results[i] for i in range(n)]


def test_429_and_500_are_retried_until_the_real_server_answers(proxy: FaultProxy) -> None:
    proxy.script = ["429", "500", "ok"]
    e = engine(proxy, concurrency=1)
    (r,) = generate(e, 1)
    assert isinstance(r, Completion) and r.text and r.completion_tokens > 0 and r.prompt_tokens > 0
    assert r.finish_reason in ("stop", "length")
    assert (proxy.requests, proxy.forwarded, e.calls) == (3, 1, 3)
    e.close()


def test_a_hang_past_the_timeout_is_retried_then_dropped_with_its_reason(proxy: FaultProxy) -> None:
    proxy.hang_s = 3.0
    proxy.script = ["hang", "ok"]
    e = engine(proxy, timeout=1.0, max_retries=1, concurrency=1)
    t0 = time.time()
    (r,) = generate(e, 1)
    assert isinstance(r, Completion) and time.time() - t0 < 2.9  # not waiting for the hung answer
    proxy.script = ["hang", "hang"]
    (r,) = generate(e, 1)
    assert isinstance(r, RequestFailed) and r.rule == "request_failed"
    assert "timeout after 1s (after 2 attempts)" in r.reason
    proxy.script = ["400"]
    (r,) = generate(e, 1)
    assert isinstance(r, RequestFailed) and "HTTP 400" in r.reason and "injected 400" in r.reason
    e.close()


def test_401_is_a_clear_error_that_fails_the_run(proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.script = ["401"]
    e = engine(proxy, api_key_env="SYNTH_TEST_KEY")
    with pytest.raises(EngineError, match=r"401 Unauthorized .*check the API key \(the key comes from \$SYNTH_TEST_KEY\)"):
        generate(e, 1)
    e.close()
    proxy.script = ["401"] * 10
    out = run_cli("run", str(pipeline(tmp_path, proxy, topics=1)), "--no-progress", cwd=tmp_path, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "generate_textbooks" in out.stderr and "401 Unauthorized" in out.stderr and "check the API key" in out.stderr
    assert not (tmp_path / "out" / "_delta_log").exists()


def pipeline(tmp_path: Path, proxy: FaultProxy, topics: int, max_tokens: int = 8) -> Path:
    names = ", ".join(f"topic {i}" for i in range(topics))
    return write_pipeline(tmp_path / "gen.yaml", f"""stages:
  - generate_textbooks:
      topics: [{names}]
      formats: [textbook]
      audiences: [high_school, college]
      sampling: {{max_tokens: {max_tokens}}}
      engine: {{name: openai, base_url: "{proxy.url}", model: gemma-3-270m, concurrency: 2, backoff: 0.05, max_retries: 1}}
    run: {{batch_size: 2, concurrency: 1}}
output: {{dataset: {tmp_path}/out, keep_dropped: true}}
ray: {{num_cpus: 2}}
""")


def counters(dataset: Path) -> dict[str, int]:
    out = run_cli("versions", str(dataset), "--json")
    assert out.returncode == 0, out.stderr
    stages = {s["stage"]: s for s in json.loads(out.stdout)[0]["run"]["stages"]}
    return stages["generate_textbooks"]["counters"]


def test_a_killed_run_and_a_rerun_never_regenerate_what_is_cached(proxy: FaultProxy, tmp_path: Path) -> None:
    total = 8 * 2  # 8 topics x 2 audiences x 1 format x 1 sample
    pipe = pipeline(tmp_path, proxy, topics=8)
    proxy.delay = 0.4
    proc = subprocess.Popen([*curate_exe(), "run", str(pipe), "--no-progress"], cwd=tmp_path, env={**os.environ, "COLUMNS": "200"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    cache = tmp_path / "out" / CACHE_FOLDER
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and len(list(cache.glob("*/*.json"))) < 5:
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-3000:] if proc.stderr else ''}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proxy.wait_quiet()  # what the dead run had in flight is answered (and cached) or gone: count from here
    cached = len(list(cache.glob("*/*.json")))
    assert 5 <= cached < total
    assert not (tmp_path / "out" / "_delta_log").exists()

    proxy.delay, before = 0.0, proxy.requests
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert proxy.requests - before == total - cached  # only what was not cached
    assert len(list(cache.glob("*/*.json"))) == total
    df = pl.read_delta(str(tmp_path / "out"))
    assert len(df) == total and df["id"].n_unique() == total
    assert set(df["engine"]) == {"openai"} and set(df["model"]) == {"gemma-3-270m"}
    c = counters(tmp_path / "out")
    assert c["engine_calls"] == total - cached  # tasks the killed run finished are not run at all (resume)
    assert c["cache_hits"] + c["engine_calls"] == c["requests"] <= total

    before = proxy.requests
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert proxy.requests == before, "a repeated run asks the server for nothing"
    c = counters(tmp_path / "out")
    assert (c["engine_calls"], c["cache_hits"], c["requests"]) == (0, total, total)
    again = pl.read_delta(str(tmp_path / "out"))
    assert again.sort("id")["text"].to_list() == df.sort("id")["text"].to_list()


def test_transformation_mode_and_a_failed_request_dropped_with_its_reason(proxy: FaultProxy, tmp_path: Path) -> None:
    docs = [{"id": "doc-a", "text": "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen."},
            {"id": "doc-b", "text": "A fraction names a part of a whole: one half, two thirds."},
            {"id": "doc-c", "text": "Volcanoes erupt when magma rises through the crust."}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    pipe = write_pipeline(tmp_path / "rewrite.yaml", f"""input: {{format: jsonl, paths: [{tmp_path}/in.jsonl]}}
stages:
  - generate_textbooks:
      mode: transformation
      formats: [rewrite_qa, rewrite_wikipedia]
      audiences: [college]
      sampling: {{max_tokens: 8}}
      engine: {{name: openai, base_url: "{proxy.url}", model: gemma-3-270m, concurrency: 1}}
    run: {{batch_size: 1, concurrency: 1}}
output: {{dataset: {tmp_path}/out, keep_dropped: true}}
ray: {{num_cpus: 2}}
""")
    proxy.script = ["ok", "ok", "400"]  # the third request of the run: a 4xx is not retried
    out = run_cli("run", str(pipe), "--no-progress", cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr
    assert proxy.requests == 6
    dropped = pl.read_delta(str(tmp_path / "out.dropped"))
    assert dropped["rule"].to_list() == ["request_failed"] and "HTTP 400" in dropped["reason"][0] and "injected 400" in dropped["reason"][0]
    (failed,) = dropped["id"].to_list()
    df = pl.read_delta(str(tmp_path / "out")).sort("id")
    ids = sorted(f"{d['id']}/{k}" for d in docs for k in (0, 1) if d["id"] != failed)
    assert df["id"].to_list() == ids and len(ids) == 4
    assert df["format"].to_list() == ["rewrite_qa", "rewrite_wikipedia"] * 2 and df["parent_id"].to_list() == [i.split("/")[0] for i in ids]
    assert df["seed_id"].to_list() == df["parent_id"].to_list() and df["seed_hash"][0] != df["seed_hash"][2]
    assert df["text"].str.len_chars().min() > 0 and df["text"][0] not in {d["text"] for d in docs}
    assert "Source text:" in df["prompt"][0] and any(d["text"] in df["prompt"][0] for d in docs)
    report = run_cli("synth-report", str(tmp_path / "out"), "--json")
    assert report.returncode == 0, report.stderr
    cells = {(c["format"], c["audience"]): c for c in json.loads(report.stdout)["cells"]}
    assert set(cells) == {("rewrite_qa", "college"), ("rewrite_wikipedia", "college")}
    assert [cells[k]["kept"] for k in sorted(cells)] == [2, 2]
    # a failed input row is one parent for every cell: counted once, in the stage's counters
    assert json.loads(report.stdout)["counters"]["failed_requests"] == 1
