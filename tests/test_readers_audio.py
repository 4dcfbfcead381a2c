"""Input format audio: one row per audio file (the reader alone, without Ray), and audio input ->
transcribe -> Delta output through `curate run` (real Ray, the bundled Whisper tiny.en)."""

from __future__ import annotations

import hashlib
import json
import shutil
import wave
from pathlib import Path

import polars as pl
import pytest
from curate.pipelines.config import InputConfig
from curate.pipelines.errors import InputDataError
from curate.pipelines.readers import input_columns, plan_inputs, read_task, split_tasks
from curate.pipelines.readers.audio import audio_format
from helpers import EVALDATA, ROOT, need_data, run_cli, write_pipeline

LJ = EVALDATA / "speech" / "ljspeech"
CLIPS = ("LJ001-0002", "LJ001-0008", "LJ001-0013")


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    need_data(LJ, "LJ Speech clips")
    folder = tmp_path / "clips"
    folder.mkdir()
    for c in CLIPS:
        shutil.copy(LJ / f"{c}.wav", folder / f"{c}.wav")
    (folder / "README.txt").write_text("clips recorded for the test\n", encoding="utf-8")
    return folder


def _read(cfg: InputConfig) -> list[dict]:
    rows = []
    for task in split_tasks(plan_inputs(cfg), cfg):
        for table in read_task(task, cfg):
            rows += table.to_pylist()
    return rows


