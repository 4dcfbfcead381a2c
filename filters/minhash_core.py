"""Typed Python wrappers over the native near-duplicate core (`curate._native`).

Everything here takes Arrow string columns (``pyarrow.Array`` / ``ChunkedArray`` of ``string``,
``large_string``, ``binary`` or ``large_binary``; views and dictionaries are cast first) and hands
their offsets and data buffers to Rust zero-copy: no per-document Python object is created. Nulls
count as empty strings. Results come back as numpy arrays that are read-only views of the bytes
the native call returned (``.copy()`` them to write).

Shingling (identical to the ground truth in ``tests/data/evaldata/neardup``)::

    tokens   = re.findall(r"\\w+", text.lower())        # CPython semantics, exactly
    word:    {" ".join(tokens[i:i+n]) for i in range(len(tokens) - n + 1)}
             (a document with 1..n-1 tokens is one shingle of all of them)
    char:    norm = " ".join(tokens); {norm[i:i+n] ...} (a shorter non-empty norm is one shingle)

Each shingle is hashed with xxh3-64 (seed 0) and MinHashed with ``num_perm`` permutations
``a*x + b mod 2**32`` of its low 32 bits. A document without shingles gets an all-``2**32-1``
signature. Invalid UTF-8 is decoded with replacement characters, never an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Union

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped]

from curate import _native

if TYPE_CHECKING:
    from typing_extensions import Buffer

__all__ = [
    "EMPTY_SIGNATURE_VALUE",
    "candidate_probability",
    "connected_components",
    "estimated_jaccard",
    "exact_jaccard",
    "exact_jaccard_pairs",
    "hash_texts",
    "lsh_band_keys",
    "minhash_signatures",
    "optimal_bands_rows",
    "shingle_hashes",
    "tokenize",
]

#: Signature value of every permutation for a document without shingles.
EMPTY_SIGNATURE_VALUE = 0xFFFF_FFFF

TextColumn = Union[pa.Array, pa.ChunkedArray, Sequence[Union[str, None]]]


def _as_chunks(arr: TextColumn) -> list[pa.Array]:
    """Chunks of `arr` as string/binary arrays with int32 or int64 offsets and no nulls."""
    if isinstance(arr, pa.ChunkedArray):
        chunks = list(arr.chunks)
        typ = arr.type
    elif isinstance(arr, pa.Array):
        chunks = [arr]
        typ = arr.type
    else:
        chunks = [pa.array(arr, type=pa.large_string())]
        typ = pa.large_string()
    if pa.types.is_dictionary(typ):
        typ = typ.value_type
    if pa.types.is_string_view(typ):
        typ = pa.large_string()
    elif pa.types.is_binary_view(typ):
        typ = pa.large_binary()
    if pa.types.is_null(typ):
        typ = pa.string()
    if not (
        pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
        or pa.types.is_binary(typ)
        or pa.types.is_large_binary(typ)
    ):
        raise TypeError(f"expected an Arrow string or binary column, got {typ}")
    out = []
    for c in chunks:
        if c.type != typ:
            c = c.cast(typ)
        if c.null_count:
            c = c.fill_null(b"" if pa.types.is_binary(typ) or pa.types.is_large_binary(typ) else "")
        out.append(c)
    return out


def _buffers(c: pa.Array) -> tuple[Buffer, Buffer, bool]:
    """(offsets, data, large_offsets) of a non-empty chunk, offsets sliced to the chunk."""
    large = pa.types.is_large_string(c.type) or pa.types.is_large_binary(c.type)
    width = 8 if large else 4
    bufs = c.buffers()
    offsets = bufs[1]
    data = bufs[2] if bufs[2] is not None else b""
    if offsets is None:  # only possible for a zero-length chunk
        return b"", data, large
    return offsets.slice(c.offset * width, (len(c) + 1) * width), data, large


def hash_texts(arr: TextColumn, *, seed: int = 0) -> npt.NDArray[np.uint64]:
    """xxh3-64 (with `seed`) of the UTF-8 bytes of every value: shape (n,), uint64.

    With seed 0 the values equal ``xxhash.xxh3_64_intdigest(value.encode())``."""
    parts = []
    for c in _as_chunks(arr):
        if len(c) == 0:
            continue
        offsets, data, large = _buffers(c)
        raw = _native.hash_texts(offsets, data, seed=seed, large_offsets=large)
        parts.append(np.frombuffer(raw, dtype="<u8"))
    if not parts:
        return np.empty(0, dtype=np.uint64)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def minhash_signatures(
    arr: TextColumn,
    num_perm: int = 128,
    ngram: int = 5,
    char_ngrams: bool = False,
    seed: int = 1,
    *,
    lowercase: bool = True,
    num_threads: int = 0,
) -> npt.NDArray[np.uint32]:
    """MinHash signatures of every value: shape (n, num_perm), uint32.

    The batch runs with the GIL released, in parallel over documents on rayon's global pool
    (sized by ``RAYON_NUM_THREADS``, default: all cores) or on `num_threads` threads if > 0."""
    parts = []
    for c in _as_chunks(arr):
        if len(c) == 0:
            continue
        offsets, data, large = _buffers(c)
        raw = _native.minhash(
            offsets,
            data,
            num_perm=num_perm,
            ngram=ngram,
            char_ngrams=char_ngrams,
            seed=seed,
            lowercase=lowercase,
            large_offsets=large,
            num_threads=num_threads,
        )
        parts.append(np.frombuffer(raw, dtype="<u4").reshape(len(c), num_perm))
    if not parts:
        if num_perm < 1:
            raise ValueError(f"num_perm must be >= 1, got {num_perm}")
        return np.empty((0, num_perm), dtype=np.uint32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _signature_matrix(sigs: npt.ArrayLike) -> npt.NDArray[np.uint32]:
    m = np.asarray(sigs)
    if m.ndim != 2:
        raise ValueError(f"signatures must be a 2-D (n_docs, num_perm) array, got shape {m.shape}")
    if m.dtype != np.uint32:
        raise TypeError(f"signatures must be uint32, got {m.dtype}")
    return np.ascontiguousarray(m, dtype="<u4")


def lsh_band_keys(sigs: npt.ArrayLike, bands: int, rows: int) -> npt.NDArray[np.uint64]:
    """LSH band keys: shape (n, bands), uint64. Two documents are candidates iff they share a key
    in the same column (band); the band index is mixed into the key. Documents without shingles
    (all-``EMPTY_SIGNATURE_VALUE`` signatures) share every key: they are duplicates of each other."""
    m = _signature_matrix(sigs)
    raw = _native.lsh_bands(m, m.shape[0], m.shape[1], bands, rows)
    return np.frombuffer(raw, dtype="<u8").reshape(m.shape[0], bands)


def _node_ids(x: npt.ArrayLike, name: str) -> npt.NDArray[np.uint64]:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        return np.empty(0, dtype="<u8")
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got {a.dtype}")
    if np.issubdtype(a.dtype, np.signedinteger) and (a < 0).any():
        raise ValueError(f"{name} holds negative node ids")
    return np.ascontiguousarray(a, dtype="<u8")


def connected_components(
    src: npt.ArrayLike, dst: npt.ArrayLike
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Connected components of the edges ``src[i] - dst[i]`` (non-negative integer node ids).

    Returns ``(nodes, roots)``: every node id that appears, ascending, and for each the minimum
    node id of its component (deterministic whatever the edge order)."""
    s, d = _node_ids(src, "src"), _node_ids(dst, "dst")
    nodes, roots = _native.connected_components(s, d)
    return np.frombuffer(nodes, dtype="<u8"), np.frombuffer(roots, dtype="<u8")


