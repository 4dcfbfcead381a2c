"""``quality_classifier``: score documents with a fastText quality model and keep the best.

Adds ``quality_score`` = P(positive) from a model trained with ``curate quality train``, then

- ``threshold: T``: keeps documents with ``quality_score >= T``;
- ``keep_fraction: F`` with ``calibration: [paths]``: the threshold is the (1 - F) quantile of the
  model's scores on a sample of documents (the first ``calibration_docs`` documents of those
  files), computed once on the driver when the pipeline is loaded; every worker then applies the
  same threshold. The kept fraction of the run is F up to how well the sample represents the
  input (point it at the input itself for an unbiased estimate). The threshold is recorded.
- ``keep_fraction: F`` without ``calibration``: keeps the top ``ceil(F * n)`` documents of each
  batch of ``n`` live documents (ties broken by position). Exact per batch, so F overall up to
  rounding per batch; *which* documents are kept depends on which ones share a batch, i.e. on the
  input's block layout. Use it only when the input is well shuffled.
- neither: only scores (keeps everything).

The model path, its SHA-256 (checked against the model card written by training, if present),
and the threshold or fraction in force are recorded in the commit metadata. The model is
loaded once per worker process; the stage runs as plain tasks so Ray can fuse it with its
neighbours.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from curate.pipelines.errors import ConfigError
from curate.pipelines.stage import POS, Drops, Params, Stage, StageOutput
from pydantic import Field, model_validator

from . import _fasttext


class QualityClassifierParams(Params):
    model: str = Field(description="fastText model file from `curate quality train` (.bin or .ftz)")
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="keep documents with quality_score >= threshold")
    keep_fraction: float | None = Field(
        None, gt=0.0, le=1.0, description="keep this fraction of documents, the best scored (see calibration)"
    )
    calibration: list[str] | None = Field(
        None,
        description="JSONL/Parquet/text files whose scores set the keep_fraction threshold (default: per batch)",
    )
    calibration_docs: int = Field(20_000, gt=0, description="documents read from the calibration files")
    text_field: str = Field("text", description="field of the calibration files holding the text")
    sha256: str | None = Field(None, description="expected SHA-256 of the model file (pins the model)")

    @model_validator(mode="after")
    def _one_rule(self) -> "QualityClassifierParams":
        if self.threshold is not None and self.keep_fraction is not None:
            raise ValueError("set threshold or keep_fraction, not both")
        if self.calibration is not None and self.keep_fraction is None:
            raise ValueError("calibration only applies with keep_fraction")
        return self


class QualityClassifier(Stage[QualityClassifierParams]):
    """fastText quality classifier: adds quality_score, keeps above a threshold or the top fraction."""

    name = "quality_classifier"
    writes = ("quality_score",)
    Params = QualityClassifierParams
    batch_size = 4096

    def __init__(self, params: QualityClassifierParams) -> None:
        super().__init__(params)
        self._model_path: str | None = None
        self._sha256: str | None = None
        self._threshold: float | None = params.threshold
        self._calibrated_on = 0

    # -- driver side -------------------------------------------------------------------------

    def check(self, base_dir: Path | None) -> None:
        p = self.params
        self._model_path = _fasttext.resolve_path(p.model, base_dir, "model")
        self._sha256 = _fasttext.sha256_file(self._model_path)
        from .quality_model import read_card

        card = read_card(self._model_path)
        if p.sha256 is not None and p.sha256.lower() != self._sha256:
            raise ConfigError(f"model: {p.model} has SHA-256 {self._sha256}, not the pinned sha256 {p.sha256}")
        if card is not None and card.get("sha256") not in (None, self._sha256):
            raise ConfigError(
                f"model: {p.model} does not match its model card {p.model}.json (SHA-256 {self._sha256}, card says {card.get('sha256')})",
                hint="the model file was replaced after training: retrain, or delete the stale .json card",
            )
        try:
            _fasttext.load_model(self._model_path)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"model: {p.model} is not a fastText model: {exc}") from None
        if p.keep_fraction is not None and p.calibration is not None:
            files = [_resolve_glob(c, base_dir, i) for i, c in enumerate(p.calibration)]
            self._threshold, self._calibrated_on = self._calibrate([f for group in files for f in group])

    def _calibrate(self, files: list[str]) -> tuple[float, int]:
        from curate.pipelines.config import InputConfig
        from curate.pipelines.readers import plan_inputs, read_task, split_tasks

        from .quality_model import score

        assert self.params.keep_fraction is not None
        texts: list[str] = []
        limit = self.params.calibration_docs
        for path in files:
            fmt = _format_of(path)
            cfg = InputConfig(format=fmt, paths=[path], text_field=self.params.text_field, on_error="skip")
            for task in split_tasks(plan_inputs(cfg, "calibration"), cfg, split_bytes=1 << 62):
                for table in read_task(task, cfg):
                    texts += table.column("text").to_pylist()[: limit - len(texts)]
                    if len(texts) >= limit:
                        break
                if len(texts) >= limit:
                    break
            if len(texts) >= limit:
                break
        if not texts:
            raise ConfigError("calibration: the calibration files hold no documents")
        scores = score(_fasttext.load_model(self._model_path or ""), texts)
        # keep score >= t for a fraction F: t is the (1 - F) quantile (the lower of two values)
        t = float(np.quantile(scores, 1.0 - self.params.keep_fraction, method="lower"))
        return t, len(texts)

    def metadata(self) -> dict[str, Any]:
        if self._model_path is None:
            self.check(None)
        p = self.params
        meta: dict[str, Any] = {"model": self._model_path, "model_sha256": self._sha256}
        if p.threshold is not None:
            meta["threshold"] = p.threshold
        elif p.keep_fraction is not None:
            meta["keep_fraction"] = p.keep_fraction
            if p.calibration is not None:
                meta.update(mode="calibrated_threshold", threshold=self._threshold, calibration_docs=self._calibrated_on)
            else:
                meta["mode"] = "per_batch_top_fraction"
        return meta

    # -- worker side -------------------------------------------------------------------------

    def setup(self) -> None:
        if self._model_path is None:
            self.check(None)
        self._model = _fasttext.load_model(self._model_path or "")

    def process(self, batch: pa.Table) -> StageOutput:
        from .quality_model import score

        if not hasattr(self, "_model"):
            self.setup()
        p = self.params
        s = score(self._model, batch.column("text"))
        arr = pa.array(s, pa.float64())
        out = batch
        if "quality_score" in out.schema.names:
            out = out.set_column(out.schema.get_field_index("quality_score"), "quality_score", arr)
        else:
            out = out.append_column("quality_score", arr)
        n = len(s)
        if self._threshold is not None:
            t = self._threshold
            drop = s < t
            how = f"threshold {t:.4f}" + (f" (keep_fraction {p.keep_fraction}, calibrated)" if p.keep_fraction else "")
        elif p.keep_fraction is not None:
            k = math.ceil(p.keep_fraction * n)
            pos = batch.column(POS).to_numpy() if POS in batch.schema.names else np.arange(n)
            order = np.lexsort((pos, -s))  # best first, then input order
            drop = np.ones(n, dtype=bool)
            drop[order[:k]] = False
            how = f"not in the top {p.keep_fraction:g} of its batch"
        else:
            return StageOutput(out, counters={"scored": n})
        reasons = [f"quality_score {v:.4f} below {how}" if d else None for v, d in zip(s, drop)]
        return StageOutput(
            out,
            Drops(mask=drop, rule="low_quality_score", reason=reasons),
            counters={"scored": n, "kept": int(n - drop.sum())},
        )


def _format_of(path: str) -> str:
    if Path(path).is_dir() and (Path(path) / "_delta_log").is_dir():
        return "delta"
    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    if low.endswith((".txt", ".md", ".rst", ".text")):
        return "text"
    return "jsonl"


def _resolve_glob(value: str, base_dir: Any, i: int) -> list[str]:
    import glob as globlib

    if any(c in value for c in "*?["):
        for root in [Path.cwd()] + ([Path(base_dir)] if base_dir is not None else []):
            found = sorted(globlib.glob(str(root / value) if not Path(value).is_absolute() else value))
            if found:
                return found
        raise ConfigError(f"calibration[{i}]: no files match {value!r}")
    p = Path(value)
    for root in [Path.cwd()] + ([Path(base_dir)] if base_dir is not None else []):
        c = p if p.is_absolute() else root / p
        if c.is_dir() and (c / "_delta_log").is_dir():
            return [str(c)]
        if c.is_file():
            return [str(c.resolve())]
    raise ConfigError(f"calibration[{i}]: file not found: {value!r}")


__all__ = ["QualityClassifier", "QualityClassifierParams"]
