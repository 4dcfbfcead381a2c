"""End to end: a clips dataset (the annotation app's contract: real LJ Speech recordings, hashes,
image, annotator) -> pipelines/examples/annotations.yaml through `curate run` on a real local Ray
(real faster-whisper tiny.en, the real bundled Gemma on CPU) -> the annotations dataset read back
with polars; more clips appended -> the next run processes only the new ones and appends them."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
import wave
from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import write_deltalake
from helpers import ROOT, SHARED, need_shared_data, run_cli

pytest.importorskip("faster_whisper", reason="needs faster-whisper (the annotation extra)")
pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the synth extra)")

pytestmark = pytest.mark.slow

LJ = SHARED / "evaldata" / "speech" / "ljspeech"
PIPELINE = ROOT / "pipelines" / "examples" / "annotations.yaml"
IMAGE = ROOT / "annotation" / "sample_images" / "02_street.png"

#: the clips dataset's columns (the contract between the app's export and the pipelines)
CLIPS_SCHEMA = pa.schema([
    ("id", pa.string()), ("audio_uri", pa.string()), ("audio_sha256", pa.string()), ("audio_format", pa.string()),
    ("duration_s", pa.float64()), ("image_id", pa.string()), ("image_uri", pa.string()), ("image_sha256", pa.string()),
    ("annotator_id", pa.string()), ("submitted_at", pa.timestamp("us", tz="UTC")),
])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def first_clips(n: int) -> list[tuple[Path, float, str]]:
    """The first ``n`` LJ Speech clips by id: (wav, seconds, reference transcript)."""
    need_shared_data(LJ / "transcripts.tsv", "LJ Speech clips")
    refs = dict(line.split("\t", 1) for line in (LJ / "transcripts.tsv").read_text(encoding="utf-8").splitlines() if "\t" in line)
    clips = []
    for wav in sorted(LJ.glob("*.wav")):
        with wave.open(str(wav)) as w:
            clips.append((wav, w.getnframes() / w.getframerate(), refs[wav.stem]))
    return clips[:n]


def append_clips(dataset: Path, blobs: Path, clips: list[tuple[Path, float, str]], annotator: str) -> dict[str, str]:
    """Append clips as the app's export does (blobs stored by SHA-256, one version per export);
    returns clip id -> reference transcript."""
    blobs.mkdir(parents=True, exist_ok=True)
    image = blobs / sha256(IMAGE)
    shutil.copyfile(IMAGE, image)
    rows, refs = [], {}
    for wav, seconds, ref in clips:
        blob = blobs / sha256(wav)
        shutil.copyfile(wav, blob)
        cid = f"clip_{uuid.uuid4().hex}"
        refs[cid] = ref
        rows.append({"id": cid, "audio_uri": str(blob), "audio_sha256": sha256(wav), "audio_format": "wav", "duration_s": seconds,
                     "image_id": "img_street", "image_uri": str(image), "image_sha256": sha256(IMAGE), "annotator_id": annotator,
                     "submitted_at": datetime.now(timezone.utc)})
    write_deltalake(str(dataset), pa.Table.from_pylist(rows, CLIPS_SCHEMA), mode="append")
    return refs


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def test_annotations_pipeline_end_to_end_then_only_the_new_clips(tmp_path: Path) -> None:
    clips, out = tmp_path / "annotation-data" / "clips", tmp_path / "out" / "annotations"
    blobs = tmp_path / "annotation-data" / "blobs"
    five = first_clips(5)
    refs = append_clips(clips, blobs, five[:3], "ann_alice")
    env = {"CURATE_ANNOTATION_DATASET": str(clips), "CURATE_ANNOTATIONS": str(out), "HF_HUB_OFFLINE": "1"}

    first = run_cli("run", str(PIPELINE), "--no-progress", cwd=tmp_path, env=env, timeout=900)
    assert first.returncode == 0, first.stderr
    df = check_annotations(out, clips, refs)
    runs = json.loads(run_cli("versions", str(out), "--json").stdout)
    assert runs[0]["version"] == 0 and runs[0]["run"]["inputs"][0]["version"] == 0

    more = append_clips(clips, blobs, five[3:], "ann_bob")  # the app exported two more clips: clips version 1
    second = run_cli("run", str(PIPELINE), "--no-progress", cwd=tmp_path, env=env, timeout=900)
    assert second.returncode == 0, second.stderr
    runs = json.loads(run_cli("versions", str(out), "--json").stdout)
    assert runs[0]["version"] == 1
    latest = runs[0]["run"]
    assert latest["rows_in"] == 2 and latest["inputs"][0]["since_version"] == 0 and latest["inputs"][0]["version"] == 1
    assert {s["stage"]: s["in"] for s in latest["stages"]}["transcribe"] == 2  # only the new clips were transcribed
    both = check_annotations(out, clips, {**refs, **more})
    assert set(both["id"]) - set(df["id"]) <= set(more)  # appended, none processed twice
    assert set(both.filter(pl.col("id").is_in(list(more)))["annotator_id"]) <= {"ann_bob"}
    assert pl.read_delta(str(out), version=0).height == df.height


#: why caption may refuse a clip (the bundled 270M model sometimes copies its prompt's example
#: instead of rewriting a transcript that is not an image description, as LJ Speech's are not)
CAPTION_RULES = {"unfaithful_caption", "truncated_caption", "empty_caption"}


def check_annotations(out: Path, clips: Path, refs: dict[str, str]) -> pl.DataFrame:
    """Every clip is in the annotations dataset, complete, or in its dropped-rows table with the
    caption stage's rule and reason; at least half of them are captioned. Returns the dataset."""
    df = pl.read_delta(str(out))
    dropped = pl.read_delta(str(out) + ".dropped")
    assert df["id"].n_unique() == df.height and dropped["id"].n_unique() == dropped.height
    assert sorted([*df["id"], *dropped["id"]]) == sorted(refs)
    assert set(dropped["stage"]) <= {"caption"} and set(dropped["rule"]) <= CAPTION_RULES, dropped
    assert all(dropped["reason"]), dropped
    assert df.height >= len(refs) / 2, dropped.select("id", "rule", "reason").rows()
    source = pl.read_delta(str(clips))
    for row in df.iter_rows(named=True):
        src = source.filter(pl.col("id") == row["id"]).row(0, named=True)
        for col in ("audio_uri", "audio_sha256", "image_uri", "image_sha256", "annotator_id", "duration_s", "submitted_at"):
            assert row[col] == src[col], col  # the clip's provenance is carried through
        assert sha256(Path(row["audio_uri"])) == row["audio_sha256"] and sha256(Path(row["image_uri"])) == row["image_sha256"]
        ref = words(refs[row["id"]])
        assert len(words(row["transcript"]) & ref) >= 0.6 * len(ref), (row["transcript"], refs[row["id"]])  # Whisper heard this clip
        assert row["segments"] and row["segments"][0]["words"], row["segments"]
        assert row["caption"] and row["caption"].strip(), row
        assert len(words(row["caption"]) & words(row["transcript"])) >= 0.5 * len(words(row["caption"])), row  # from this transcript
        assert row["caption_model"] == "llama_cpp:gemma-3-270m-q4_k_m"
        assert "whisper" in row["transcribe_model"] and row["language"] == "en"
        assert 0 < row["speech_ratio"] <= 1.0 and row["words_per_minute"] > 0 and row["transcript_flags"] == []
    return df
