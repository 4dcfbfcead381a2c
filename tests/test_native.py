"""Tests of the raw native module `curate._native` (buffers in, little-endian bytes out).

The reference for tokenisation and shingling is CPython itself: ``re.findall(r"\\w+", text.lower())``
and xxh3-64 of ``" ".join(tokens[i:i+n]).encode()``, the definition the shared ground truth uses.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
import xxhash
from gil_probe import assert_releases_gil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate import _native

WORD = re.compile(r"\w+")
MAX32 = 0xFFFF_FFFF


def ref_tokens(text: str, lowercase: bool = True) -> list[str]:
    return WORD.findall(text.lower() if lowercase else text)


def ref_shingles(text: str, n: int, char_ngrams: bool = False) -> set[str]:
    toks = ref_tokens(text)
    if not toks:
        return set()
    if char_ngrams:
        norm = " ".join(toks)
        if len(norm) <= n:
            return {norm}
        return {norm[i : i + n] for i in range(len(norm) - n + 1)}
    if len(toks) < n:
        return {" ".join(toks)}
    return {" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def ref_hashes(text: str, n: int, char_ngrams: bool = False) -> list[int]:
    return sorted({xxhash.xxh3_64_intdigest(s.encode()) for s in ref_shingles(text, n, char_ngrams)})


def bufs(arr: pa.Array) -> tuple[pa.Buffer, pa.Buffer]:
    b = arr.buffers()
    return b[1], b[2] if b[2] is not None else pa.py_buffer(b"")


def sigs_of(texts: list[str], **kw: object) -> np.ndarray:
    arr = pa.array(texts, type=pa.string())
    num_perm = int(kw.get("num_perm", 128))  # type: ignore[call-overload]
    raw = _native.minhash(*bufs(arr), **kw)  # type: ignore[arg-type]
    return np.frombuffer(raw, dtype="<u4").reshape(len(texts), num_perm)


# Text that exercises the interesting corners: case mappings that expand or split (U+0130),
# final sigma and its case-ignorable context, combining marks (not \w in CPython), digits of
# other scripts, CJK, underscores, and separators of every kind.
CORNER_ALPHABET = st.sampled_from(
    list("aZ_9 \t\n.,'-") + ["Σ", "σ", "ς", "İ", "ß", "ǅ", "ʰ", "\u0301", "\u00ad", "٣", "日", "Ⅻ", "ﬁ", "K", "ẞ", "\u200d"]
)
# Long texts cross the tokenizer's 64-byte blocks with tokens and multi-byte chars at the edges.
corner_text = st.one_of(
    st.text(max_size=80),
    st.text(CORNER_ALPHABET, max_size=40),
    st.lists(st.sampled_from(["word", "WORD ", "é", " ", "日本", "Σ", ". ", "x" * 61, "_9"]), max_size=60).map("".join),
)


def test_tokenize_every_word_code_point() -> None:
    """Every code point CPython's re calls \\w, lowercased and split exactly as CPython does."""
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000]
    text = " ".join(chars)
    assert _native.tokenize(text) == ref_tokens(text)
    assert _native.tokenize(text, False) == ref_tokens(text, lowercase=False)


@given(corner_text)
@settings(max_examples=400, deadline=None)
def test_tokenize_matches_cpython(text: str) -> None:
    assert _native.tokenize(text) == ref_tokens(text)
    assert _native.tokenize(text, lowercase=False) == ref_tokens(text, lowercase=False)


@given(corner_text, st.integers(1, 6), st.booleans())
@settings(max_examples=300, deadline=None)
def test_shingle_hashes_match_reference(text: str, n: int, char_ngrams: bool) -> None:
    got = np.frombuffer(_native.shingle_hashes(text, n, char_ngrams), dtype="<u8").tolist()
    assert got == ref_hashes(text, n, char_ngrams)


@given(corner_text, corner_text, st.integers(1, 4), st.booleans())
@settings(max_examples=200, deadline=None)
def test_exact_jaccard_matches_reference(a: str, b: str, n: int, char_ngrams: bool) -> None:
    sa, sb = ref_shingles(a, n, char_ngrams), ref_shingles(b, n, char_ngrams)
    want = 1.0 if not sa and not sb else len(sa & sb) / len(sa | sb)
    assert _native.exact_jaccard(a, b, n, char_ngrams) == pytest.approx(want, abs=1e-12)


