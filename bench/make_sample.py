#!/usr/bin/env python3
"""Build the quickstart sample in pipelines/examples/data/ from the Python 3.11 documentation.

Source: the Debian package ``python3.11-doc`` (HTML under /usr/share/doc/python3.11/html),
PSF License Version 2 (code examples: Zero-Clause BSD). Install it with
``apt-get update && apt-get install -y python3.11-doc``.

What it writes (deterministic for a given package version and --seed):
  pydocs-0.jsonl.gz, pydocs-1.jsonl.gz, pydocs-2.jsonl.zst
    one JSON object per line: {"id": "...", "text": "...", "source": "..."}

How documents are made:
  * every HTML page (not indexes / search / _sources) is parsed with lxml; the main body
    (div role=main) is cut into one document for the page's introduction plus one per section
    (sections longer than --max-chars are cut further into their subsections);
  * text is taken the way a quick scraper would: lxml text_content() after marking block
    elements with newlines, *without* cleaning, so the source HTML's indentation, runs of blank
    lines, trailing spaces and no-break spaces survive ("messy whitespace");
  * short documents: real navigation fragments of the same pages (sidebar "Previous topic" /
    "Next topic" / "This Page" boxes, the "Navigation" bar, the page title on its own), as a
    scraper that also kept the page chrome would produce; many are under 50 characters;
  * exact duplicates: some documents are repeated (within a file and across files) either
    byte-identical or as variants that only become identical after normalisation: CRLF line
    endings, tabs/no-break spaces/extra blank lines/trailing spaces, Unicode NFD instead of NFC,
    stray control characters (NUL, BEL, BS, VT, FF, ESC, DEL, NEL);
  * a few other documents get a stray control character or CRLF line endings too.

At the end it recomputes the properties from the written files (with bench/common.normalize_text,
the reference of curate's ``normalize``) and prints them as JSON; pipelines/examples/data/README.md
quotes those numbers.

usage: python bench/make_sample.py [--out pipelines/examples/data] [--seed 7] [--docs 2200]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import io
import json
import os
import random
import re
import sys
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, normalize_text  # noqa: E402

HTML_ROOT = Path("/usr/share/doc/python3.11/html")
BASE_URL = "https://docs.python.org/3.11/"
SKIP_DIRS = {"_sources", "_static", "_images", "_downloads"}
SKIP_FILE = re.compile(r"^(genindex.*|search|py-modindex|contents|index)\.html$")
BLOCK = {"p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "tr", "dd", "dt",
         "dl", "table", "section", "blockquote", "td", "th", "caption"}
CONTROL = ["\x00", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85"]
FILES = ["pydocs-0.jsonl.gz", "pydocs-1.jsonl.gz", "pydocs-2.jsonl.zst"]


def list_pages() -> list[Path]:
    out = []
    for dp, dns, fns in os.walk(HTML_ROOT):
        dns[:] = sorted(d for d in dns if d not in SKIP_DIRS)
        for fn in sorted(fns):
            if fn.endswith(".html") and not SKIP_FILE.match(fn):
                out.append(Path(dp) / fn)
    return out


def raw_text(el) -> str:
    """text_content() with newlines around block elements; no whitespace cleaning at all."""
    from copy import deepcopy

    el = deepcopy(el)
    for a in el.xpath(".//a[contains(@class,'headerlink')]"):
        a.drop_tree()
    for e in el.iter():
        tag = e.tag.lower() if isinstance(e.tag, str) else ""
        if tag in BLOCK:
            e.text = "\n" + (e.text or "")
            e.tail = "\n" + (e.tail or "")
        elif tag == "br":
            e.tail = "\n" + (e.tail or "")
    return el.text_content()


def page_docs(path: Path, max_chars: int):
    """Yield (anchor, text) documents of one page and a list of its nav fragments."""
    from lxml import html as LH

    tree = LH.fromstring(path.read_bytes())
    body = tree.xpath("//div[@role='main']")
    frags = []
    for box in tree.xpath("//div[@class='sphinxsidebarwrapper']/div"):
        h = box.xpath("./h3|./h4")
        if h and h[0].text_content().strip() in ("Previous topic", "Next topic", "This Page"):
            frags.append(raw_text(box))
    rel = tree.xpath("//div[@class='related']")
    if rel:
        frags.append(raw_text(rel[0]))
    for h1 in tree.xpath("//div[@role='main']//h1")[:1]:  # the page title block on its own
        frags.append(raw_text(h1))
    if not body:
        return [], frags
    body = body[0]
    top = body.xpath("./section")
    docs = []

    def cut(sec, depth):
        """One doc for the section's own content before its first subsection, one per subsection."""
        text = raw_text(sec)
        sid = sec.get("id") or ""
        if len(text) <= max_chars or depth >= 3:
            docs.append((sid, text))
            return
        subs = sec.xpath("./section")
        if not subs:
            docs.append((sid, text))
            return
        from copy import deepcopy

        head = deepcopy(sec)
        for s in head.xpath("./section"):
            s.drop_tree()
        docs.append((sid, raw_text(head)))
        for s in subs:
            cut(s, depth + 1)

    if not top:
        docs.append(("", raw_text(body)))
    for sec in top:
        cut(sec, 0)
    return docs, frags


