"""minhash_dedup: quality on planted near-duplicates of real text (exact-Jaccard ground truth),
determinism, keep policies, incremental dedup against a saved index, and end-to-end runs through
`curate run` on local Ray and on a two-node local Ray cluster.

The in-process tests drive the stage through the same keys -> hash partition -> reduce -> resolve
rounds as the Ray adapter (``simulate``), with a pickled copy of the stage standing in for a
worker; the CLI tests check that Ray gives the same result.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import tarfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from curate.filters import minhash_core as mc
from curate.filters.minhash_dedup import OLD_BIT, MinHashDedup, MinHashDedupParams, bucket_pairs
from curate.pipelines.execution.shuffle import run_global_local
from curate.pipelines.stage import DROP_COLUMNS, POS
from deltalake import DeltaTable
from helpers import ROOT, local_ray_cluster, need_data, run_cli, write_jsonl, write_pipeline

EVALDATA = Path(__file__).resolve().parent / "data" / "evaldata"
NEARDUP = EVALDATA / "neardup"
SAMPLE = ROOT / "pipelines" / "examples" / "data"


# ---------------------------------------------------------------- planted corpus from real text


def _edit(rng: random.Random, words: list[str], vocab: list[str]) -> list[str]:
    """A copy with 1-10 % (log-uniform) of word positions inserted / deleted / swapped /
    substituted, and in a quarter of the copies truncated to 80-97 % of its words."""
    w = list(words)
    for _ in range(max(1, round(len(w) * 10 ** rng.uniform(-2, -1)))):
        j = rng.randrange(len(w))
        op = rng.random()
        if op < 0.25:
            w.insert(j, rng.choice(vocab))
        elif op < 0.5 and len(w) > 10:
            del w[j]
        elif op < 0.75 and j + 1 < len(w):
            w[j], w[j + 1] = w[j + 1], w[j]
        else:
            w[j] = rng.choice(vocab)
    if rng.random() < 0.25:
        w = w[: max(10, round(len(w) * rng.uniform(0.8, 0.97)))]
    return w


@cache
def planted() -> tuple[list[dict[str, str]], dict[tuple[int, int], float]]:
    """1,100 documents: 700 real pages of the quickstart sample (Python docs) and 400 edited
    copies, shuffled; and every pair's exact Jaccard >= 0.5 (word 5-grams), by row index."""
    texts: list[str] = []
    seen: set[str] = set()
    for path in sorted(SAMPLE.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                t = json.loads(line)["text"]
                if len(t.split()) >= 80 and t not in seen:
                    seen.add(t)
                    texts.append(t)
    rng = random.Random(4)
    base = texts[:700]
    vocab = sorted({w for t in base[:50] for w in t.split()})
    docs = [{"id": f"p{i}", "text": t} for i, t in enumerate(base)]
    for k in range(400):
        src = rng.randrange(len(base))
        docs.append({"id": f"c{k}~p{src}", "text": " ".join(_edit(rng, base[src].split(), vocab))})
    rng.shuffle(docs)
    n = len(docs)
    ia, ib = np.triu_indices(n, 1)
    j = mc.exact_jaccard_pairs(pa.array([d["text"] for d in docs]), ia, ib)
    keep = j >= 0.5
    truth = {(int(a), int(b)): float(x) for a, b, x in zip(ia[keep], ib[keep], j[keep])}
    return docs, truth


def batches_of(docs: list[dict[str, str]], size: int, extra: dict[str, list[Any]] | None = None) -> list[pa.Table]:
    """Reader-like batches: id, text, _curate_pos (row index), the drop columns."""
    out = []
    for start in range(0, len(docs), size):
        part = docs[start : start + size]
        n = len(part)
        cols: dict[str, Any] = {"id": [d["id"] for d in part], "text": [d["text"] for d in part]}
        for k, v in (extra or {}).items():
            cols[k] = v[start : start + size]
        cols[POS] = pa.array(range(start, start + n), pa.int64())
        for c in DROP_COLUMNS:
            cols[c] = pa.nulls(n, pa.string())
        out.append(pa.table(cols))
    return out


def simulate(stage: MinHashDedup, batches: list[pa.Table], buckets: int = 8, out_dir: Path | None = None) -> pa.Table:
    """The stage's drops, by the engine's own global-stage steps run in this process
    (``shuffle.run_global_local``: the split and reduce tasks' functions, ``resolve``), with
    ``buckets`` partitions."""
    return run_global_local(stage, "minhash_dedup", batches, buckets=buckets, output_uri=str(out_dir) if out_dir else "",
                            run_id="run-" + os.urandom(4).hex())


def kept_after(n: int, drops: pa.Table) -> np.ndarray:
    kept = np.ones(n, dtype=bool)
    kept[drops.column(POS).to_numpy()] = False
    return kept


def quality(drops: pa.Table, truth: dict[tuple[int, int], float], n: int, t: float = 0.8) -> tuple[float, float]:
    """(recall, precision): recall = share of ground-truth pairs with J >= t of which at most one
    document is kept; precision = share of dropped documents that have a partner with J >= t."""
    kept = kept_after(n, drops)
    pairs = [(a, b) for (a, b), j in truth.items() if j >= t]
    recall = sum(1 for a, b in pairs if not (kept[a] and kept[b])) / len(pairs)
    has_partner = np.zeros(n, dtype=bool)
    for a, b in pairs:
        has_partner[a] = has_partner[b] = True
    dropped = np.flatnonzero(~kept)
    precision = float(has_partner[dropped].mean()) if dropped.size else 1.0
    return recall, precision


# ---------------------------------------------------------------- units


def test_bucket_pairs_all_pairs_star_chain_and_old_nodes() -> None:
    keys = np.array([5, 5, 5, 9, 9, 7], dtype=np.uint64)
    nodes = np.array([30, 10, 20, 1, 2, 3], dtype=np.uint64)
    a, b = bucket_pairs(keys, nodes, max_bucket_size=3)
    assert list(zip(a.tolist(), b.tolist())) == [(1, 2), (10, 20), (10, 30), (20, 30)]
    # a bucket larger than max_bucket_size: each node with the first and with its predecessor
    keys = np.full(5, 3, dtype=np.uint64)
    a, b = bucket_pairs(keys, np.array([4, 0, 3, 1, 2], dtype=np.uint64), max_bucket_size=2)
    assert list(zip(a.tolist(), b.tolist())) == [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 3), (3, 4)]
    # two indexed (old) documents are never a candidate pair; old with new is
    old1, old2 = OLD_BIT | np.uint64(1), OLD_BIT | np.uint64(2)
    a, b = bucket_pairs(np.zeros(3, np.uint64), np.array([old1, old2, 7], dtype=np.uint64), 64)
    assert list(zip(a.tolist(), b.tolist())) == [(7, int(old1)), (7, int(old2))]