@given(st.lists(st.text(max_size=30), max_size=30), st.integers(0, 2**64 - 1), st.booleans())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hash_texts_is_xxh3(texts: list[str], seed: int, large: bool) -> None:
    arr = pa.array(texts, type=pa.large_string() if large else pa.string())
    raw = _native.hash_texts(*bufs(arr), seed=seed, large_offsets=large)
    got = np.frombuffer(raw, dtype="<u8").tolist()
    assert got == [xxhash.xxh3_64_intdigest(t.encode(), seed=seed) for t in texts]


def test_minhash_equals_min_of_permuted_shingle_hashes() -> None:
    """The signature is min over shingles of (a*x + b) mod 2**32 of the documented hashes, so
    equal shingle sets give equal signatures and the signature is order-independent."""
    a = "one two three four five six seven"
    b = "Four five six seven. ONE two three four five!"  # a subset of a's 3-shingles ... and more
    s = sigs_of([a, a.upper(), b], ngram=3)
    assert (s[0] == s[1]).all()
    assert not (s[0] == s[2]).all()
    assert 0 < (s[0] == s[2]).mean() < 1


def test_empty_and_short_documents() -> None:
    s = sigs_of(["", "   ...  ", "two words", "Two, WORDS!"], ngram=5)
    assert (s[0] == MAX32).all() and (s[1] == MAX32).all()
    assert (s[2] != MAX32).any()
    assert (s[2] == s[3]).all()  # one shingle "two words" each


def test_char_ngrams() -> None:
    s = sigs_of(["Hello, World", "hello world", "hello there"], ngram=3, char_ngrams=True)
    assert (s[0] == s[1]).all()
    assert 0 < (s[1] == s[2]).mean() < 1


def test_seed_and_num_perm() -> None:
    texts = ["a b c d e f g h i j"]
    assert not (sigs_of(texts, seed=1) == sigs_of(texts, seed=2)).all()
    s200 = sigs_of(texts, num_perm=200)
    assert s200.shape == (1, 200)
    assert (sigs_of(texts, num_perm=1)[0, 0] == s200[0, 0])  # same parameter stream
    assert (sigs_of(texts, num_perm=128, num_threads=1) == sigs_of(texts, num_perm=128, num_threads=2)).all()


def test_non_utf8_bytes_decode_lossily() -> None:
    raw = [b"caf\xc3\xa9 ok \xff\xfe bad bytes here", b"\xc3", b"\x80\x80 tail words", b"fine text"]
    binary = pa.array(raw, type=pa.binary())
    o, d = bufs(binary)
    sig = np.frombuffer(_native.minhash(o, d, ngram=2), dtype="<u4").reshape(4, 128)
    want = sigs_of([r.decode("utf-8", "replace") for r in raw], ngram=2)
    assert (sig == want).all()
    # hash_texts hashes the raw bytes
    got = np.frombuffer(_native.hash_texts(o, d), dtype="<u8").tolist()
    assert got == [xxhash.xxh3_64_intdigest(r) for r in raw]


def test_huge_document() -> None:
    words = [f"w{i % 50_000}" for i in range(1_500_000)]
    text = " ".join(words)
    assert len(text) > 10_000_000
    s = sigs_of([text, text + " extra"], num_perm=64)
    assert (s[0] == s[0]).all() and (s[0] != MAX32).all()
    assert (s[0] == s[1]).mean() > 0.9


def _offs(values: list[int], dtype: str = "<i4") -> bytes:
    return np.array(values, dtype=dtype).tobytes()


@pytest.mark.parametrize(
    ("offsets", "data", "large", "match"),
    [
        (_offs([0, 3, 2]), b"abc", False, "not monotonic"),
        (_offs([0, 4]), b"abc", False, "past the end"),
        (_offs([-1, 2]), b"abc", False, "negative"),
        (_offs([0, 2])[:-1], b"abc", False, "multiple"),
        (_offs([0, 2], "<i8")[:-4], b"abc", True, "multiple"),
        (_offs([0, 2**40], "<i8"), b"abc", True, "past the end"),
        (_offs([0, -(2**40)], "<i8"), b"abc", True, "negative"),
    ],
)
def test_malformed_offsets_raise_value_error(offsets: bytes, data: bytes, large: bool, match: str) -> None:
    for fn in (_native.minhash, _native.hash_texts):
        with pytest.raises(ValueError, match=match):
            fn(offsets, data, large_offsets=large)


