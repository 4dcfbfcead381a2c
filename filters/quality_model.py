"""The fastText quality classifier: text preparation, training, scoring, evaluation, model cards.

A model is a fastText supervised model over two labels, ``__label__pos`` (what to keep) and
``__label__neg``; its score for a document is P(pos). Next to ``MODEL`` (``.bin`` or quantised
``.ftz``) training writes ``MODEL.json``, the model card: the SHA-256 of the model file, the
training sources and sizes, hyper-parameters, held-out metrics, and the held-out score quantiles.

Heavy imports (fasttext, matplotlib) happen inside the functions.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from curate.pipelines.errors import ConfigError

from . import _fasttext

POS = "__label__pos"
NEG = "__label__neg"
#: version of :func:`prepare_texts`, recorded in the model card
PREPROCESS = "lower-punct-ws-v1"
#: training runs tried before giving up (see :func:`train`)
MAX_ATTEMPTS = 5
#: a run whose model classifies fewer of its own training documents correctly is retried (the
#: best of MAX_ATTEMPTS runs is kept)
MIN_TRAIN_FIT = 0.85


def prepare_texts(texts: pa.Array | pa.ChunkedArray | Sequence[str]) -> list[str]:
    """What the classifier sees: lowercased, punctuation split off, whitespace collapsed, one line."""
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(list(texts), pa.string())
    arr = pc.utf8_lower(arr)
    arr = pc.replace_substring_regex(arr, r"([^\w\s])", r" \1 ")
    arr = pc.replace_substring_regex(arr, r"\s+", " ")
    arr = pc.utf8_trim_whitespace(arr)
    return [s or "" for s in arr.to_pylist()]


def card_path(model_path: str | os.PathLike[str]) -> Path:
    return Path(str(model_path) + ".json")


def read_card(model_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    p = card_path(model_path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def score(model: Any, texts: Sequence[str], prepared: bool = False) -> np.ndarray:
    """P(pos) for each text (``model`` is a loaded fastText model)."""
    lines = list(texts) if prepared else prepare_texts(texts)
    if not lines:
        return np.zeros(0, dtype=np.float64)
    labels, probs = model.predict(lines, k=-1, threshold=0.0)
    out = np.zeros(len(lines), dtype=np.float64)
    for i, (ls, ps) in enumerate(zip(labels, probs)):
        for lab, p in zip(ls, ps):
            if lab == POS:
                out[i] = float(p)
                break
        else:
            # a binary model returns both labels; if POS is missing its probability is 1 - P(neg)
            for lab, p in zip(ls, ps):
                if lab == NEG:
                    out[i] = max(0.0, 1.0 - float(p))
    return np.clip(out, 0.0, 1.0)


# ---------------------------------------------------------------- metrics


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = np.asarray(s)[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def pr_table(y: np.ndarray, s: np.ndarray, thresholds: Iterable[float]) -> list[dict[str, float]]:
    """Precision, recall and kept fraction when keeping ``score >= t``, per threshold."""
    y = np.asarray(y, dtype=bool)
    rows = []
    for t in thresholds:
        kept = s >= t
        tp = int((kept & y).sum())
        n_kept = int(kept.sum())
        rows.append(
            {
                "threshold": float(t),
                "precision": tp / n_kept if n_kept else float("nan"),
                "recall": tp / int(y.sum()) if y.any() else float("nan"),
                "kept_fraction": n_kept / len(s) if len(s) else float("nan"),
            }
        )
    return rows


def pr_curve(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct score (descending thresholds)."""
    y = np.asarray(y, dtype=bool)
    order = np.argsort(-s, kind="mergesort")
    ys = y[order]
    tp = np.cumsum(ys)
    kept = np.arange(1, len(ys) + 1)
    precision = tp / kept
    recall = tp / max(1, int(y.sum()))
    return recall, precision


def evaluate(y: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y, dtype=bool)
    pred = s >= 0.5
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "roc_auc": roc_auc(y, s),
        "pr_table": pr_table(y, s, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    }


