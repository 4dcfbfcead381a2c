"""Tests of curate.filters.minhash_core: Arrow in, numpy out, statistics checked against exact
Jaccard, and a real-data check on the SPDX licence corpus with its exact pair Jaccards."""

from __future__ import annotations

import random
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from curate.filters import minhash_core as mc
from helpers import need_data
from hypothesis import given, settings
from hypothesis import strategies as st

EVALDATA = Path(__file__).resolve().parent / "data" / "evaldata"
NEARDUP = EVALDATA / "neardup"


def rand_words(rng: random.Random, n: int) -> list[str]:
    return [f"{rng.getrandbits(40):x}" for _ in range(n)]


# ---------------------------------------------------------------- Arrow plumbing


def test_identical_texts_identical_signatures() -> None:
    base = "The quick brown fox jumps over the lazy dog, again and again and again."
    arr = pa.array([base, base, base.upper(), base.replace(",", " ;; "), "something else entirely here"])
    s = mc.minhash_signatures(arr)
    assert s.shape == (5, 128) and s.dtype == np.uint32
    for i in (1, 2, 3):
        assert (s[0] == s[i]).all()
    assert not (s[0] == s[4]).all()


def test_types_slices_chunks_and_nulls() -> None:
    texts = [f"document number {i} with some shared words and a tail {i % 3}" for i in range(40)]
    want = mc.minhash_signatures(pa.array(texts), 64, 3)
    # large_string, string_view, plain Python list
    for arr in (pa.array(texts, pa.large_string()), pa.array(texts).cast(pa.string_view()), texts):
        assert (mc.minhash_signatures(arr, 64, 3) == want).all()
    # sliced arrays keep their parent's buffers: the offset must be honoured
    sl = pa.array(texts).slice(7, 20)
    assert (mc.minhash_signatures(sl, 64, 3) == want[7:27]).all()
    assert (mc.minhash_signatures(pa.array(texts, pa.large_string()).slice(3, 5), 64, 3) == want[3:8]).all()
    # chunked arrays, with a sliced and an empty chunk
    ch = pa.chunked_array([pa.array(texts[:10]), pa.array(texts).slice(10, 0), pa.array(texts).slice(10, 30)])
    assert (mc.minhash_signatures(ch, 64, 3) == want).all()
    assert (mc.hash_texts(ch) == mc.hash_texts(pa.array(texts))).all()
    # nulls are empty strings, whatever bytes their slot points at
    with_nulls = pa.array(["abc def", None, "ghi jkl"])
    s = mc.minhash_signatures(with_nulls, 64, 3)
    assert (s[1] == mc.EMPTY_SIGNATURE_VALUE).all()
    assert (s[[0, 2]] == mc.minhash_signatures(["abc def", "ghi jkl"], 64, 3)).all()
    h = mc.hash_texts(with_nulls)
    assert h[1] == mc.hash_texts([""])[0]
    # a null slot whose offsets span real bytes (allowed by the Arrow spec) still counts as empty
    valid = pa.py_buffer(np.packbits([1, 0, 1], bitorder="little").tobytes())
    offs = pa.py_buffer(np.array([0, 3, 6, 9], dtype=np.int32).tobytes())
    odd = pa.Array.from_buffers(pa.string(), 3, [valid, offs, pa.py_buffer(b"aaabbbccc")], null_count=1)
    assert mc.hash_texts(odd)[1] == mc.hash_texts([""])[0]
    # empty inputs
    assert mc.minhash_signatures(pa.array([], pa.string()), 32).shape == (0, 32)
    assert mc.minhash_signatures(pa.chunked_array([], pa.string())).shape == (0, 128)
    assert mc.hash_texts(pa.array([], pa.large_string())).shape == (0,)
    with pytest.raises(TypeError, match="string or binary"):
        mc.minhash_signatures(pa.array([1, 2, 3]))


def test_binary_with_invalid_utf8_viewed_as_string() -> None:
    raw = [b"valid text here", b"\xff\xfe\xfd broken \xc3 bytes", b"", b"caf\xc3\xa9 \xe2\x82"]
    binary = pa.array(raw, pa.binary())
    # a string *view* of invalid bytes (no validation), as a careless reader might produce
    as_string = pa.Array.from_buffers(pa.string(), len(raw), binary.buffers())
    want = mc.minhash_signatures([r.decode("utf-8", "replace") for r in raw], ngram=2)
    assert (mc.minhash_signatures(binary, ngram=2) == want).all()
    assert (mc.minhash_signatures(as_string, ngram=2) == want).all()