def test_exact_jaccard_pairs_matches_exact_jaccard() -> None:
    docs, _ = planted()
    texts = [d["text"] for d in docs[:60]] + ["", "!!", None]
    rng = np.random.default_rng(0)
    ia, ib = rng.integers(0, len(texts), 300), rng.integers(0, len(texts), 300)
    got = mc.exact_jaccard_pairs(pa.chunked_array([pa.array(texts[:30]), pa.array(texts[30:])]), ia, ib, 3)
    want = [mc.exact_jaccard(texts[a] or "", texts[b] or "", 3) for a, b in zip(ia, ib)]
    assert np.allclose(got, want, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        mc.exact_jaccard_pairs(pa.array(["a b"]), [0], [1])


def test_params_bands_rows_and_validation() -> None:
    assert (MinHashDedup(MinHashDedupParams()).num_bands, MinHashDedup(MinHashDedupParams()).num_rows) == (16, 8)
    s = MinHashDedup(MinHashDedupParams(threshold=0.7, fp_weight=0.5, fn_weight=0.5))
    assert (s.num_bands, s.num_rows) == mc.optimal_bands_rows(0.7, 128, 0.5, 0.5)
    s = MinHashDedup(MinHashDedupParams(bands=20))
    assert (s.num_bands, s.num_rows) == (20, 6)
    for bad in ({"keep": "score"}, {"score_field": "q"}, {"bands": 20, "rows": 8}, {"threshold": 1.0}):
        with pytest.raises(ValueError):
            MinHashDedupParams(**bad)


def test_bad_params_are_config_errors_before_ray(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"id": "1", "text": "one two three"}])
    write_pipeline(tmp_path / "p.yaml", "input: {format: jsonl, paths: [d.jsonl]}\nstages:\n  - minhash_dedup: {keep: score}\noutput: {dataset: out}\n")
    res = run_cli("run", "p.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "p.yaml:3" in res.stderr and "score_field" in res.stderr, res.stderr
    write_pipeline(tmp_path / "p.yaml", "input: {format: jsonl, paths: [d.jsonl]}\nstages:\n  - minhash_dedup: {against: nowhere}\noutput: {dataset: out}\n")
    res = run_cli("run", "p.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "no curate dataset at nowhere" in res.stderr, res.stderr


# ---------------------------------------------------------------- quality and determinism (no Ray)


def test_planted_near_duplicates_recall_and_precision() -> None:
    docs, truth = planted()
    n = len(docs)
    assert sum(1 for j in truth.values() if j >= 0.8) >= 200  # the corpus is a real test
    drops = simulate(MinHashDedup(MinHashDedupParams(verify=True)), batches_of(docs, 128))
    recall, precision = quality(drops, truth, n)
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)
    # every drop names a kept document of its cluster, with rule and reason
    kept_ids = {docs[i]["id"] for i in np.flatnonzero(kept_after(n, drops))}
    assert set(drops.column("duplicate_of").to_pylist()) <= kept_ids
    assert set(drops.column("rule").to_pylist()) == {"near_duplicate"}
    assert all(r.startswith("near_duplicate: Jaccard ") for r in drops.column("reason").to_pylist())
    # verified: every dropped document has an accepted exact partner >= 0.8
    assert precision == 1.0

    # checked by the MinHash estimate only: cheaper, a little less exact
    est = simulate(MinHashDedup(MinHashDedupParams(verify=False)), batches_of(docs, 128))
    recall_e, precision_e = quality(est, truth, n)
    assert recall_e >= 0.9 and precision_e >= 0.9, (recall_e, precision_e)


def test_spdx_licences_against_their_ground_truth() -> None:
    tar = NEARDUP / "spdx_license_texts.tar.gz"
    need_data(tar, "SPDX near-duplicate licence texts")
    docs = []
    with tarfile.open(tar) as tf:
        for m in sorted(tf.getmembers(), key=lambda m: m.name):
            f = tf.extractfile(m) if m.isfile() else None
            if f is not None:
                docs.append({"id": Path(m.name).name, "text": f.read().decode("utf-8", "replace")})
    index = {d["id"]: i for i, d in enumerate(docs)}
    truth = {}
    for line in (NEARDUP / "spdx_pairs_j50.tsv").read_text().splitlines()[1:]:
        j, a, b = line.split("\t")
        ia, ib = sorted((index[a], index[b]))
        truth[(ia, ib)] = float(j)
    drops = simulate(MinHashDedup(MinHashDedupParams()), batches_of(docs, 100))
    recall, precision = quality(drops, truth, len(docs))
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)