def estimated_jaccard(
    sigs: npt.ArrayLike, index_a: npt.ArrayLike, index_b: npt.ArrayLike
) -> npt.NDArray[np.float32]:
    """MinHash Jaccard estimates (share of equal signature values) of the row pairs
    ``(sigs[index_a[i]], sigs[index_b[i]])``: shape (n_pairs,), float32."""
    m = _signature_matrix(sigs)
    ia, ib = _node_ids(index_a, "index_a"), _node_ids(index_b, "index_b")
    raw = _native.jaccard_estimate(m, m.shape[0], m.shape[1], ia, ib, index_width=8)
    return np.frombuffer(raw, dtype="<f4")


def exact_jaccard(
    text_a: str, text_b: str, ngram: int = 5, char_ngrams: bool = False, *, lowercase: bool = True
) -> float:
    """Exact Jaccard similarity of the shingle sets of two texts (1.0 if both have none)."""
    return _native.exact_jaccard(text_a, text_b, ngram, char_ngrams, lowercase)


def exact_jaccard_pairs(
    arr: TextColumn,
    index_a: npt.ArrayLike,
    index_b: npt.ArrayLike,
    ngram: int = 5,
    char_ngrams: bool = False,
    *,
    lowercase: bool = True,
    num_threads: int = 0,
) -> npt.NDArray[np.float64]:
    """Exact Jaccard similarities of the text pairs ``(arr[index_a[i]], arr[index_b[i]])``:
    shape (n_pairs,), float64. For verifying many candidate pairs at once: each distinct document
    is shingled once (in parallel, GIL released). Shingles are compared by their xxh3-64 hashes,
    so a value differs from :func:`exact_jaccard` only if two distinct shingles collide in 64
    bits."""
    ia, ib = _node_ids(index_a, "index_a"), _node_ids(index_b, "index_b")
    if ia.shape != ib.shape:
        raise ValueError(f"index_a and index_b must have the same length, got {ia.size} and {ib.size}")
    chunks = [c for c in _as_chunks(arr) if len(c)]
    if not chunks:
        if ia.size:
            raise ValueError("indices given for an empty text column")
        return np.empty(0, dtype=np.float64)
    col = chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks)
    offsets, data, large = _buffers(col)
    raw = _native.text_jaccard_pairs(
        offsets,
        data,
        ia,
        ib,
        ngram=ngram,
        char_ngrams=char_ngrams,
        lowercase=lowercase,
        large_offsets=large,
        index_width=8,
        num_threads=num_threads,
    )
    return np.frombuffer(raw, dtype="<f8")


