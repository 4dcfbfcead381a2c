"""End to end, with real parts only: the annotation app (`curate annotate serve` on loopback, its
admin commands) receives real LJ Speech recordings from two annotators through its upload API;
`curate annotate export` appends them to the clips dataset; pipelines/examples/annotations.yaml
runs through `curate run` on a real local Ray (faster-whisper tiny.en, the bundled Gemma on CPU);
the annotations dataset is read back with polars. Then more clips are uploaded and exported, and
the next run processes only those and appends them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx
import polars as pl
import pytest
from annotation_fixtures import AnnotationApp, annotation_app, lj_clips
from helpers import ROOT, run_cli

pytest.importorskip("faster_whisper", reason="needs faster-whisper (the annotation extra)")
pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (the synth extra)")

pytestmark = pytest.mark.slow

PIPELINE = ROOT / "pipelines" / "examples" / "annotations.yaml"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upload(app: AnnotationApp, token: str, clips: list[tuple[Path, str]]) -> dict[str, str]:
    """Each clip uploaded for the annotator's next image, as the page does; clip id -> reference text."""
    refs = {}
    with httpx.Client(base_url=app.base_url, headers=app.headers(token), timeout=60) as client:
        for wav, ref in clips:
            image = client.get("/api/next").json()
            with open(wav, "rb") as fh:
                got = client.post("/api/clips", data={"image_id": image["id"]}, files={"file": (wav.name, fh, "audio/wav")})
            assert got.status_code == 201, got.text
            assert got.json()["sha256"] == sha256(wav)
            refs[got.json()["id"]] = ref
    return refs


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def test_annotations_pipeline_end_to_end_then_only_the_new_clips(tmp_path: Path) -> None:
    five = lj_clips()[:5]
    clips, out = tmp_path / "clips", tmp_path / "out" / "annotations"
    env = {"CURATE_ANNOTATION_DATASET": str(clips), "CURATE_ANNOTATIONS": str(out), "HF_HUB_OFFLINE": "1"}
    with annotation_app(tmp_path / "app", images=3) as app:
        alice, bob = app.add_annotator("alice"), app.add_annotator("bob")
        refs = upload(app, alice, five[:3])
        app.admin("export", "--dataset", str(clips))  # clips version 0

        first = run_cli("run", str(PIPELINE), "--no-progress", cwd=tmp_path, env=env, timeout=900)
        assert first.returncode == 0, first.stderr
        df = check_annotations(out, clips, refs)
        runs = json.loads(run_cli("versions", str(out), "--json").stdout)
        assert runs[0]["version"] == 0 and runs[0]["run"]["inputs"][0]["version"] == 0

        more = upload(app, bob, five[3:])
        app.admin("export", "--dataset", str(clips))  # clips version 1: only bob's two clips
    second = run_cli("run", str(PIPELINE), "--no-progress", cwd=tmp_path, env=env, timeout=900)
    assert second.returncode == 0, second.stderr
    runs = json.loads(run_cli("versions", str(out), "--json").stdout)
    assert runs[0]["version"] == 1
    latest = runs[0]["run"]
    assert latest["rows_in"] == 2 and latest["inputs"][0]["since_version"] == 0 and latest["inputs"][0]["version"] == 1
    assert {s["stage"]: s["in"] for s in latest["stages"]}["transcribe"] == 2  # only the new clips were transcribed
    both = check_annotations(out, clips, {**refs, **more})
    assert set(both["id"]) - set(df["id"]) <= set(more)  # appended, none processed twice
    source = pl.read_delta(str(clips))
    annotators = dict(zip(source["id"], source["annotator_id"]))
    assert len({annotators[c] for c in refs}) == 1 and len({annotators[c] for c in more}) == 1
    assert {annotators[c] for c in refs} != {annotators[c] for c in more}  # alice's, then bob's
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