def test_same_result_whatever_batches_and_partitions() -> None:
    docs, _ = planted()
    results = []
    for size, buckets in ((1000, 8), (97, 8), (64, 32), (333, 1)):
        results.append(simulate(MinHashDedup(MinHashDedupParams()), batches_of(docs, size), buckets=buckets))
    for r in results[1:]:
        assert r.equals(results[0])
    assert results[0].num_rows > 100


def test_keep_policies() -> None:
    base = " ".join(f"w{i}" for i in range(200))
    docs = [
        {"id": "first", "text": base},
        {"id": "longer", "text": base + " tail words at the end"},
        {"id": "best", "text": "prefix " + base},
        {"id": "other", "text": " ".join(f"x{i}" for i in range(200))},
    ]
    score = [0.1, 0.2, 0.9, 0.5]

    def dropped(**kw: Any) -> dict[str, str]:
        drops = simulate(MinHashDedup(MinHashDedupParams(**kw)), batches_of(docs, 2, {"q": score}))
        return {docs[p]["id"]: d for p, d in zip(drops.column(POS).to_pylist(), drops.column("duplicate_of").to_pylist())}

    assert dropped() == {"longer": "first", "best": "first"}
    assert dropped(keep="longest") == {"first": "longer", "best": "longer"}
    assert dropped(keep="score", score_field="q") == {"first": "best", "longer": "best"}


def test_documents_without_shingles_and_empty_input() -> None:
    docs = [{"id": "a", "text": ""}, {"id": "b", "text": "!!"}, {"id": "c", "text": "real words here"}]
    drops = simulate(MinHashDedup(MinHashDedupParams()), batches_of(docs, 2))
    # no shingles at all: identical (Jaccard 1) to each other, never to a document with words
    assert drops.column(POS).to_pylist() == [1] and drops.column("duplicate_of").to_pylist() == ["a"]
    assert simulate(MinHashDedup(MinHashDedupParams()), []).num_rows == 0


