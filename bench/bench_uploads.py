#!/usr/bin/env python3
"""Uploads per second the annotation app sustains on loopback, with p50/p99 latency (issue 10).

Not a test. The app is `curate annotate serve` in its own process (one uvicorn worker, the
per-token rate limit off), its data in a fresh temp folder; metadata in SQLite, and (``--db
postgres``) in a throwaway PostgreSQL cluster under /tmp (tests/pg.py: Debian's postgresql,
started as the `postgres` user, default durability settings). The client, in this process,
keeps ``--concurrency`` uploads in flight (httpx, asyncio) for ``--uploads`` uploads, each a
distinct real clip: the LJ Speech clips (tests/data/evaldata/speech/ljspeech, 1.8-10 s, 22.05 kHz
16-bit mono wav, 80-440 kB) with one sample's low bit changed per round so every upload has its own
SHA-256 (the app decodes each fully with PyAV, hashes it, stores it with fsync, commits a row).

Reported per database: uploads/s over the whole batch (first request sent to last answer),
latency p50/p90/p99/max, MB/s of audio, the answers by status (all must be 201), and the load
average before the run. Client and server share the machine's cores. A Markdown table on stdout,
JSON in bench/results/bench_uploads-<time>.json.

    .venv/bin/python bench/bench_uploads.py                          # SQLite and Postgres, 300 uploads, 8 in flight
    .venv/bin/python bench/bench_uploads.py --db sqlite --uploads 600 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
LJSPEECH = REPO / "tests" / "data" / "evaldata" / "speech" / "ljspeech"
sys.path.insert(0, str(REPO / "tests"))  # tests/pg.py: the throwaway Postgres cluster


def clip_bytes(n: int) -> list[bytes]:
    """``n`` distinct wav files: LJ Speech clip i % 32, with the low bit of sample i // 32 flipped."""
    wavs = sorted(LJSPEECH.glob("*.wav"))
    if not wavs:
        raise SystemExit(f"needs the LJ Speech clips in {LJSPEECH} (shared evaluation data beside the repository)")
    base = [w.read_bytes() for w in wavs]
    out = []
    for i in range(n):
        data = bytearray(base[i % len(base)])
        rnd = i // len(base)
        if rnd:
            pos = 44 + 2 * (1000 + rnd)  # inside the data chunk of a canonical 44-byte-header wav
            data[pos] ^= 1
        out.append(bytes(data))
    return out


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def curate_exe() -> list[str]:
    exe = Path(sys.executable).parent / "curate"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "curate"]


def admin(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([*curate_exe(), "annotate", *args], env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"curate annotate {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def make_images(folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (90, 140, 200)).save(folder / "one.png")
    return folder


async def drive(base_url: str, token: str, image_id: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], dict[int, int], float]:
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(enumerate(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:
        headers = {"Authorization": f"Bearer {token}"}

        async def worker() -> None:
            while queue:
                i, body = queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/api/clips", headers=headers, data={"image_id": image_id},
                                      files={"file": (f"clip{i}.wav", body, "audio/wav")})
                latencies.append(time.perf_counter() - t0)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return latencies, statuses, wall


def pct(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


def run_one(kind: str, db_url: str, folder: Path, bodies: list[bytes], concurrency: int) -> dict[str, object]:
    import httpx

    env = {**os.environ, "CURATE_ANNOTATION_DATA": str(folder), "CURATE_ANNOTATION_DB": db_url,
           "CURATE_ANNOTATION_STORE": str(folder / "blobs")}
    admin(env, "import-images", str(make_images(folder / "images")))
    token = admin(env, "add-annotator", "bench").strip().splitlines()[-1].strip()
    port = free_port()
    log = open(folder / "serve.log", "wb")
    server = subprocess.Popen([*curate_exe(), "annotate", "serve", "--host", "127.0.0.1", "--port", str(port),
                               "--db", db_url, "--store", str(folder / "blobs"), "--rate-limit", "0"],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start:\n{(folder / 'serve.log').read_text()}")
            try:
                if httpx.get(base + "/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {token}"}
        image_id = httpx.get(base + "/api/next", headers=headers, timeout=30).json()["id"]
        asyncio.run(drive(base, token, image_id, clip_bytes(1), 1))  # warm-up: one upload (imports, pool)
        load = os.getloadavg()[0]
        latencies, statuses, wall = asyncio.run(drive(base, token, image_id, bodies, concurrency))
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    lat = sorted(latencies)
    mb = sum(len(b) for b in bodies) / 1e6
    return {
        "db": kind, "uploads": len(bodies), "concurrency": concurrency, "wall_s": round(wall, 2),
        "uploads_per_s": round(len(bodies) / wall, 1), "audio_mb_per_s": round(mb / wall, 2),
        "p50_ms": round(1000 * pct(lat, 0.50), 1), "p90_ms": round(1000 * pct(lat, 0.90), 1),
        "p99_ms": round(1000 * pct(lat, 0.99), 1), "max_ms": round(1000 * lat[-1], 1),
        "mean_ms": round(1000 * statistics.fmean(lat), 1), "statuses": statuses, "load_before": round(load, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    ap.add_argument("--uploads", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    bodies = clip_bytes(args.uploads + 1)[1:]  # the first is the warm-up's
    rows = []
    for kind in args.db.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-uploads-") as tmp:
            folder = Path(tmp)
            if kind == "sqlite":
                rows.append(run_one(kind, f"sqlite:///{folder / 'annotation.db'}", folder, bodies, args.concurrency))
            elif kind == "postgres":
                from pg import postgres_cluster

                with postgres_cluster() as pg:
                    rows.append(run_one(kind, pg.url, folder, bodies, args.concurrency))
            else:
                raise SystemExit(f"--db: unknown database {kind!r} (sqlite or postgres)")
        print(f"{kind}: {rows[-1]}", file=sys.stderr)
    print("| db | uploads | in flight | uploads/s | audio MB/s | p50 ms | p90 ms | p99 ms | max ms | answers | load before |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))  # type: ignore[attr-defined]
        print(f"| {r['db']} | {r['uploads']} | {r['concurrency']} | {r['uploads_per_s']} | {r['audio_mb_per_s']} | "
              f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} | {answers} | {r['load_before']} |")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_uploads-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}.json"
    out.write_text(json.dumps({"rows": rows, "cpus": os.cpu_count(), "platform": platform.platform()}, indent=1))
    print(f"\n{out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