def test_one_row_per_audio_file(clips: Path) -> None:
    cfg = InputConfig(format="audio", paths=[str(clips)])  # a folder: only audio suffixes
    rows = _read(cfg)
    assert [r["id"] for r in rows] == [f"{c}.wav" for c in CLIPS]
    for r in rows:
        path = clips / r["id"]
        assert r["audio_uri"] == str(path.resolve())
        assert r["audio_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert r["audio_format"] == "wav"
        with wave.open(str(path)) as w:
            assert r["duration_s"] == pytest.approx(w.getnframes() / w.getframerate(), abs=1e-3)
        assert r["_drop_rule"] is None
    assert len({r["_curate_pos"] for r in rows}) == len(rows)
    assert input_columns(cfg, plan_inputs(cfg)) == ["id", "audio_uri", "audio_sha256", "audio_format", "duration_s"]


def test_audio_format_comes_from_the_extension() -> None:
    assert audio_format("/a/b/clip.WAV") == "wav"
    assert audio_format("s3://bucket/x.y/clip.oga") == "ogg"
    assert audio_format("clip.webm") == "webm" and audio_format("clip.m4a") == "m4a"
    assert audio_format("noext") == ""


def test_a_file_that_is_not_audio_fails_naming_it_or_is_skipped(clips: Path) -> None:
    (clips / "notes.wav").write_text("not audio at all\n", encoding="utf-8")
    shutil.copy(ROOT / "annotation" / "sample_images" / "01_fruit_stall.png", clips / "picture.mp3")  # a PNG: no audio stream
    (clips / "empty.flac").write_bytes(b"")
    with pytest.raises(InputDataError) as err:
        _read(InputConfig(format="audio", paths=[str(clips / "*.wav")]))
    assert "notes.wav: not an audio file" in err.value.message and "on_error: skip" in (err.value.hint or "")
    rows = _read(InputConfig(format="audio", paths=[str(clips / "*")], on_error="skip"))
    dropped = {r["id"]: r for r in rows if r["_drop_rule"] is not None}
    assert set(dropped) == {"notes.wav", "picture.mp3", "empty.flac", "README.txt"}
    assert all(r["_drop_rule"] == "not_audio" and r["_drop_stage"] == "read" for r in dropped.values())
    assert "no audio stream" in dropped["picture.mp3"]["_drop_reason"]
    assert "empty" in dropped["empty.flac"]["_drop_reason"]
    assert dropped["notes.wav"]["audio_sha256"] == hashlib.sha256(b"not audio at all\n").hexdigest()
    assert sorted(r["id"] for r in rows if r["_drop_rule"] is None) == [f"{c}.wav" for c in CLIPS]


@pytest.mark.slow
def test_curate_run_audio_to_transcripts(clips: Path, tmp_path: Path) -> None:
    """audio input -> transcribe -> Delta output read back with polars; the non-audio file is a
    recorded drop under on_error: skip, and fails the run naming it (exit 3) under fail."""
    (clips / "notes.wav").write_text("not audio at all\n", encoding="utf-8")
    out = tmp_path / "out"
    pipeline = write_pipeline(tmp_path / "p.yaml", f"""
input: {{format: audio, paths: ["{clips}/*.wav"], on_error: skip}}
stages:
  - transcribe: {{}}
output: {{dataset: {out}, keep_dropped: true}}
ray: {{num_cpus: 2}}
run: {{log_dir: {tmp_path}/logs}}
""")
    r = run_cli("run", str(pipeline), cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr + r.stdout
    df = pl.read_delta(str(out)).sort("id")
    assert df["id"].to_list() == [f"{c}.wav" for c in CLIPS]
    assert all(len(t.split()) >= 3 for t in df["transcript"].to_list())
    assert set(df["language"].to_list()) == {"en"}
    for segs in df["segments"].to_list():
        assert segs and all(s["words"] and all(w["end"] >= w["start"] >= 0 for w in s["words"]) for s in segs)
    assert df["audio_sha256"].to_list() == [hashlib.sha256((clips / f"{c}.wav").read_bytes()).hexdigest() for c in CLIPS]
    assert (df["audio_duration_s"] - df["duration_s"]).abs().max() < 0.01
    assert df["transcribe_model"].str.starts_with("whisper-tiny.en").all()
    import deltalake

    meta = json.loads(deltalake.DeltaTable(str(out)).history(1)[0]["curate.run"])["stage_metadata"]["transcribe"]
    assert meta["model"] == "whisper-tiny.en" and meta["compute_type"] == "int8" and len(meta["model_sha256"]) == 64
    dropped = pl.read_delta(str(out) + ".dropped")
    assert dropped["id"].to_list() == ["notes.wav"] and dropped["rule"].to_list() == ["not_audio"] and dropped["stage"].to_list() == ["read"]

    failing = write_pipeline(tmp_path / "f.yaml", pipeline.read_text().replace("on_error: skip", "on_error: fail").replace(str(out), str(tmp_path / "out2")))
    r = run_cli("run", str(failing), cwd=tmp_path, timeout=600)
    assert r.returncode == 3, r.stderr + r.stdout
    assert "notes.wav: not an audio file" in r.stderr
    assert not (tmp_path / "out2" / "_delta_log").exists() or not list((tmp_path / "out2" / "_delta_log").glob("*.json"))


def test_audio_files_on_an_fsspec_url(clips: Path) -> None:
    """memory:// stands for an object store: listed, hashed and probed through fsspec, and the
    stage decodes the URI through fsspec too."""
    import fsspec
    from curate.annotation.transcribe import load_audio

    fs = fsspec.filesystem("memory")
    data = (clips / "LJ001-0002.wav").read_bytes()
    fs.pipe("/audio-test/a/LJ001-0002.wav", data)
    fs.pipe("/audio-test/a/junk.ogg", b"OggS but not really")
    rows = _read(InputConfig(format="audio", paths=["memory://audio-test/a/*"], on_error="skip"))
    by_id = {r["id"]: r for r in rows}
    uri = by_id["LJ001-0002.wav"]["audio_uri"]
    assert uri.startswith("memory://") and uri.endswith("/audio-test/a/LJ001-0002.wav")  # as the planner lists it
    assert by_id["LJ001-0002.wav"]["audio_sha256"] == hashlib.sha256(data).hexdigest()
    assert by_id["LJ001-0002.wav"]["duration_s"] == pytest.approx(1.8995, abs=1e-3)
    assert by_id["junk.ogg"]["_drop_rule"] == "not_audio" and by_id["junk.ogg"]["audio_format"] == "ogg"
    samples = load_audio(uri)
    assert len(samples) == pytest.approx(1.8995 * 16_000, abs=20)
    fs.rm("/audio-test", recursive=True)