def test_incremental_against_a_saved_index_in_process(tmp_path: Path) -> None:
    docs, truth = planted()
    old, new = docs[:600], docs[600:]
    first = MinHashDedup(MinHashDedupParams(save_index=True, index_dir=str(tmp_path / "idx")))
    drops_old = simulate(first, batches_of(old, 200), out_dir=tmp_path / "ds")
    part = first.metadata()["index"]["path"]
    assert (Path(part) / "docs").is_dir() and (Path(part) / "dropped.parquet").is_file()
    kept_old = set(np.flatnonzero(kept_after(len(old), drops_old)).tolist())

    second = MinHashDedup(MinHashDedupParams(against="ds"))
    second._against = {"dataset": "ds", "version": 0, "parts": [part]}  # what check() finds in ds's commit metadata
    drops_new = simulate(second, batches_of(new, 200))  # positions restart at 0: old ids are a separate space
    got = {p + 600: d for p, d in zip(drops_new.column(POS).to_pylist(), drops_new.column("duplicate_of").to_pylist())}

    # new documents with a kept old near-duplicate are dropped (new-old pairs are checked by the
    # MinHash estimate, which misses some pairs just above the threshold: hence 0.85 here)
    should = {b for (a, b), j in truth.items() if j >= 0.8 and a in kept_old and b >= 600}
    assert len(should) >= 30
    assert len(should & set(got)) >= 0.85 * len(should)
    clear = {b for (a, b), j in truth.items() if j >= 0.9 and a in kept_old and b >= 600}
    assert len(clear & set(got)) >= 0.97 * len(clear)
    # ... as duplicates of a published (kept old) or kept new document, never of a dropped one
    kept_ids = {old[i]["id"] for i in kept_old} | {docs[i]["id"] for i in range(600, len(docs)) if i not in got}
    assert set(got.values()) <= kept_ids
    # and each has a near-duplicate partner somewhere (new-old pairs are checked by the estimate)
    partner = {x for (a, b), j in truth.items() if j >= 0.75 for x in (a, b)}
    assert sum(1 for i in got if i in partner) >= 0.95 * len(got)
    # old documents the first run dropped are not matched against
    dropped_old = set(drops_old.column(POS).to_pylist())
    dropped_old_ids = {old[i]["id"] for i in dropped_old}
    assert not (set(got.values()) & dropped_old_ids)


# ---------------------------------------------------------------- end to end through `curate run`

PIPELINE = """\
input:
  format: jsonl
  paths: [data/*.jsonl]
  read_batch_rows: {batch}
stages:
  - minhash_dedup: {{{params}}}
output:
  dataset: {out}
  keep_dropped: true
ray:
{ray}
"""


def _write_corpus(tmp_path: Path) -> list[dict[str, str]]:
    docs, _ = planted()
    write_jsonl(tmp_path / "data" / "a.jsonl", docs[:500])  # file order = _curate_pos order
    write_jsonl(tmp_path / "data" / "b.jsonl", docs[500:])
    return docs


def _dropped(tmp_path: Path, out: str) -> dict[str, str]:
    df = pl.read_delta(str(tmp_path / out) + ".dropped")
    return dict(zip(df["id"], df["duplicate_of"]))


