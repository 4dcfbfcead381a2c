"""``curate quality``: train and inspect fastText quality classifiers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
from curate.pipelines.errors import ConfigError, CurateError

FORMATS = ("auto", "jsonl", "parquet", "delta", "text")


def _fail(message: str, hint: str | None = None, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"  hint: {hint}", err=True)
    sys.exit(code)


def _format_of(path: str, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    base, sep, version = path.rpartition("@")
    if sep and version.isdigit() and (Path(base) / "_delta_log").is_dir():
        return "delta"
    p = Path(path)
    if p.is_dir():
        return "delta" if (p / "_delta_log").is_dir() else "jsonl"
    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    if low.endswith((".txt", ".md", ".rst", ".text")):
        return "text"
    return "jsonl"


def _read(path: str, fmt: str, text_field: str, label_field: str | None, opt: str, limit: int | None) -> tuple[list[str], list[Any]]:
    """Texts (and label values) of one source, read with curate's own readers."""
    from curate.pipelines.config import InputConfig
    from curate.pipelines.readers import plan_inputs, read_task, split_tasks

    fmt = _format_of(path, fmt)
    if fmt != "delta" and not any(c in path for c in "*?[") and not Path(path).exists():
        raise ConfigError(f"{opt} {path}: file not found")
    cfg = InputConfig(
        format=fmt,  # type: ignore[arg-type]
        paths=[path],
        text_field=text_field,
        keep_fields=[label_field] if label_field else [],
    )
    texts: list[str] = []
    labels: list[Any] = []
    for task in split_tasks(plan_inputs(cfg, opt), cfg, split_bytes=1 << 62):
        for table in read_task(task, cfg):
            texts += table.column("text").to_pylist()
            if label_field:
                labels += table.column(label_field).to_pylist()
            if limit is not None and len(texts) >= limit:
                return texts[:limit], labels[:limit]
    return texts, labels


def _label_bool(values: list[Any], positive: str | None, where: str, key: str) -> tuple[np.ndarray, str]:
    missing = sum(v is None for v in values)
    if missing == len(values):
        raise ConfigError(f"{where}: no record has the label key {key!r}", hint="name the label column with --label-field")
    if missing:
        raise ConfigError(f"{where}: {missing} of {len(values)} records lack the label key {key!r}")
    as_str = [str(v).strip().lower() if not isinstance(v, bool) else str(v).lower() for v in values]
    distinct = sorted(set(as_str))
    if len(distinct) > 2:
        raise ConfigError(f"{where}: {key!r} has {len(distinct)} distinct values ({', '.join(distinct[:10])}); a binary label is needed")
    if positive is None:
        for pos, neg in (("1", "0"), ("true", "false"), ("pos", "neg"), ("positive", "negative"), ("hq", "lq"), ("good", "bad"), ("keep", "drop")):
            if set(distinct) <= {pos, neg}:
                positive = pos
                break
        else:
            raise ConfigError(
                f"{where}: cannot tell which value of {key!r} is the positive (keep) label; values: {', '.join(distinct[:10])}",
                hint="pass --positive-label VALUE",
            )
    positive = positive.strip().lower()
    if positive not in distinct:
        raise ConfigError(f"{where}: --positive-label {positive!r} is not a value of {key!r} (values: {', '.join(distinct)})")
    return np.array([v == positive for v in as_str], dtype=bool), positive


