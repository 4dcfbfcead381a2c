"""minhash_dedup on the shape that crashed issue 8, scaled down: long documents, large duplicate
clusters (templated pages copied hundreds of times, chains of copies of copies), many candidate
pairs per partition.

The crash was round 2 shipping a document's text once per candidate pair (more than 2 GiB of
text in one reduce partition on 100k documents). These tests fail if that comes back: they bound
what the partitions receive (the stage's ``verify_*`` counters) by the number of *documents*,
not pairs, and check quality against exact Jaccard on the same corpus.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from curate.filters import minhash_core as mc
from curate.filters import minhash_verify as mv
from curate.filters.minhash_dedup import MinHashDedup, MinHashDedupParams
from curate.pipelines.stage import POS
from deltalake import DeltaTable
from helpers import ROOT, run_cli, write_jsonl, write_pipeline
from test_minhash_dedup import batches_of, kept_after, quality, simulate

SAMPLE = ROOT / "pipelines" / "examples" / "data"


@cache
def sentences() -> list[str]:
    out: set[str] = set()
    for path in sorted(SAMPLE.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                for s in re.split(r"(?<=[.!?])\s+", json.loads(line)["text"]):
                    w = s.split()
                    if 6 <= len(w) <= 60:
                        out.add(" ".join(w))
    return sorted(out)


@cache
def shaped_corpus(n: int = 1200, copies: float = 0.3, templates: int = 2, template_share: float = 0.5, seed: int = 8) -> tuple[list[dict[str, str]], dict[tuple[int, int], float]]:
    """`n` ~8 KB documents of random real sentences; a `copies` share of them are copies of
    earlier documents with each word dropped with probability 1/50 (Jaccard ~0.83 with the
    source); a `template_share` of the copies copy one of the first `templates` documents (large
    clusters), the rest any earlier document (chains). Returns the documents and the exact
    Jaccard (word 5-grams) of every pair inside a family (documents with a common ancestor);
    documents of different families share no run of 5 words beyond chance (checked below)."""
    rng = random.Random(seed)
    pool = sentences()
    texts: list[str] = []
    family = np.arange(n)
    is_copy = np.zeros(n, dtype=bool)
    is_copy[templates + np.array(rng.sample(range(n - templates), int(n * copies)))] = True
    for i in range(n):
        if not is_copy[i]:
            size, parts, total = rng.randint(6000, 10000), [], 0
            while total < size:
                s = rng.choice(pool)
                parts.append(s)
                total += len(s) + 1
            texts.append(" ".join(parts))
            continue
        src = rng.randrange(templates) if rng.random() < template_share else rng.randrange(i)
        family[i] = family[src]
        texts.append(" ".join(w for w in texts[src].split(" ") if rng.random() >= 1 / 50))
    ia_l, ib_l = [], []
    for f in np.unique(family):
        members = np.flatnonzero(family == f)
        if len(members) > 1:
            x, y = np.triu_indices(len(members), 1)
            ia_l.append(members[x])
            ib_l.append(members[y])
    ia, ib = np.concatenate(ia_l), np.concatenate(ib_l)
    j = mc.exact_jaccard_pairs(pa.array(texts), ia, ib)
    truth = {(int(a), int(b)): float(v) for a, b, v in zip(ia, ib, j) if v >= 0.5}
    # the claim that families do not mix: random pairs of different families are far apart
    rs = np.random.default_rng(0)
    ra, rb = rs.integers(0, n, 3000), rs.integers(0, n, 3000)
    other = family[ra] != family[rb]
    assert mc.exact_jaccard_pairs(pa.array(texts), ra[other], rb[other]).max() < 0.3
    return [{"id": f"d{i}", "text": t} for i, t in enumerate(texts)], truth


def test_plan_ships_each_text_once_per_partition_and_chunks_large_components() -> None:
    # one component of 7 nodes (a path 0-1-...-6 plus a star on 0), one of 2, with groups of 3
    a = np.array([0, 0, 0, 1, 2, 3, 4, 5, 10], dtype=np.uint64)
    b = np.array([4, 5, 6, 2, 3, 4, 5, 6, 11], dtype=np.uint64)
    a, b = mv.unique_pairs(np.minimum(a, b), np.maximum(a, b))
    plan, stats = mv.plan_checks(a, b, buckets=4, max_group_docs=3, verify=True)
    p = mv.unpack(plan)
    assert stats["large_components"] == 1 and stats["largest_component"] == 7 and stats["groups"] == 1 + 3
    checks = {(int(x), int(y)): (int(k), bool(e), int(part)) for x, y, k, e, part in zip(p["a"], p["b"], p["kind"], p["exact"], p["part"])}
    # every member of the large component is checked against its representative (node 0) ...
    assert {y for (x, y), (k, _, _) in checks.items() if x == 0 and k in (mv.CAND, mv.REP)} == {1, 2, 3, 4, 5, 6}
    # ... chunks {0,1,2} {3,4,5} {6}: pairs inside a chunk exactly, across chunks by the estimate
    assert checks[(1, 2)][:2] == (mv.CAND, True) and checks[(4, 5)][:2] == (mv.CAND, True)
    assert checks[(2, 3)][:2] == (mv.CROSS, False) and checks[(5, 6)][:2] == (mv.CROSS, False)
    assert checks[(0, 4)][:2] == (mv.REP, True)  # a candidate pair across chunks with the representative: exact
    assert checks[(10, 11)][:2] == (mv.CAND, True)
    # what travels: each (node, partition) once; texts only where an exact check needs them
    need = list(zip(p["need_node"].tolist(), p["need_part"].tolist()))
    assert len(need) == len(set(need))
    for (x, y), (_, e, part) in checks.items():
        for node in (x, y):
            k = need.index((node, part))
            assert p["need_text"][k] if e else p["need_sig"][k]
    # the representative's text goes to each chunk's partition, nothing goes anywhere twice
    assert stats["planned_text_rows"] <= stats["candidate_docs"] + stats["groups"]
    # the plan does not depend on the number of partitions (same checks, same exact/estimate)
    plan1, _ = mv.plan_checks(a, b, buckets=1, max_group_docs=3, verify=True)
    p1 = mv.unpack(plan1)
    assert {(int(x), int(y), bool(e)) for x, y, e in zip(p1["a"], p1["b"], p1["exact"])} == {(x, y, v[1]) for (x, y), v in checks.items()}
    # verify: false estimates everything
    pe = mv.unpack(mv.plan_checks(a, b, buckets=4, max_group_docs=3, verify=False)[0])
    assert not pe["exact"].any() and not pe["need_text"].any()


def test_num_buckets_follows_the_data_size() -> None:
    s = MinHashDedup(MinHashDedupParams())
    assert s.num_buckets(1000, 1 << 20, 2) == 8
    assert s.num_buckets(1000, 1 << 20, 16) == 64
    assert s.num_buckets(300_000, 2_400_000_000, 2) == 32  # ~128 MiB of input per partition
    assert s.num_buckets(3_000_000, 24_000_000_000, 2) == 256


def test_long_documents_large_clusters_bounded_shipping_and_quality() -> None:
    docs, truth = shaped_corpus()
    n = len(docs)
    assert sum(1 for v in truth.values() if v >= 0.8) >= 300
    sizes = [len(d["text"]) for d in docs]
    buckets, group = 8, 32
    stage = MinHashDedup(MinHashDedupParams(max_group_docs=group))
    drops = simulate(stage, batches_of(docs, 100), buckets=buckets)
    st = stage.metadata()
    recall, precision = quality(drops, truth, n)
    assert recall >= 0.97 and precision >= 0.97, (recall, precision, st)
    # the shape is the one that crashed: large clusters, many candidate pairs per partition
    assert st["largest_component"] > 3 * group and st["large_components"] >= 2, st
    assert st["candidate_pairs"] / buckets >= 300, st
    assert st["planned_checks"]["representative"] > 0 and st["planned_checks"]["cross_chunk"] > 0, st
    # shipping is bounded by documents, not pairs: each text at most once per partition ...
    assert st["verify_rows"] == st["planned_text_rows"] + st["planned_sig_rows"], st
    assert st["planned_text_rows"] <= st["candidate_docs"] + st["groups"], st
    # ... so far less than the per-pair shipping of the old design (2 texts per candidate pair)
    mean = float(np.mean(sizes))
    assert st["verify_text_bytes"] <= 0.1 * 2 * st["candidate_pairs"] * mean, st
    # ... and no partition gets much more than its share plus one group
    share = st["candidate_docs"] / buckets
    assert st["verify_max_partition_rows"] <= 1.2 * share + group + st["groups"], st
    assert st["verify_max_partition_text_bytes"] <= (1.2 * share + group + st["groups"]) * max(sizes), st
    # the same kept set whatever the partitions and batches
    again = simulate(MinHashDedup(MinHashDedupParams(max_group_docs=group)), batches_of(docs, 333), buckets=1)
    assert again.equals(drops)
    # large groups (no chunking): exact checks only, the same quality
    whole = MinHashDedup(MinHashDedupParams())
    drops_whole = simulate(whole, batches_of(docs, 100), buckets=buckets)
    assert whole.metadata()["planned_checks"]["cross_chunk"] == 0
    wm = whole.metadata()
    assert wm["checked_exactly"] == wm["checked_pairs"]
    # large clusters do not explode into all their pairs: members are checked against the
    # representative, pairs of two matching members are skipped
    assert wm["planned_checks"]["representative"] > 0 and wm["skipped_pairs"] > 0.5 * wm["candidate_pairs"], wm
    assert wm["checked_pairs"] + wm["skipped_pairs"] == wm["candidate_pairs"] + wm["planned_checks"]["representative"] - (
        wm["candidate_pairs"] - wm["planned_checks"]["candidate"]
    ), wm
    r2, p2 = quality(drops_whole, truth, n)
    assert r2 >= 0.97 and p2 == 1.0, (r2, p2)
    # every dropped document names a kept one
    kept_ids = {docs[i]["id"] for i in np.flatnonzero(kept_after(n, drops))}
    assert set(drops.column("duplicate_of").to_pylist()) <= kept_ids


PIPELINE = """\
input:
  format: jsonl
  paths: [data/*.jsonl]
  read_batch_rows: {batch}
stages:
  - minhash_dedup: {{max_group_docs: 64}}
output:
  dataset: {out}
  keep_dropped: true
ray:
  num_cpus: {cpus}
"""


@pytest.mark.slow
def test_curate_run_on_the_shaped_corpus_one_and_two_workers(tmp_path: Path) -> None:
    docs, truth = shaped_corpus()
    write_jsonl(tmp_path / "data" / "a.jsonl", docs[:600])
    write_jsonl(tmp_path / "data" / "b.jsonl", docs[600:])
    got = {}
    for name, cpus, batch in (("two", 2, 100), ("one", 1, 5000)):
        write_pipeline(tmp_path / f"{name}.yaml", PIPELINE.format(batch=batch, out=f"out/{name}", cpus=cpus))
        res = run_cli("run", f"{name}.yaml", "--no-progress", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        df = pl.read_delta(str(tmp_path / f"out/{name}.dropped"))
        got[name] = dict(zip(df["id"], df["duplicate_of"]))
        meta = json.loads(DeltaTable(str(tmp_path / f"out/{name}")).history()[0]["curate.run"])
        st = meta["stage_metadata"]["minhash_dedup"]
        assert st["verify_rows"] == st["planned_text_rows"] + st["planned_sig_rows"], st
        assert st["planned_text_rows"] <= st["candidate_docs"] + st["groups"], st
    assert got["one"] == got["two"] and len(got["one"]) > 200
    index = {d["id"]: i for i, d in enumerate(docs)}
    drops = pa.table({POS: pa.array(sorted(index[k] for k in got["one"]), pa.int64())})
    recall, precision = quality(drops, truth, len(docs))
    assert recall >= 0.97 and precision >= 0.97, (recall, precision)