# ----------------------------------------------------------------------------- variants

def v_crlf(t: str, rng: random.Random) -> str:
    return t.replace("\n", "\r\n")


def v_whitespace(t: str, rng: random.Random) -> str:
    lines = t.split("\n")
    out = []
    for ln in lines:
        r = rng.random()
        if r < 0.15:
            ln = ln + rng.choice(["  ", "\t", " \u00a0", "   "])
        elif r < 0.25:
            ln = ln.replace(" ", rng.choice(["  ", "\t", "\u00a0", " \u2009"]), 2)
        out.append(ln)
        if rng.random() < 0.05:
            out.extend([""] * rng.randint(1, 3))
    return rng.choice(["", "\n", "  \n", "\t"]) + "\n".join(out) + rng.choice(["", "\n\n", " \n \n"])


def v_nfd(t: str, rng: random.Random) -> str:
    return unicodedata.normalize("NFD", t)


def v_control(t: str, rng: random.Random) -> str:
    # put control chars after spaces / newlines only (never next to a combining mark)
    pos = [m.start() for m in re.finditer(r"[ \n]", t)]
    for p in sorted(rng.sample(pos, min(len(pos), rng.randint(1, 4))), reverse=True):
        t = t[:p] + rng.choice(CONTROL) + t[p:]
    return t


VARIANTS = {"crlf": v_crlf, "whitespace": v_whitespace, "nfd": v_nfd, "control": v_control}


def has_decomposable(t: str) -> bool:
    return unicodedata.normalize("NFD", t) != t


# ----------------------------------------------------------------------------- writing

_ESCAPE = re.compile("[\x7f-\x9f\u2028\u2029]")


def dumps(row: dict) -> str:
    """UTF-8 JSON, but DEL, C1 controls and U+2028/9 escaped: a JSONL line must not contain
    characters that some line splitters (str.splitlines) treat as line breaks."""
    return _ESCAPE.sub(lambda m: "\\u%04x" % ord(m.group()), json.dumps(row, ensure_ascii=False))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    data = "".join(dumps(r) + "\n" for r in rows).encode("utf-8")
    if path.suffix == ".gz":
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as g:
            g.write(data)
        path.write_bytes(buf.getvalue())
    elif path.suffix == ".zst":
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor(level=19).compress(data))
    else:
        path.write_bytes(data)


def read_jsonl(path: Path) -> list[dict]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    elif path.suffix == ".zst":
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
    return [json.loads(line) for line in raw.decode("utf-8").split("\n") if line]