def test_hash_texts_values() -> None:
    import xxhash

    texts = ["", "a", "héllo wörld", "x" * 1000]
    h = mc.hash_texts(pa.array(texts))
    assert h.dtype == np.uint64
    assert h.tolist() == [xxhash.xxh3_64_intdigest(t.encode()) for t in texts]
    assert mc.hash_texts(texts, seed=5).tolist() == [xxhash.xxh3_64_intdigest(t.encode(), seed=5) for t in texts]


def test_huge_document_and_many_small() -> None:
    rng = random.Random(0)
    words = rand_words(rng, 1_000_000)
    big = " ".join(words)
    assert len(big) > 10_000_000
    s = mc.minhash_signatures([big, " ".join(words[:900_000])], 128)
    est = float((s[0] == s[1]).mean())
    assert abs(est - 0.9) < 4 * np.sqrt(0.09 / 128) + 0.01
    tiny = pa.array(["a", "", "b c", "d"] * 25_000)
    st_ = mc.minhash_signatures(tiny, 16)
    assert st_.shape == (100_000, 16)
    assert (st_[1] == mc.EMPTY_SIGNATURE_VALUE).all() and (st_[0] == st_[4]).all()


# ---------------------------------------------------------------- statistics


def make_pair(rng: random.Random, n_a: int, n_b: int, shared: int) -> tuple[str, str]:
    """Two texts of unique random words with exactly `shared` common words (ngram=1 shingles)."""
    common = rand_words(rng, shared)
    a = common + rand_words(rng, n_a - shared)
    b = common + rand_words(rng, n_b - shared)
    rng.shuffle(a)
    rng.shuffle(b)
    return " ".join(a), " ".join(b)


def test_jaccard_estimates_track_exact_jaccard() -> None:
    """Over random set pairs, (estimate - J) / sqrt(J(1-J)/k) behaves like a unit normal."""
    rng = random.Random(42)
    num_perm = 128
    texts, js = [], []
    for _ in range(1500):
        n_a, n_b = rng.randint(20, 400), rng.randint(20, 400)
        shared = rng.randint(1, min(n_a, n_b) - 1)
        a, b = make_pair(rng, n_a, n_b, shared)
        texts += [a, b]
        js.append(shared / (n_a + n_b - shared))
    sig = mc.minhash_signatures(pa.array(texts), num_perm, ngram=1)
    idx = np.arange(0, len(texts), 2)
    est = mc.estimated_jaccard(sig, idx, idx + 1).astype(np.float64)
    j = np.array(js)
    # the exact helper agrees with the construction
    assert mc.exact_jaccard(texts[0], texts[1], 1) == pytest.approx(js[0])
    sd = np.sqrt(j * (1 - j) / num_perm)
    z = (est - j) / sd
    assert abs(z.mean()) < 4 / np.sqrt(len(z)), z.mean()  # unbiased
    assert 0.9 < z.std() < 1.1, z.std()  # binomial variance, no excess
    assert (np.abs(est - j) <= 4 * sd + 1 / num_perm).mean() > 0.999


@given(st.integers(0, 2**32), st.floats(0.05, 0.95))
@settings(max_examples=30, deadline=None)
def test_estimate_within_four_sigma(seed: int, target: float) -> None:
    rng = random.Random(seed)
    n = 300
    shared = max(1, round(2 * n * target / (1 + target)))
    a, b = make_pair(rng, n, n, shared)
    j = mc.exact_jaccard(a, b, 1)
    sig = mc.minhash_signatures([a, b], 256, 1, seed=seed % 1000)
    est = float(mc.estimated_jaccard(sig, [0], [1])[0])
    assert abs(est - j) <= 4.5 * np.sqrt(j * (1 - j) / 256) + 1 / 256


@pytest.mark.parametrize("similarity", [0.5, 0.7, 0.85])
def test_lsh_candidate_rate_follows_s_curve(similarity: float) -> None:
    bands, rows = 16, 8
    rng = random.Random(int(similarity * 100))
    n, pairs = 200, 1500
    shared = round(2 * n * similarity / (1 + similarity))
    j = shared / (2 * n - shared)
    texts = []
    for _ in range(pairs):
        texts += make_pair(rng, n, n, shared)
    keys = mc.lsh_band_keys(mc.minhash_signatures(texts, 128, 1), bands, rows)
    cand = (keys[0::2] == keys[1::2]).any(axis=1).mean()
    p = float(mc.candidate_probability(j, bands, rows))
    assert abs(cand - p) < 4 * np.sqrt(p * (1 - p) / pairs) + 0.005, (cand, p)