def test_accepts_any_contiguous_buffer() -> None:
    data = b"hello world again"
    o32 = np.array([0, 5, 17], dtype=np.int32)
    want = _native.minhash(o32.tobytes(), data, ngram=1)
    assert _native.minhash(o32, np.frombuffer(data, dtype=np.uint8), ngram=1) == want
    assert _native.minhash(memoryview(o32), bytearray(data), ngram=1) == want
    assert _native.minhash(o32.astype(np.int64), data, ngram=1, large_offsets=True) == want
    assert _native.minhash(b"", b"") == b""
    assert _native.minhash(_offs([0]), b"") == b""


def test_bad_arguments() -> None:
    o, d = _offs([0, 1]), b"a"
    with pytest.raises(TypeError, match="buffer protocol"):
        _native.minhash([0, 1], d)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="buffer protocol"):
        _native.hash_texts(o, "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="contiguous"):
        _native.minhash(np.arange(4, dtype=np.int32)[::2], d)
    for kw in ({"num_perm": 0}, {"num_perm": -3}, {"ngram": 0}, {"num_perm": 10**9}, {"num_threads": -1}):
        with pytest.raises(ValueError):
            _native.minhash(o, d, **kw)  # type: ignore[arg-type]


def test_lsh_bands() -> None:
    sig = np.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 9, 9], [9, 9, 3, 4, 5, 6]], dtype="<u4")
    keys = np.frombuffer(_native.lsh_bands(sig, 3, 6, 3, 2), dtype="<u8").reshape(3, 3)
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] == keys[1, 1] and keys[0, 2] != keys[1, 2]
    assert keys[0, 0] != keys[2, 0] and keys[0, 1] == keys[2, 1] and keys[0, 2] == keys[2, 2]
    # the band index is mixed in: equal slices in different bands give different keys
    same = np.array([[7, 7, 7, 7]], dtype="<u4")
    k = np.frombuffer(_native.lsh_bands(same, 1, 4, 2, 2), dtype="<u8")
    assert k[0] != k[1]
    # rows beyond bands * rows are ignored
    k2 = np.frombuffer(_native.lsh_bands(np.array([[7, 7, 7, 7, 1]], dtype="<u4"), 1, 5, 2, 2), dtype="<u8")
    assert (k == k2).all()
    with pytest.raises(ValueError, match="exceeds num_perm"):
        _native.lsh_bands(sig, 3, 6, 4, 2)
    with pytest.raises(ValueError, match="signature buffer"):
        _native.lsh_bands(sig, 4, 6, 3, 2)
    with pytest.raises(ValueError, match=">= 1"):
        _native.lsh_bands(sig, 3, 6, 0, 2)


def test_jaccard_estimate() -> None:
    sig = np.array([[1, 2, 3, 4], [1, 2, 0, 0], [5, 6, 7, 8]], dtype="<u4")
    for width, dt in ((8, "<u8"), (4, "<u4")):
        a, b = np.array([0, 0, 1], dtype=dt), np.array([1, 2, 1], dtype=dt)
        got = np.frombuffer(_native.jaccard_estimate(sig, 3, 4, a, b, index_width=width), dtype="<f4")
        assert got.tolist() == [0.5, 0.0, 1.0]
    with pytest.raises(ValueError, match="out of range"):
        _native.jaccard_estimate(sig, 3, 4, np.array([3], dtype="<u8"), np.array([0], dtype="<u8"))
    with pytest.raises(ValueError, match="equal lengths"):
        _native.jaccard_estimate(sig, 3, 4, np.array([0, 1], dtype="<u8"), np.array([0], dtype="<u8"))
    with pytest.raises(ValueError, match="index_width"):
        _native.jaccard_estimate(sig, 3, 4, b"", b"", index_width=2)


def test_connected_components_raw() -> None:
    src = np.array([10, 3, 7, 2**64 - 1], dtype="<u8")
    dst = np.array([3, 5, 8, 100], dtype="<u8")
    nodes, roots = _native.connected_components(src, dst)
    assert np.frombuffer(nodes, dtype="<u8").tolist() == [3, 5, 7, 8, 10, 100, 2**64 - 1]
    assert np.frombuffer(roots, dtype="<u8").tolist() == [3, 3, 7, 7, 3, 100, 100]
    assert _native.connected_components(b"", b"") == (b"", b"")
    with pytest.raises(ValueError, match="same length"):
        _native.connected_components(src, dst[:2])
    with pytest.raises(ValueError, match="whole number"):
        _native.connected_components(b"1234567", b"1234567")