def properties(out: Path, min_chars: int = 50) -> dict:
    """Recompute the sample's properties from the written files."""
    rows = []
    for fi, name in enumerate(FILES):
        for r in read_jsonl(out / name):
            rows.append((fi, r))
    texts = [r["text"] for _, r in rows]
    norm = [normalize_text(t) for t in texts]
    p: dict = {"files": {name: sum(1 for fi, _ in rows if fi == i) for i, name in enumerate(FILES)}}
    p["bytes_compressed"] = sum((out / n).stat().st_size for n in FILES)
    p["bytes_text_utf8"] = sum(len(t.encode()) for t in texts)
    p["docs"] = len(rows)
    p["unique_ids"] = len({r["id"] for _, r in rows})
    p["short_docs_raw_lt50"] = sum(1 for t in texts if len(t) < 50)
    p[f"short_docs_normalized_lt{min_chars}"] = sum(1 for t in norm if len(t) < min_chars)
    p["empty_after_normalize"] = sum(1 for t in norm if not t)
    p["docs_changed_by_normalize"] = sum(1 for a, b in zip(texts, norm) if a != b)
    p["docs_with_control_chars"] = sum(1 for t in texts if re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", t))
    p["docs_with_cr"] = sum(1 for t in texts if "\r" in t)
    p["docs_not_nfc"] = sum(1 for t in texts if unicodedata.normalize("NFC", t) != t)

    def groups(keys):
        g = collections.defaultdict(list)
        for i, k in enumerate(keys):
            g[k].append(i)
        return [v for v in g.values() if len(v) > 1]

    raw_g = groups(texts)
    norm_g = groups(norm)
    p["raw_identical_groups"] = len(raw_g)
    p["raw_identical_removable"] = sum(len(v) - 1 for v in raw_g)
    p["exact_dup_groups"] = len(norm_g)  # identical after normalize
    p["exact_dup_removed"] = sum(len(v) - 1 for v in norm_g)
    p["exact_dup_groups_only_after_normalize"] = sum(1 for v in norm_g if len({texts[i] for i in v}) > 1)
    p["exact_dup_groups_cross_file"] = sum(1 for v in norm_g if len({rows[i][0] for i in v}) > 1)
    p["exact_dup_groups_within_one_file"] = sum(1 for v in norm_g if len({rows[i][0] for i in v}) == 1)
    p["exact_dup_groups_short_lt50"] = sum(1 for v in norm_g if len(norm[v[0]]) < 50)
    p["exact_dup_group_max_size"] = max((len(v) for v in norm_g), default=0)
    p["docs_after_exact_dedup"] = len(rows) - p["exact_dup_removed"]
    # quickstart: normalize -> length_filter(min_chars) -> exact_dedup
    long_norm = [t for t in norm if len(t) >= min_chars]
    p[f"docs_after_normalize_length{min_chars}_dedup"] = len(set(long_norm))
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "pipelines/examples/data"))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--docs", type=int, default=2200, help="base (distinct) section documents to sample")
    ap.add_argument("--max-chars", type=int, default=12000, help="cut sections longer than this into subsections")
    ap.add_argument("--short", type=int, default=240, help="navigation-fragment documents")
    ap.add_argument("--dup-sources", type=int, default=120, help="documents that get duplicates")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)

    if not HTML_ROOT.is_dir():
        sys.exit(f"{HTML_ROOT} missing: apt-get update && apt-get install -y python3.11-doc")
    pages = list_pages()
    pool, frags = [], []
    for pg in pages:
        rel = pg.relative_to(HTML_ROOT).as_posix()
        docs, fr = page_docs(pg, a.max_chars)
        for anchor, text in docs:
            if len(text.split()) >= 5:
                pool.append((rel, anchor, text))
        frags.extend((rel, f) for f in fr)
    print(f"{len(pages)} pages -> {len(pool)} section docs, {len(frags)} nav fragments", file=sys.stderr)

    base = [pool[i] for i in sorted(rng.sample(range(len(pool)), min(a.docs, len(pool))))]
    shorts = [frags[i] for i in sorted(rng.sample(range(len(frags)), min(a.short, len(frags))))]

    # records: (source_url, text, kind)
    recs = [(BASE_URL + rel + (f"#{anc}" if anc else ""), text, "base") for rel, anc, text in base]
    recs += [(BASE_URL + rel, text, "nav") for rel, text in shorts]

    # a few stray control chars / CRLF pages among the originals
    for i in rng.sample(range(len(recs)), 40):
        u, t, k = recs[i]
        recs[i] = (u, v_control(t, rng) if i % 2 else v_crlf(t, rng), k)

    # duplicates: copies of base docs, byte-identical or variants equal after normalisation
    base_idx = [i for i, r in enumerate(recs) if r[2] == "base" and len(r[1]) < 20000]
    nfd_idx = [i for i in base_idx if has_decomposable(recs[i][1])]
    src = rng.sample(base_idx, a.dup_sources)
    src += rng.sample([i for i in nfd_idx if i not in src], min(12, len([i for i in nfd_idx if i not in src])))
    copies = []
    for i in src:
        u, t, _ = recs[i]
        ncopy = 1 if rng.random() < 0.7 else rng.randint(2, 4)
        for _ in range(ncopy):
            kind = rng.choice(["exact", "exact", "crlf", "whitespace", "control"])
            if has_decomposable(t) and rng.random() < 0.6:
                kind = "nfd"
            ct = t if kind == "exact" else VARIANTS[kind](t, rng)
            copies.append((u, ct, "dup-" + kind))
    recs += copies

    # shuffle, then deal into files; keep ids stable and unique
    rng.shuffle(recs)
    sizes = [len(recs) * 40 // 100, len(recs) * 35 // 100]
    sizes.append(len(recs) - sum(sizes))
    start = 0
    for fi, (name, n) in enumerate(zip(FILES, sizes)):
        rows = [{"id": f"pydocs-{fi}-{k:05d}", "text": t, "source": u}
                for k, (u, t, _) in enumerate(recs[start:start + n])]
        start += n
        write_jsonl(out / name, rows)
    kinds = collections.Counter(k for _, _, k in recs)
    print(f"planted: {dict(kinds)}; duplicated sources: {len(src)} ({len(nfd_idx)} with decomposable chars)",
          file=sys.stderr)
    print(json.dumps(properties(out), indent=2))


if __name__ == "__main__":
    main()
