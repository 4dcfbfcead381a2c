"""Text operations over Arrow string columns, run natively (``curate._native``) where possible.

``normalize_text`` is the ``normalize`` stage's clean-up: one Rust pass per document, in
parallel over documents with the GIL released, reading the Arrow offsets/data buffers zero-copy.
``normalize_reference`` is the pyarrow.compute chain it reproduces byte for byte (the
specification, kept for the tests and the benchmark).
"""

from __future__ import annotations

from typing import Union

import numpy
import pyarrow as pa
import pyarrow.compute as pc

from curate import _native

__all__ = ["normalize_reference", "normalize_text"]

TextArray = Union[pa.Array, pa.ChunkedArray]


def normalize_reference(
    text: TextArray,
    form: str = "NFC",
    remove_control: bool = True,
    collapse_whitespace: bool = True,
    max_newlines: int = 2,
    strip: bool = True,
) -> TextArray:
    """The clean-up as a chain of pyarrow.compute calls: the specification the native pass must match."""
    # Control characters go first (with \r\n -> \n), before the Unicode normalisation (one
    # between a letter and a combining mark would block composition) and before whitespace is
    # collapsed ("a \x01 b" -> "a b"): so normalising a normalised text changes nothing.
    if remove_control:
        text = pc.replace_substring_regex(text, r"\r\n?", "\n")
        text = pc.replace_substring_regex(text, r"[\x00-\x08\x0B-\x1F\x7F-\x9F]", "")
    if form != "none":
        text = pc.utf8_normalize(text, form)
    text = pc.replace_substring_regex(text, r"\r\n?", "\n")
    if collapse_whitespace:
        text = pc.replace_substring_regex(text, r"[\t\x0B\x0C\p{Zs}]+", " ")
    if collapse_whitespace:
        text = pc.replace_substring_regex(text, r" +\n", "\n")
    text = pc.replace_substring_regex(text, "\n{%d,}" % (max_newlines + 1), "\n" * max_newlines)
    if strip:
        text = pc.utf8_trim_whitespace(text)
    return text


def _validity(c: pa.Array) -> pa.Buffer | None:
    """The validity bitmap of `c` starting at bit 0, or None if it has no nulls."""
    if c.null_count == 0:
        return None
    bitmap = c.buffers()[0]
    if c.offset % 8 == 0:
        return bitmap.slice(c.offset // 8, (len(c) + 7) // 8)
    return pc.is_valid(c).buffers()[1]


def _normalize_chunk(c: pa.Array, kw: dict[str, object], num_threads: int) -> tuple[list[pa.Array], int]:
    if len(c) == 0:
        return [c], 0
    large = pa.types.is_large_string(c.type)
    width = 8 if large else 4
    bufs = c.buffers()
    offsets = bufs[1].slice(c.offset * width, (len(c) + 1) * width)
    data = bufs[2] if bufs[2] is not None else b""
    validity = bufs[0] if c.null_count else None
    try:
        new_offsets, new_data, data_len, changed = _native.normalize_texts(
            offsets,
            data,
            validity,
            validity_offset=c.offset,
            large_offsets=large,
            num_threads=num_threads,
            **kw,  # type: ignore[arg-type]
        )
    except OverflowError:
        # The result does not fit 32-bit offsets (NFKC/NFD can grow text): split the chunk.
        if len(c) == 1:
            raise
        half = len(c) // 2
        left, n_left = _normalize_chunk(c.slice(0, half), kw, num_threads)
        right, n_right = _normalize_chunk(c.slice(half), kw, num_threads)
        return left + right, n_left + n_right
    out = pa.Array.from_buffers(
        c.type,
        len(c),
        [_validity(c), pa.py_buffer(new_offsets), pa.py_buffer(new_data).slice(0, data_len)],
        null_count=c.null_count,
    )
    return [out], changed


def normalize_text(
    text: TextArray,
    form: str = "NFC",
    remove_control: bool = True,
    collapse_whitespace: bool = True,
    max_newlines: int = 2,
    strip: bool = True,
    *,
    num_threads: int = 0,
) -> tuple[TextArray, int]:
    """Clean up every value of a string column, as ``normalize_reference`` does.

    Returns the new column (same type and chunking, nulls kept) and the number of non-null values
    that changed. ``string`` and ``large_string`` run natively on rayon's global pool (sized by
    ``RAYON_NUM_THREADS``, default all cores) or on `num_threads` threads if > 0; other types go
    through the pyarrow reference. Invalid UTF-8 raises ValueError."""
    chunked = isinstance(text, pa.ChunkedArray)
    typ = text.type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        out = normalize_reference(text, form, remove_control, collapse_whitespace, max_newlines, strip)
        changed = pc.sum(pc.not_equal(text, out)).as_py() or 0
        return out, int(changed)
    kw = {
        "form": form,
        "remove_control": remove_control,
        "collapse_whitespace": collapse_whitespace,
        "max_newlines": max_newlines,
        "strip": strip,
    }
    chunks = text.chunks if chunked else [text]
    parts: list[pa.Array] = []
    total = 0
    for c in chunks:
        arrays, changed = _normalize_chunk(c, kw, num_threads)
        parts.extend(arrays)
        total += changed
    if chunked:
        return pa.chunked_array(parts, type=typ), total
    if len(parts) == 1:
        return parts[0], total
    return pa.chunked_array(parts, type=typ), total


def hash_column(values: pa.Array | pa.ChunkedArray, *, seed: int = 0) -> numpy.ndarray:
    """xxh3-64 (with ``seed``) of the UTF-8 bytes of every value (natively, from the Arrow
    buffers): uint64, one per value; nulls hash as the empty string."""
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    arr = pc.fill_null(arr.cast(pa.large_string()), "")
    if len(arr) == 0:
        return numpy.empty(0, dtype=numpy.uint64)
    bufs = arr.buffers()
    offsets = bufs[1].slice(arr.offset * 8, (len(arr) + 1) * 8)
    data = bufs[2] if bufs[2] is not None else b""
    raw = _native.hash_texts(offsets, data, seed=seed, large_offsets=True)
    return numpy.frombuffer(raw, dtype="<u8")