@click.group(name="quality", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def quality() -> None:
    """Train and inspect fastText quality classifiers for the quality_classifier stage.

    \b
    A classifier scores a document with P(keep). Train one from labelled documents:
      curate quality train --data labelled.jsonl --label-field label -o model.ftz
      curate quality train --positive good/*.jsonl --negative out/web.dropped -o model.ftz
    then use it in a pipeline:
      - quality_classifier: {model: model.ftz, threshold: 0.5}

    Training holds out part of the data and reports accuracy, ROC-AUC and a precision/recall
    table; the model file's SHA-256 goes into a model card MODEL.json beside it.
    Recipe for an offline, licence-clean training set: docs/quality.md.
    """


_source_help = (
    "Source of documents: a JSONL (.jsonl/.gz/.zst), Parquet or text file, a glob, or a curate "
    "dataset (Delta table folder, optionally PATH@VERSION). Repeatable."
)


def _training_data(data: tuple[str, ...], positive: tuple[str, ...], negative: tuple[str, ...], fmt: str, text_field: str,
                   label_field: str, positive_label: str | None, max_docs: int | None) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
    """The documents, their labels (True: keep) and where they come from; both classes needed."""
    texts: list[str] = []
    labels: list[bool] = []
    sources: list[dict[str, Any]] = []
    for path in data:
        t, raw = _read(path, fmt, text_field, label_field, "--data", max_docs)
        if not t:
            raise ConfigError(f"--data {path}: no documents")
        y, pos_value = _label_bool(raw, positive_label, f"--data {path}", label_field)
        texts += t
        labels += y.tolist()
        sources.append({"path": path, "kind": "labelled", "label_field": label_field, "positive_label": pos_value, "documents": len(t), "positive": int(y.sum())})
    for kind, paths in (("positive", positive), ("negative", negative)):
        for path in paths:
            t, _ = _read(path, fmt, text_field, None, f"--{kind}", max_docs)
            if not t:
                raise ConfigError(f"--{kind} {path}: no documents")
            texts += t
            labels += [kind == "positive"] * len(t)
            sources.append({"path": path, "kind": kind, "documents": len(t)})
    y_all = np.array(labels, dtype=bool)
    if y_all.all() or not y_all.any():
        which = "negative" if y_all.all() else "positive"
        raise ConfigError(f"the training data has no {which} documents: both classes are needed")
    return texts, y_all, sources


@quality.command()
@click.option("--data", "data", multiple=True, metavar="PATH", help=_source_help + " Rows carry a label (--label-field).")
@click.option("--label-field", default="label", show_default=True, help="Key/column of --data holding the label.")
@click.option(
    "--positive-label",
    default=None,
    metavar="VALUE",
    help="Label value meaning 'keep' (default: guessed for 1/0, true/false, pos/neg, hq/lq, good/bad, keep/drop).",
)
@click.option("--positive", "positive", multiple=True, metavar="PATH", help=_source_help + " Every document is a positive (keep).")
@click.option("--negative", "negative", multiple=True, metavar="PATH", help=_source_help + " Every document is a negative.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True, help="Format of every source (auto: by suffix; folders with _delta_log are datasets).")
@click.option("--text-field", default="text", show_default=True, help="Key/column holding the text.")
@click.option("--max-docs", type=click.IntRange(min=1), default=None, help="Read at most this many documents per source.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (.ftz when quantised, else .bin); the card goes to OUTPUT.json.")
@click.option("--holdout", type=click.FloatRange(0.0, 0.9), default=0.2, show_default=True, help="Fraction held out (stratified) for the metrics.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and of fastText.")
@click.option("--epoch", type=click.IntRange(min=1), default=10, show_default=True, help="fastText epochs.")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=0.5, show_default=True, help="fastText learning rate.")
@click.option("--dim", type=click.IntRange(min=1), default=32, show_default=True, help="Embedding dimension.")
@click.option("--word-ngrams", type=click.IntRange(1, 5), default=2, show_default=True, help="Word n-gram length.")
@click.option("--min-count", type=click.IntRange(min=1), default=2, show_default=True, help="Ignore words rarer than this.")
@click.option("--bucket", type=click.IntRange(min=1), default=200_000, show_default=True, help="Hash buckets for word n-grams.")
@click.option("--quantize/--no-quantize", default=True, show_default=True, help="Quantise (small .ftz file, about 1% less accurate).")
@click.option("--cutoff", type=click.IntRange(min=1), default=20_000, show_default=True, help="Quantised models keep this many words and n-grams (smaller file).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Training threads (1 is reproducible).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="PR-curve PNG to write (default: OUTPUT.pr.png; '-' for none).")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics and card as JSON.")
def train(
    data: tuple[str, ...],
    label_field: str,
    positive_label: str | None,
    positive: tuple[str, ...],
    negative: tuple[str, ...],
    fmt: str,
    text_field: str,
    max_docs: int | None,
    output: str,
    holdout: float,
    seed: int,
    epoch: int,
    lr: float,
    dim: int,
    word_ngrams: int,
    min_count: int,
    bucket: int,
    quantize: bool,
    cutoff: int,
    threads: int,
    plot: str | None,
    as_json: bool,
) -> None:
    """Train a fastText quality classifier from labelled documents.

    Give labelled data with --data (a label column), or documents to keep with --positive and
    documents to drop with --negative (both may be combined). A stratified --holdout split is
    kept out of training; the command prints accuracy, ROC-AUC and a precision/recall table for
    it, writes a precision/recall curve (PNG) and the model card OUTPUT.json with the model's
    SHA-256.

    \b
    Examples:
      curate quality train --data labelled.jsonl -o models/quality.ftz
      curate quality train --data train.parquet --label-field is_good --positive-label yes -o q.ftz
      curate quality train --positive ref/*.jsonl.gz --negative out/web.dropped -o q.ftz

    \b
    Exit codes:
      0  trained
      2  bad arguments or unusable data (the message names the file and key)
    """
    from .quality_model import Hyper, format_metrics, plot_pr
    from .quality_model import train as train_model

    if not data and not (positive or negative):
        raise click.UsageError("give --data PATH (labelled), or --positive PATH and --negative PATH")
    if bool(positive) != bool(negative) and not data:
        raise click.UsageError("--positive and --negative go together (or add --data with both labels)")
    try:
        texts, y_all, sources = _training_data(data, positive, negative, fmt, text_field, label_field, positive_label, max_docs)
        hyper = Hyper(epoch=epoch, lr=lr, dim=dim, word_ngrams=word_ngrams, min_count=min_count, bucket=bucket, threads=threads, seed=seed, quantize=quantize, cutoff=cutoff)
        result = train_model(texts, y_all, output, holdout=holdout, hyper=hyper, sources=sources)
    except CurateError as exc:
        _fail(exc.message, exc.hint, exc.exit_code)
        return
    plot_path = None
    if plot != "-" and len(result.y_test):
        plot_path = plot or output + ".pr.png"
        plot_pr(result.y_test, result.s_test, plot_path, f"{Path(output).name}: held-out precision/recall")
    if as_json:
        click.echo(json.dumps({"model": output, "sha256": result.sha256, "plot": plot_path, "card": result.card}, indent=2))
        return
    docs = result.card["documents"]
    click.echo(f"trained on {docs['train']} documents ({docs['positive']} positive / {docs['negative']} negative in all), held out {docs['heldout']}")
    click.echo(format_metrics(result.metrics))
    click.echo("")
    click.echo(f"model: {output} ({result.card['size_bytes']:,} bytes)")
    click.echo(f"sha256: {result.sha256}")
    click.echo(f"card: {output}.json")
    if plot_path:
        click.echo(f"PR curve: {plot_path}")


@quality.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", "data", multiple=True, metavar="PATH", help=_source_help + " Rows carry a label (--label-field).")
@click.option("--label-field", default="label", show_default=True, help="Key/column of --data holding the label.")
@click.option("--positive-label", default=None, metavar="VALUE", help="Label value meaning 'keep' (guessed for common pairs).")
@click.option("--positive", "positive", multiple=True, metavar="PATH", help=_source_help + " Every document is a positive.")
@click.option("--negative", "negative", multiple=True, metavar="PATH", help=_source_help + " Every document is a negative.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True, help="Format of every source.")
@click.option("--text-field", default="text", show_default=True, help="Key/column holding the text.")
@click.option("--max-docs", type=click.IntRange(min=1), default=None, help="Read at most this many documents per source.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Write the PR curve to this PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def evaluate(
    model: str,
    data: tuple[str, ...],
    label_field: str,
    positive_label: str | None,
    positive: tuple[str, ...],
    negative: tuple[str, ...],
    fmt: str,
    text_field: str,
    max_docs: int | None,
    plot: str | None,
    as_json: bool,
) -> None:
    """Measure MODEL on labelled documents: accuracy, ROC-AUC, precision/recall table.

    Sources are given as for `curate quality train` (--data with a label column, or
    --positive/--negative). Nothing is trained or written except the optional --plot.
    """
    from . import _fasttext
    from .quality_model import evaluate as evaluate_scores
    from .quality_model import format_metrics, plot_pr, score

    if not data and not (positive or negative):
        raise click.UsageError("give --data PATH (labelled), or --positive PATH and/or --negative PATH")
    try:
        if not Path(model).is_file():
            raise ConfigError(f"MODEL {model}: file not found")
        texts: list[str] = []
        labels: list[bool] = []
        for path in data:
            t, raw = _read(path, fmt, text_field, label_field, "--data", max_docs)
            y, _ = _label_bool(raw, positive_label, f"--data {path}", label_field)
            texts += t
            labels += y.tolist()
        for kind, paths in (("positive", positive), ("negative", negative)):
            for path in paths:
                t, _ = _read(path, fmt, text_field, None, f"--{kind}", max_docs)
                texts += t
                labels += [kind == "positive"] * len(t)
        if not texts:
            raise ConfigError("the sources hold no documents")
        try:
            m = _fasttext.load_model(model)
        except ValueError as exc:
            raise ConfigError(f"MODEL {model}: not a fastText model ({exc})") from None
        s = score(m, texts)
    except CurateError as exc:
        _fail(exc.message, exc.hint, exc.exit_code)
        return
    y_all = np.array(labels, dtype=bool)
    metrics = evaluate_scores(y_all, s)
    if plot:
        plot_pr(y_all, s, plot, f"{Path(model).name}: precision/recall")
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
    else:
        click.echo(format_metrics(metrics))


@quality.command()
@click.argument("model", type=click.Path(dir_okay=False))
def info(model: str) -> None:
    """Print MODEL's SHA-256, labels and model card (training sources, metrics)."""
    from . import _fasttext
    from .quality_model import read_card

    if not Path(model).is_file():
        _fail(f"MODEL {model}: file not found")
    digest = _fasttext.sha256_file(model)
    card = read_card(model)
    try:
        labels = _fasttext.load_model(model).get_labels()
    except ValueError as exc:
        _fail(f"MODEL {model}: not a fastText model ({exc})")
        return
    click.echo(f"model: {model} ({Path(model).stat().st_size:,} bytes)")
    click.echo(f"sha256: {digest}")
    click.echo(f"labels: {', '.join(labels)}")
    if card is None:
        click.echo("card: none (not trained by curate quality train)")
        return
    status = "matches" if card.get("sha256") == digest else f"DOES NOT MATCH (card says {card.get('sha256')})"
    click.echo(f"card: {model}.json, hash {status}")
    click.echo(json.dumps({k: v for k, v in card.items() if k != "sha256"}, indent=2))