def test_optimal_bands_rows() -> None:
    for thr in (0.3, 0.5, 0.7, 0.8, 0.9):
        for k in (64, 128, 256):
            b, r = mc.optimal_bands_rows(thr, k)
            assert b * r <= k
            # the S-curve's midpoint sits near the threshold
            assert abs((1 / b) ** (1 / r) - thr) < 0.12, (thr, k, b, r)
    rows = [mc.optimal_bands_rows(t, 128)[1] for t in (0.3, 0.5, 0.7, 0.9)]
    assert rows == sorted(rows)
    # weighting false negatives more moves the curve left (more bands, fewer rows)
    b_fn, r_fn = mc.optimal_bands_rows(0.8, 128, fp_weight=0.1, fn_weight=0.9)
    b_fp, r_fp = mc.optimal_bands_rows(0.8, 128, fp_weight=0.9, fn_weight=0.1)
    assert (1 / b_fn) ** (1 / r_fn) < (1 / b_fp) ** (1 / r_fp)
    # it is the true minimum of the weighted error (checked with an independent fine integration)
    s = np.linspace(0, 1, 200_001)

    def err(b: int, r: int, t: float = 0.8) -> float:
        p = mc.candidate_probability(s, b, r)
        lo, hi = s <= t, s >= t
        return float(0.5 * np.trapezoid(p[lo], s[lo]) + 0.5 * np.trapezoid(1 - p[hi], s[hi]))

    b, r = mc.optimal_bands_rows(0.8, 64)
    best = min(err(bb, rr) for bb in range(1, 65) for rr in range(1, 64 // bb + 1))
    assert err(b, r) <= best + 1e-7
    for bad in ((0.0, 128), (1.0, 128), (0.5, 0)):
        with pytest.raises(ValueError):
            mc.optimal_bands_rows(*bad)


def test_lsh_band_keys_shape_and_errors() -> None:
    sig = mc.minhash_signatures(["a b c", "a b c", "x y z"], 32, 1)
    keys = mc.lsh_band_keys(sig, 8, 4)
    assert keys.shape == (3, 8) and keys.dtype == np.uint64
    assert (keys[0] == keys[1]).all() and not (keys[0] == keys[2]).any()
    with pytest.raises(ValueError):
        mc.lsh_band_keys(sig, 9, 4)
    with pytest.raises(TypeError):
        mc.lsh_band_keys(sig.astype(np.int64), 8, 4)
    with pytest.raises(ValueError):
        mc.lsh_band_keys(sig[0], 8, 4)


# ---------------------------------------------------------------- union-find


def ref_components(src: list[int], dst: list[int]) -> dict[int, int]:
    adj: dict[int, set[int]] = {}
    for a, b in zip(src, dst):
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    root: dict[int, int] = {}
    for start in sorted(adj):
        if start in root:
            continue
        comp, todo = [], [start]
        root[start] = start
        while todo:
            x = todo.pop()
            comp.append(x)
            for y in adj[x]:
                if y not in root:
                    root[y] = start
                    todo.append(y)
        m = min(comp)
        for x in comp:
            root[x] = m
    return root


@given(
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=80),
    st.sampled_from([0, 2**40, 2**64 - 100]),
    st.randoms(use_true_random=False),
)
@settings(max_examples=150, deadline=None)
def test_connected_components_deterministic(edges: list[tuple[int, int]], base: int, rnd: random.Random) -> None:
    src = [base + a for a, _ in edges]
    dst = [base + b for _, b in edges]
    nodes, roots = mc.connected_components(np.array(src, dtype=np.uint64), np.array(dst, dtype=np.uint64))
    want = ref_components(src, dst)
    assert nodes.tolist() == sorted(want)
    assert roots.tolist() == [want[x] for x in sorted(want)]
    # any edge order and orientation gives the same answer
    order = list(range(len(edges)))
    rnd.shuffle(order)
    flip = [rnd.random() < 0.5 for _ in order]
    s2 = [dst[i] if f else src[i] for i, f in zip(order, flip)]
    d2 = [src[i] if f else dst[i] for i, f in zip(order, flip)]
    n2, r2 = mc.connected_components(np.array(s2, dtype=np.uint64), np.array(d2, dtype=np.uint64))
    assert (n2 == nodes).all() and (r2 == roots).all()


def test_connected_components_inputs() -> None:
    nodes, roots = mc.connected_components([5, 1], [1, 9])
    assert nodes.tolist() == [1, 5, 9] and roots.tolist() == [1, 1, 1]
    nodes, roots = mc.connected_components([], [])
    assert nodes.size == 0 and roots.size == 0
    with pytest.raises(ValueError, match="negative"):
        mc.connected_components([-1], [2])
    with pytest.raises(ValueError, match="same length"):
        mc.connected_components([1, 2], [2])
    big = np.arange(200_000, dtype=np.uint64)
    n, r = mc.connected_components(big[1:], big[:-1])
    assert (r == 0).all() and n.size == 200_000


# ---------------------------------------------------------------- real data: SPDX licences


@pytest.fixture(scope="module")
def spdx() -> tuple[list[str], list[str], list[tuple[float, str, str]]]:
    tarball, pairs_tsv = NEARDUP / "spdx_license_texts.tar.gz", NEARDUP / "spdx_pairs_j50.tsv"
    need_data(tarball, "SPDX near-duplicate licence texts")
    need_data(pairs_tsv, "SPDX near-duplicate ground truth")
    texts: dict[str, str] = {}
    with tarfile.open(tarball) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            if f is not None:
                texts[m.name.rsplit("/", 1)[-1]] = f.read().decode("utf-8", "replace")
    with open(pairs_tsv, encoding="utf-8") as fh:
        next(fh)
        pairs = [(float(j), a, b) for j, a, b in (line.rstrip("\n").split("\t") for line in fh)]
    names = sorted(texts)
    return names, [texts[n] for n in names], pairs


def test_spdx_exact_jaccard_matches_ground_truth(spdx) -> None:  # type: ignore[no-untyped-def]
    names, texts, pairs = spdx
    by_name = dict(zip(names, texts))
    assert len(pairs) > 1000
    for j, a, b in pairs:
        assert mc.exact_jaccard(by_name[a], by_name[b]) == pytest.approx(j, abs=5e-5), (a, b)


def test_spdx_estimates_track_ground_truth(spdx) -> None:  # type: ignore[no-untyped-def]
    names, texts, pairs = spdx
    idx = {n: i for i, n in enumerate(names)}
    num_perm = 256
    sig = mc.minhash_signatures(pa.array(texts), num_perm)
    ia = np.array([idx[a] for _, a, _ in pairs])
    ib = np.array([idx[b] for _, _, b in pairs])
    j = np.array([p[0] for p in pairs])
    est = mc.estimated_jaccard(sig, ia, ib).astype(np.float64)
    sd = np.sqrt(j * (1 - j) / num_perm)
    assert abs((est - j).mean()) < 0.02
    inner = j < 1
    z = (est[inner] - j[inner]) / sd[inner]
    assert 0.8 < z.std() < 1.25, z.std()
    assert (np.abs(est - j) <= 3.5 * sd + 1 / num_perm).mean() > 0.99
    assert (np.abs(est - j) <= 5 * sd + 2 / num_perm).all()
    # identical shingle sets (J = 1) must give identical signatures
    assert (est[j == 1.0] == 1.0).all()


def test_spdx_lsh_recall(spdx) -> None:  # type: ignore[no-untyped-def]
    """LSH at threshold 0.8 finds (nearly) every pair with J >= 0.9 as a candidate, and the
    union-find clusters put them together."""
    names, texts, pairs = spdx
    idx = {n: i for i, n in enumerate(names)}
    bands, rows = mc.optimal_bands_rows(0.8, 128)
    keys = mc.lsh_band_keys(mc.minhash_signatures(pa.array(texts), 128), bands, rows)
    src, dst = [], []
    for k in range(bands):
        col = keys[:, k]
        order = np.argsort(col, kind="stable")
        same = col[order][1:] == col[order][:-1]
        src.append(order[:-1][same])
        dst.append(order[1:][same])
    nodes, roots = mc.connected_components(np.concatenate(src), np.concatenate(dst))
    root_of = dict(zip(nodes.tolist(), roots.tolist()))
    high = [(idx[a], idx[b]) for j, a, b in pairs if j >= 0.9]
    together = sum(1 for a, b in high if a in root_of and root_of.get(a) == root_of.get(b))
    assert together / len(high) > 0.97, (together, len(high))
    # empty texts would all collide; the SPDX texts have none
    assert not (pc.utf8_length(pa.array(texts)).to_numpy() == 0).any()