def test_gil_is_released() -> None:
    """While a long minhash batch runs, another Python thread keeps running (see gil_probe)."""
    text = " ".join(f"w{i}" for i in range(2_000))
    o, d = bufs(pa.array([text] * 6_000))
    assert_releases_gil(lambda: _native.minhash(o, d, num_threads=1))


def test_gil_probe_sees_a_native_call_that_holds_the_gil() -> None:
    """The probe itself: `tokenize` keeps the GIL, and the probe says so."""
    text = " ".join(["word"] * 2_000_000)
    with pytest.raises(AssertionError, match="holds the GIL"):
        assert_releases_gil(lambda: _native.tokenize(text))


THREAD_VARS = ("CURATE_NUM_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS")


def run_native(code: str, **env: str) -> str:
    """Run `code` in a fresh interpreter with only the thread variables in `env` set."""
    full = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    res = subprocess.run([sys.executable, "-c", code], env={**full, **env}, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_default_thread_count_follows_the_environment() -> None:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    code = "from curate import _native; print(_native.effective_threads(), _native.effective_threads(3))"
    assert run_native(code) == f"{cpus} 3"
    # Ray sets OMP_NUM_THREADS to the worker's CPUs: a 1-CPU task computes on one thread
    assert run_native(code, OMP_NUM_THREADS="1") == "1 3"
    assert run_native(code, OMP_NUM_THREADS="2,1") == "2 3"
    assert run_native(code, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="4") == "4 3"
    assert run_native(code, OMP_NUM_THREADS="1", RAYON_NUM_THREADS="4", CURATE_NUM_THREADS="2") == "2 3"
    assert run_native(code, OMP_NUM_THREADS="0", CURATE_NUM_THREADS="lots") == f"{cpus} 3"


def test_default_thread_count_is_read_at_each_call() -> None:
    """Ray sets OMP_NUM_THREADS per task in a reused worker process: each call reads it anew."""
    code = """
import os
from curate import _native
os.environ["OMP_NUM_THREADS"] = "1"
a = _native.effective_threads()
os.environ["OMP_NUM_THREADS"] = "2"
b = _native.effective_threads()
print(a, b, _native.thread_pools())
"""
    assert run_native(code) == "1 2 [1, 2]"


ONE_THREAD = """
import os
import numpy as np
import pyarrow as pa
from curate import _native

def threads():
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                out[int(tid)] = f.read().strip()
        except FileNotFoundError:
            pass
    return out

arr = pa.array([f"doc {i} " + "some words here " * (i % 50) for i in range(20_000)])
o, d = arr.buffers()[1], arr.buffers()[2]
idx = np.arange(1000, dtype="<u8")
before = threads()
sigs = _native.minhash(o, d, num_perm=64)
first = threads()
for _ in range(20):
    _native.minhash(o, d, num_perm=64)
    _native.hash_texts(o, d)
    _native.normalize_texts(o, d)
    _native.lsh_bands(sigs, len(arr), 64, 16, 4)
    _native.jaccard_estimate(sigs, len(arr), 64, idx, idx[::-1].copy())
    _native.text_jaccard_pairs(o, d, idx, idx[::-1].copy())
    _native.connected_components(idx, idx[::-1].copy())
after = threads()
new = {t: n for t, n in after.items() if t not in before}
print(sorted(new.values()), first == after, _native.thread_pools(), _native.effective_threads())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the thread names in /proc")
def test_one_cpu_worker_computes_on_one_cached_thread() -> None:
    """With OMP_NUM_THREADS=1 (a 1-CPU Ray worker) every batch call runs on one pool thread,
    built once: after 140 calls the process has exactly one new thread, the same one the first
    call started (rayon's global pool, one thread per core, is never started)."""
    out = run_native(ONE_THREAD, OMP_NUM_THREADS="1")
    assert out == "['curate1-0'] True [1] 1", out


def test_explicit_thread_counts_reuse_their_pools() -> None:
    o, d = bufs(pa.array(["some text to hash " * 20] * 2_000))
    for _ in range(5):
        _native.minhash(o, d, num_threads=2)
        _native.minhash(o, d, num_threads=3)
    pools = _native.thread_pools()
    assert {2, 3} <= set(pools) and len(pools) == len(set(pools))
    assert _native.effective_threads(2) == 2 and _native.effective_threads(3) == 3


def test_kernel_and_unicode_version() -> None:
    assert _native.minhash_kernel() in {"avx512", "avx2", "portable"}
    import unicodedata

    assert _native.UNICODE_VERSION == unicodedata.unidata_version