def shingle_hashes(
    text: str, ngram: int = 5, char_ngrams: bool = False, *, lowercase: bool = True
) -> npt.NDArray[np.uint64]:
    """Sorted distinct xxh3-64 hashes of the shingles of `text` (what MinHash permutes)."""
    return np.frombuffer(_native.shingle_hashes(text, ngram, char_ngrams, lowercase), dtype="<u8")


def tokenize(text: str, *, lowercase: bool = True) -> list[str]:
    """Tokens as the shingler sees them: ``re.findall(r"\\w+", text.lower())``."""
    return _native.tokenize(text, lowercase)


def candidate_probability(
    similarity: npt.ArrayLike, bands: int, rows: int
) -> npt.NDArray[np.float64]:
    """Probability that LSH with `bands` x `rows` makes a pair of Jaccard `similarity` a
    candidate: the S-curve ``1 - (1 - s**rows)**bands``."""
    s = np.asarray(similarity, dtype=np.float64)
    return 1.0 - (1.0 - s**rows) ** bands


def _integrate(f_values: npt.NDArray[np.float64], lo: float, hi: float) -> npt.NDArray[np.float64]:
    """Composite Simpson rule over the last axis (odd number of equally spaced samples)."""
    n = f_values.shape[-1] - 1
    h = (hi - lo) / n
    w = np.ones(n + 1)
    w[1:-1:2] = 4.0
    w[2:-1:2] = 2.0
    return np.asarray(f_values @ w * (h / 3.0), dtype=np.float64)


def optimal_bands_rows(
    threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5
) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising the weighted error of the LSH
    S-curve P(s) = 1 - (1 - s**rows)**bands around `threshold`:

        fp_weight * integral_0^t P(s) ds  +  fn_weight * integral_t^1 (1 - P(s)) ds

    (the area of false positives below the threshold and of false negatives above it). Ties go to
    the fewest bands, then fewest rows."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be >= 1, got {num_perm}")
    if fp_weight < 0 or fn_weight < 0 or fp_weight + fn_weight <= 0:
        raise ValueError("fp_weight and fn_weight must be >= 0 and not both 0")
    samples = 401
    s_lo = np.linspace(0.0, threshold, samples)
    s_hi = np.linspace(threshold, 1.0, samples)
    best: tuple[float, int, int] | None = None
    for b in range(1, num_perm + 1):
        r = np.arange(1, num_perm // b + 1, dtype=np.float64)[:, None]
        fp = _integrate(1.0 - (1.0 - s_lo[None, :] ** r) ** b, 0.0, threshold)
        fn = _integrate((1.0 - s_hi[None, :] ** r) ** b, threshold, 1.0)
        err = fp_weight * fp + fn_weight * fn
        k = int(np.argmin(err))
        cand = (float(err[k]), b, k + 1)
        if best is None or cand[0] < best[0] - 1e-15:
            best = cand
    assert best is not None
    return best[1], best[2]