@pytest.mark.slow
def test_curate_run_matches_in_process_and_is_the_same_on_one_or_two_workers(tmp_path: Path) -> None:
    docs = _write_corpus(tmp_path)
    write_pipeline(tmp_path / "two.yaml", PIPELINE.format(batch=64, params="export_clusters: true, save_index: true", out="out/two", ray="  num_cpus: 2"))
    write_pipeline(tmp_path / "one.yaml", PIPELINE.format(batch=10000, params="", out="out/one", ray="  num_cpus: 1"))
    for name in ("two", "one"):
        res = run_cli("run", f"{name}.yaml", "--no-progress", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    two, one = _dropped(tmp_path, "out/two"), _dropped(tmp_path, "out/one")
    assert two == one and len(two) > 100
    assert pl.read_delta(str(tmp_path / "out/two")).sort("id").equals(pl.read_delta(str(tmp_path / "out/one")).sort("id"))

    # the same as the in-process rounds (positions differ, ids do not)
    ref = simulate(MinHashDedup(MinHashDedupParams()), batches_of(docs, 100))
    assert {docs[p]["id"]: d for p, d in zip(ref.column(POS).to_pylist(), ref.column("duplicate_of").to_pylist())} == two

    dropped = pl.read_delta(str(tmp_path / "out/two") + ".dropped")
    assert set(dropped["stage"]) == {"minhash_dedup"} and set(dropped["rule"]) == {"near_duplicate"}
    assert dropped["reason"].str.starts_with("near_duplicate").all()
    meta = json.loads(DeltaTable(str(tmp_path / "out/two")).history()[0]["curate.run"])
    sm = meta["stage_metadata"]["minhash_dedup"]
    assert sm["bands"] == 16 and sm["rows_per_band"] == 8 and sm["dropped"] == len(two)
    assert sm["candidate_pairs"] >= sm["accepted_pairs"] > 0 and sm["checked_exactly"] == sm["checked_pairs"]
    assert meta["stages"][1]["dropped_by_rule"] == {"near_duplicate": len(two)}
    clusters = pl.read_parquet(sm["clusters_file"])
    assert set(clusters.filter(~pl.col("kept"))["id"]) == set(two)
    assert (clusters.group_by("cluster").agg(pl.col("kept").sum())["kept"] == 1).all()
    assert sm["index"]["parts"] == [f"_curate_index/minhash/{meta['run_id']}"]

    # incremental: new documents (edited copies of kept ones, and fresh ones) against version 0
    kept = pl.read_delta(str(tmp_path / "out/two"))
    fresh = [{"id": f"fresh{i}", "text": " ".join(f"fresh{i}-{k}" for k in range(120))} for i in range(5)]
    copies = []
    for r in kept.sort("id").head(40).to_dicts():  # one word inserted mid-text: J ~ 0.95-0.99
        w = r["text"].split()
        copies.append({"id": f"again-{r['id']}", "text": " ".join(w[: len(w) // 2] + ["inserted"] + w[len(w) // 2 :])})
    write_jsonl(tmp_path / "new" / "n.jsonl", copies + fresh)
    inc = PIPELINE.format(batch=1000, params="against: out/two, save_index: true", out="out/two", ray="  num_cpus: 2")
    write_pipeline(tmp_path / "inc.yaml", inc.replace("data/*.jsonl", "new/*.jsonl").replace("keep_dropped: true", "keep_dropped: true\n  mode: append"))
    res = run_cli("run", "inc.yaml", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    now = pl.read_delta(str(tmp_path / "out/two"))
    added = set(now["id"]) - set(kept["id"])
    assert {f"fresh{i}" for i in range(5)} <= added
    new_drops = pl.read_delta(str(tmp_path / "out/two") + ".dropped", version=1)
    dup = dict(zip(new_drops["id"], new_drops["duplicate_of"]))
    caught = [c["id"] for c in copies if c["id"] in dup]
    assert len(caught) >= 0.95 * len(copies), (len(caught), len(copies))
    assert all(dup[c] in set(kept["id"]) for c in caught)  # duplicates of published documents
    meta2 = json.loads(DeltaTable(str(tmp_path / "out/two")).history()[0]["curate.run"])
    sm2 = meta2["stage_metadata"]["minhash_dedup"]
    assert sm2["against"]["version"] == 0 and len(sm2["index"]["parts"]) == 2


@pytest.mark.slow
def test_two_node_local_cluster_gives_the_same_result(tmp_path: Path) -> None:
    docs = _write_corpus(tmp_path)
    with local_ray_cluster((1, 1)) as address:
        write_pipeline(tmp_path / "cluster.yaml", PIPELINE.format(batch=100, params="", out="out/cluster", ray=f'  address: "{address}"'))
        res = run_cli("run", "cluster.yaml", "--no-progress", cwd=tmp_path, env={"RAY_AUTH_MODE": "token"})
        assert res.returncode == 0, res.stderr
    meta = json.loads(DeltaTable(str(tmp_path / "out/cluster")).history()[0]["curate.run"])
    assert meta["ray"]["resources"]["CPU"] == 2.0  # both nodes
    ref = simulate(MinHashDedup(MinHashDedupParams()), batches_of(docs, 1000))
    want = {docs[p]["id"]: d for p, d in zip(ref.column(POS).to_pylist(), ref.column("duplicate_of").to_pylist())}
    assert _dropped(tmp_path, "out/cluster") == want
