"""Build a labelled quality set from the quickstart sample (Python 3.11 docs, PSF-2.0), offline.

Label 1 ("keep") = the document passes datatrove's Gopher quality and FineWeb quality rules
(prose-like text); label 0 = it fails one of them (code listings, tables, navigation fragments,
short stubs). A "rule-distilled" set: a classifier trained on it learns a soft, fast version
of those rules. See docs/quality.md for the recipe and its caveats.

    python tests/data/quality/make_labelled.py --out out/pydocs-labelled.jsonl            # all 2,662 docs
    python tests/data/quality/make_labelled.py --out tests/data/quality/pydocs_labelled.jsonl.gz \
        --per-class 250 --max-chars 1500                                                  # the test set
"""

from __future__ import annotations

import argparse
import glob
import gzip
import io
import json
import os
import random

import pyarrow as pa
import zstandard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def read_sample() -> list[dict]:
    docs = []
    for path in sorted(glob.glob(os.path.join(ROOT, "pipelines/examples/data/pydocs-*.jsonl*"))):
        if path.endswith(".gz"):
            f = gzip.open(path, "rt", encoding="utf-8")
        else:
            f = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")), encoding="utf-8")
        with f:
            docs += [json.loads(line) for line in f if line.strip()]
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-class", type=int, default=None, help="sample this many docs per label")
    ap.add_argument("--max-chars", type=int, default=None, help="truncate texts (at a line end) to this length")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from curate.filters.rules import FineWebQuality, GopherQuality
    from curate.pipelines.stages.normalize import Normalize

    docs = read_sample()
    seen: set[str] = set()
    table = pa.table({"id": [d["id"] for d in docs], "text": [d["text"] for d in docs]})
    table = Normalize(Normalize.Params()).process(table).table
    gq = GopherQuality(GopherQuality.Params())
    fw = FineWebQuality(FineWebQuality.Params())
    gq.setup()
    fw.setup()
    ok = ~gq.process(table).drops.mask & ~fw.process(table).drops.mask
    rows = []
    for doc_id, text, label in zip(table.column("id").to_pylist(), table.column("text").to_pylist(), ok.tolist()):
        if text in seen or not text.strip():
            continue
        seen.add(text)
        rows.append({"id": doc_id, "text": text, "label": int(label)})
    rng = random.Random(args.seed)
    if args.per_class:
        pos = [r for r in rows if r["label"] == 1]
        neg = [r for r in rows if r["label"] == 0]
        rows = rng.sample(pos, min(args.per_class, len(pos))) + rng.sample(neg, min(args.per_class, len(neg)))
        rows.sort(key=lambda r: r["id"])
    if args.max_chars:
        for r in rows:
            if len(r["text"]) > args.max_chars:
                cut = r["text"].rfind("\n", 0, args.max_chars)
                r["text"] = r["text"][: cut if cut > 0 else args.max_chars]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    opener = gzip.open if args.out.endswith(".gz") else open
    with opener(args.out, "wt", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(rows)} docs, {sum(r['label'] for r in rows)} labelled 1")


if __name__ == "__main__":
    main()
