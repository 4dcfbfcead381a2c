"""curate's private native core (Rust): hashing, MinHash, LSH, union-find.

Buffers are taken zero-copy through the buffer protocol (bytes, pyarrow.Buffer, C-contiguous
numpy arrays of any dtype); they must not be mutated while a call runs (the GIL is released).
Results are little-endian bytes, to wrap with ``numpy.frombuffer``. Bad input raises ValueError
(TypeError for objects without the buffer protocol, MemoryError for impossible allocations).
Use the typed wrappers in ``curate.filters.minhash_core`` rather than this module directly.

Threads: parallel calls run on a thread pool of `num_threads` threads when given (> 0), else of
the default count, read from the environment at each call: ``CURATE_NUM_THREADS``, else
``RAYON_NUM_THREADS``, else ``OMP_NUM_THREADS`` (which Ray sets in each worker to the CPUs of its
task or actor), else the CPUs available to the process. One pool per size is built on first use
and kept; calls without a `num_threads` parameter use the default count.
"""

from typing import Any, TypeAlias

import numpy as np
from typing_extensions import Buffer

# Any object exporting a contiguous buffer. numpy arrays are listed because numpy declares
# `__buffer__` to type checkers only on Python >= 3.12.
_BufferLike: TypeAlias = Buffer | np.ndarray[Any, Any]

__all__ = [
    "UNICODE_VERSION",
    "connected_components",
    "effective_threads",
    "exact_jaccard",
    "hash_texts",
    "jaccard_estimate",
    "lsh_bands",
    "minhash",
    "minhash_kernel",
    "normalize_texts",
    "shingle_hashes",
    "text_jaccard_pairs",
    "thread_pools",
    "tokenize",
]

#: Unicode version of the word/case tables (that of the CPython the shingling reproduces).
UNICODE_VERSION: str

def hash_texts(
    offsets: _BufferLike, data: _BufferLike, *, seed: int = 0, large_offsets: bool = False
) -> bytes:
    """xxh3-64 of the raw bytes of every value of an Arrow string/binary array.

    `offsets` holds n+1 int32 (int64 with `large_offsets`) little-endian offsets into `data`
    (non-negative, non-decreasing, at most len(data); an empty buffer means n = 0). Returns n
    little-endian u64."""

def minhash(
    offsets: _BufferLike,
    data: _BufferLike,
    *,
    num_perm: int = 128,
    ngram: int = 5,
    char_ngrams: bool = False,
    seed: int = 1,
    lowercase: bool = True,
    large_offsets: bool = False,
    num_threads: int = 0,
) -> bytes:
    """MinHash signatures of every value (Arrow offsets/data as in `hash_texts`): n x num_perm
    little-endian u32, row-major. Invalid UTF-8 is decoded with replacement characters.
    `num_threads` 0 uses the default thread count (see the module docstring)."""

def lsh_bands(signatures: _BufferLike, n_docs: int, num_perm: int, bands: int, rows: int) -> bytes:
    """LSH keys of an n_docs x num_perm u32 signature matrix: n_docs x bands little-endian u64,
    xxh3-64 of each band's slice seeded with the band index. Needs bands * rows <= num_perm."""

def jaccard_estimate(
    signatures: _BufferLike,
    n_docs: int,
    num_perm: int,
    index_a: _BufferLike,
    index_b: _BufferLike,
    *,
    index_width: int = 8,
) -> bytes:
    """Share of equal signature values of rows index_a[i] and index_b[i] (u32 or u64 indices per
    `index_width` = 4 or 8): one little-endian f32 per pair."""

def connected_components(src: _BufferLike, dst: _BufferLike) -> tuple[bytes, bytes]:
    """Components of the edges src[i] - dst[i] (u64 little-endian ids): (nodes, roots) as u64
    bytes, nodes ascending and roots the minimum node id of each node's component."""

def text_jaccard_pairs(
    offsets: _BufferLike,
    data: _BufferLike,
    index_a: _BufferLike,
    index_b: _BufferLike,
    *,
    ngram: int = 5,
    char_ngrams: bool = False,
    lowercase: bool = True,
    large_offsets: bool = False,
    index_width: int = 8,
    num_threads: int = 0,
) -> bytes:
    """Jaccard similarity of the shingle sets of the value pairs (index_a[i], index_b[i]) of an
    Arrow string array (offsets/data as in `hash_texts`; u32 or u64 indices per `index_width` = 4
    or 8), shingles compared by their xxh3-64 hashes: one little-endian f64 per pair, 1.0 for two
    documents without shingles. Each distinct document is shingled once. `num_threads` 0 uses the
    default thread count."""

def exact_jaccard(
    text_a: str, text_b: str, ngram: int = 5, char_ngrams: bool = False, lowercase: bool = True
) -> float:
    """Exact Jaccard similarity of the shingle sets of two texts (1.0 if neither has any)."""

def shingle_hashes(
    text: str, ngram: int = 5, char_ngrams: bool = False, lowercase: bool = True
) -> bytes:
    """Sorted distinct xxh3-64 hashes of the shingles of `text`, little-endian u64."""

def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Tokens as the shingler sees them: re.findall(r"\\w+", text.lower())."""

def effective_threads(num_threads: int = 0) -> int:
    """The number of threads a call with this `num_threads` computes on (measured on its pool):
    `num_threads` if > 0, else the default count from the environment as it is now."""

def thread_pools() -> list[int]:
    """The sizes of the thread pools built so far in this process, ascending (each once)."""

def minhash_kernel() -> str:
    """MinHash kernel used on this CPU: "avx512", "avx2" or "portable"."""

def normalize_texts(
    offsets: _BufferLike,
    data: _BufferLike,
    validity: _BufferLike | None = None,
    *,
    validity_offset: int = 0,
    form: str = "NFC",
    remove_control: bool = True,
    collapse_whitespace: bool = True,
    max_newlines: int = 2,
    strip: bool = True,
    large_offsets: bool = False,
    num_threads: int = 0,
) -> tuple[bytes, bytes, int, int]:
    """The `normalize` stage's clean-up of every value (Arrow offsets/data as in `hash_texts`;
    `validity` an Arrow validity bitmap read from bit `validity_offset`, null values come out
    empty): Unicode `form` ("NFC", "NFKC", "NFD", "NFKD" or "none"), CR/CRLF to LF, blanks
    collapsed, control characters removed, spaces before newlines dropped, newline runs cut to
    `max_newlines`, whitespace stripped. Returns (offsets, data, data_len, changed): n+1 offsets
    from 0 of the input's width, a buffer whose first data_len bytes are the values (as long as
    the input's values when they fit there), and how many valid values changed. Invalid UTF-8 in
    a valid value raises ValueError; a result too large for int32 offsets raises OverflowError.
    The GIL is released; `num_threads` 0 uses the default thread count."""