def plot_pr(y: np.ndarray, s: np.ndarray, path: str | os.PathLike[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall, precision = pr_curve(y, s)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(recall, precision, lw=1.5)
    base = float(np.mean(y)) if len(y) else 0.0
    ax.axhline(base, color="grey", lw=0.8, ls="--", label=f"all kept ({base:.2f})")
    for t in (0.3, 0.5, 0.7):
        kept = s >= t
        if kept.any():
            r = float((kept & y).sum() / max(1, y.sum()))
            p = float((kept & y).sum() / kept.sum())
            ax.plot([r], [p], "o", ms=4)
            ax.annotate(f"t={t}", (r, p), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("recall (positives kept)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------- training


@dataclass
class Hyper:
    epoch: int = 10
    lr: float = 0.5
    dim: int = 32
    word_ngrams: int = 2
    min_count: int = 2
    bucket: int = 200_000
    threads: int = 1
    seed: int = 0
    quantize: bool = True
    cutoff: int = 20_000

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TrainResult:
    model_path: str
    sha256: str
    metrics: dict[str, Any]
    card: dict[str, Any]
    y_test: np.ndarray = field(repr=False)
    s_test: np.ndarray = field(repr=False)


def split_holdout(n: int, holdout: float, seed: int, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stratified split: indices for training and for the held-out test set."""
    rng = random.Random(seed)
    train: list[int] = []
    test: list[int] = []
    for cls in (True, False):
        idx = [i for i in range(n) if bool(y[i]) == cls]
        rng.shuffle(idx)
        k = int(round(len(idx) * holdout))
        if holdout > 0 and len(idx) >= 2:
            k = max(1, min(k, len(idx) - 1))
        test += idx[:k]
        train += idx[k:]
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


def train(
    texts: Sequence[str],
    labels: np.ndarray,
    output: str,
    *,
    holdout: float = 0.2,
    hyper: Hyper | None = None,
    sources: list[dict[str, Any]] | None = None,
) -> TrainResult:
    """Train on ``texts`` with boolean ``labels`` (True = keep), hold out ``holdout``, write MODEL and its card."""
    hyper = hyper or Hyper()
    y = np.asarray(labels, dtype=bool)
    prepared = prepare_texts(texts)
    tr, te = split_holdout(len(prepared), holdout, hyper.seed, y)
    if len(tr) == 0:
        raise ConfigError("no training documents left after the hold-out split")
    t0 = time.time()
    out_path = Path(output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="curate-quality-") as tmp:
        train_file = os.path.join(tmp, "train.txt")
        order = list(tr)
        random.Random(hyper.seed).shuffle(order)
        with open(train_file, "w", encoding="utf-8") as f:
            for i in order:
                f.write(f"{POS if y[i] else NEG} {prepared[i]}\n")
        model, train_fit, attempts = _fit(train_file, [prepared[i] for i in order], y[order], hyper)
        if hyper.quantize:
            model.quantize(input=train_file, qnorm=True, retrain=False, cutoff=hyper.cutoff, thread=hyper.threads)
        model.save_model(str(out_path))
    seconds = time.time() - t0
    digest = _fasttext.sha256_file(str(out_path))
    loaded = _fasttext.load_model(str(out_path))
    s_test = score(loaded, [prepared[i] for i in te], prepared=True) if len(te) else np.zeros(0)
    y_test = y[te] if len(te) else np.zeros(0, dtype=bool)
    metrics = evaluate(y_test, s_test) if len(te) else {}
    card = _card(out_path, digest, seconds, hyper, attempts, train_fit, sources, y, len(tr), len(te), metrics, s_test)
    card_path(out_path).write_text(json.dumps(card, indent=2) + "\n")
    return TrainResult(str(out_path), digest, metrics, card, y_test, s_test)


def _fit(train_file: str, train_texts: list[str], y_train: np.ndarray, hyper: Hyper) -> tuple[Any, float, int]:
    """(model, its fit on the training data, attempts). fasttext-numpy2-wheel's training is not
    bit-reproducible: now and then (about one run in three here, same data and seed) it stops
    with "Encountered NaN" or returns a model that fits its own training data badly. Such runs
    are retried and the best-fitting model of MAX_ATTEMPTS runs is kept; the card records the
    attempts and the training fit."""
    fasttext = _fasttext.import_fasttext(training=True)
    best: tuple[float, Any] | None = None
    attempts = 0
    last_error: Exception | None = None
    for attempts in range(1, MAX_ATTEMPTS + 1):
        try:
            candidate = fasttext.train_supervised(
                input=train_file, epoch=hyper.epoch, lr=hyper.lr, dim=hyper.dim, wordNgrams=hyper.word_ngrams,
                minCount=hyper.min_count, bucket=hyper.bucket if hyper.word_ngrams > 1 else 0, thread=hyper.threads,
                seed=hyper.seed, loss="softmax", verbose=0,
            )
            # a diverged run also shows up here: predict raises "Encountered NaN"
            fit = float(((score(candidate, train_texts, prepared=True) >= 0.5) == y_train).mean())
        except RuntimeError as exc:
            last_error = exc
            continue
        if best is None or fit > best[0]:
            best = (fit, candidate)
        if fit >= MIN_TRAIN_FIT:
            break
    if best is None:
        raise ConfigError(f"fastText training failed {MAX_ATTEMPTS} times: {last_error}", hint="try a lower --lr")
    return best[1], best[0], attempts


def _card(out_path: Path, digest: str, seconds: float, hyper: Hyper, attempts: int, train_fit: float,
          sources: list[dict[str, Any]] | None, y: np.ndarray, n_train: int, n_test: int, metrics: dict[str, Any],
          s_test: np.ndarray) -> dict[str, Any]:
    """The model card written beside the model: what it is, how it was trained, how it scores."""
    quantiles = {f"q{int(q * 100):02d}": float(np.quantile(s_test, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)} if n_test else {}
    return {
        "format": "curate-quality-model/1",
        "model_file": out_path.name,
        "sha256": digest,
        "size_bytes": out_path.stat().st_size,
        "labels": {"positive": POS, "negative": NEG},
        "preprocess": PREPROCESS,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "train_seconds": round(seconds, 2),
        "hyper": hyper.as_dict(),
        "train_attempts": attempts,
        "train_fit": round(train_fit, 4),
        "sources": sources or [],
        "documents": {
            "total": int(len(y)), "positive": int(y.sum()), "negative": int((~y).sum()), "train": int(n_train), "heldout": int(n_test),
        },
        "heldout_metrics": metrics,
        "heldout_score_quantiles": quantiles,
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    """The metrics as plain text: accuracy, ROC-AUC and the precision/recall table."""
    if not metrics:
        return "no held-out documents: no metrics"
    lines = [
        f"held-out documents: {metrics['n']} ({metrics['positives']} positive)",
        f"accuracy (score >= 0.5): {metrics['accuracy']:.4f}",
        f"ROC-AUC: {metrics['roc_auc']:.4f}",
        "",
        "threshold  precision  recall  kept",
    ]
    for r in metrics["pr_table"]:
        def f(v: float) -> str:
            return "     -" if v != v else f"{v:6.3f}"

        lines.append(f"{r['threshold']:9.2f}  {f(r['precision']):>9}  {f(r['recall']):>6}  {f(r['kept_fraction']):>6}")
    return "\n".join(lines)
