"""The native ``normalize`` clean-up against its specification, the pyarrow.compute chain
``normalize_reference`` (the stage's original implementation): byte-for-byte equal output and
equal ``changed`` counts, on the real-text quickstart sample, on hypothesis-generated strings from a
nasty alphabet for every parameter combination, and on the Arrow layouts a column can come in
(nulls, slices, chunks, large_string, huge documents)."""

from __future__ import annotations

import glob
import gzip
import io
import itertools
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import zstandard
from curate.pipelines import _textops
from curate.pipelines._textops import normalize_reference, normalize_text
from curate.pipelines.stages.normalize import Normalize, NormalizeParams
from gil_probe import assert_releases_gil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate import _native

DATA = Path(__file__).resolve().parent.parent / "pipelines" / "examples" / "data"
FORMS = ["NFC", "NFKC", "NFD", "NFKD", "none"]
BOOLS = list(itertools.product([True, False], repeat=3))  # remove_control, collapse, strip

NASTY = (
    [" ", "  ", "\t", "\r", "\n", "\r\n", "\x0b", "\x0c", "\xa0", "\u3000", "\ufeff", "\u0301"]
    + [chr(c) for c in range(0x20)]
    + [chr(c) for c in range(0x7F, 0xA0)]
    + [chr(c) for c in range(0x2000, 0x200B)]
    + ["\u1680", "\u202f", "\u205f", "\u2028", "\u2029", "\u180e", "\u200b"]
    + ["\ufb01", "e", "\u00e9", "E\u0301", "\u0323", "a", "Z", "1", ".", "\u1100\u1161", "\uac00", "\u11a8"]
    + ["\U0001f600", "\U0001f44d\U0001f3fd", "\u2126", "\u212b", "\u00bd", "\u2460", "\uff21"]
)


def reference(arr: pa.Array | pa.ChunkedArray, **kw: object) -> tuple[list[str | None], int]:
    out = normalize_reference(arr, **kw)  # type: ignore[arg-type]
    changed = pc.sum(pc.not_equal(arr, out)).as_py() or 0
    return out.to_pylist(), int(changed)


def check(arr: pa.Array | pa.ChunkedArray, **kw: object) -> None:
    want, want_changed = reference(arr, **kw)
    got, changed = normalize_text(arr, **kw)  # type: ignore[arg-type]
    assert got.type == arr.type
    assert isinstance(got, pa.ChunkedArray) == isinstance(arr, pa.ChunkedArray)
    assert len(got) == len(arr)
    got_list = got.to_pylist()
    if got_list != want:
        bad = next(i for i, (g, w) in enumerate(zip(got_list, want)) if g != w)
        raise AssertionError(
            f"{kw}: value {bad} differs\n in:   {arr[bad].as_py()!r}\n want: {want[bad]!r}\n got:  {got_list[bad]!r}"
        )
    assert changed == want_changed, kw
    got.validate(full=True)


def sample_texts() -> list[str]:
    texts = []
    for p in sorted(glob.glob(str(DATA / "*.jsonl.gz")) + glob.glob(str(DATA / "*.jsonl.zst"))):
        raw = Path(p).read_bytes()
        if p.endswith(".gz"):
            raw = gzip.decompress(raw)
        else:
            raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)).read()
        texts += [json.loads(line)["text"] for line in raw.decode("utf-8").splitlines() if line.strip()]
    return texts


@pytest.fixture(scope="module")
def sample() -> pa.Array:
    texts = sample_texts()
    assert len(texts) > 2000
    return pa.array(texts, pa.string())


SAMPLE_PARAMS = (
    [dict(form=f) for f in FORMS]
    + [dict(remove_control=False), dict(collapse_whitespace=False), dict(strip=False)]
    + [dict(remove_control=False, collapse_whitespace=False, strip=False, form="none")]
    + [dict(max_newlines=1), dict(max_newlines=5)]
)


@pytest.mark.parametrize("kw", SAMPLE_PARAMS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_quickstart_sample_equals_reference(sample: pa.Array, kw: dict[str, object]) -> None:
    check(sample, **kw)


def test_quickstart_sample_with_nasty_characters_injected(sample: pa.Array) -> None:
    rng = random.Random(7)
    texts = []
    for t in sample.to_pylist()[:600]:
        chars = list(t)
        for _ in range(20):
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(NASTY))
        texts.append("".join(chars))
    arr = pa.array(texts)
    for form, (rc, cw, strip) in itertools.product(["NFC", "NFKD"], BOOLS):
        check(arr, form=form, remove_control=rc, collapse_whitespace=cw, strip=strip)


nasty_text = st.lists(st.sampled_from(NASTY), max_size=40).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(st.one_of(nasty_text, st.none()), min_size=1, max_size=8), max_newlines=st.integers(1, 4))
def test_nasty_strings_every_parameter_combination(texts: list[str | None], max_newlines: int) -> None:
    arr = pa.array(texts, pa.string())
    for form, (rc, cw, strip) in itertools.product(FORMS, BOOLS):
        check(arr, form=form, remove_control=rc, collapse_whitespace=cw, strip=strip, max_newlines=max_newlines)


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(st.text(max_size=30), min_size=1, max_size=5))
def test_arbitrary_unicode(texts: list[str]) -> None:
    arr = pa.array(texts, pa.large_string())
    for form in FORMS:
        check(arr, form=form)


@pytest.mark.parametrize("form", ["NFC", "NFKC", "NFD", "NFKD"])
def test_every_code_point_normalises_as_pyarrow(form: str) -> None:
    """Same Unicode data as pyarrow's utf8proc: every code point alone and between marks."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000 and c != 0x0D]
    kw = dict(form=form, remove_control=False, collapse_whitespace=False, max_newlines=1000, strip=False)
    for fmt in ["{}", "a\u0301{}\u0323"]:
        arr = pa.array([fmt.format(chr(c)) for c in cps])
        want = pc.utf8_normalize(arr, form)
        got, _ = normalize_text(arr, **kw)  # type: ignore[arg-type]
        assert got.equals(want)


def test_nulls_empties_slices_chunks_and_large_string() -> None:
    texts = [" a\r\n\r\n\r\nb ", None, "", "  ", None, "x\u3000\u3000y", "\x00", "ok"] * 5
    for typ in [pa.string(), pa.large_string()]:
        arr = pa.array(texts, typ)
        check(arr)
        for start in range(0, 11):
            check(arr.slice(start, 17))
            check(arr.slice(start))
        check(pa.chunked_array([arr.slice(0, 3), arr.slice(3, 0), arr.slice(3, 9), arr.slice(12)], typ))
        check(pa.chunked_array([], typ))
        check(arr.slice(5, 0))
        got, n = normalize_text(pa.array([None, None], typ))
        assert got.to_pylist() == [None, None] and n == 0
    # Not string/large_string: the pyarrow reference handles it.
    check(pa.array(texts, pa.string()).dictionary_encode().cast(pa.string()))


def test_sliced_validity_is_bit_exact() -> None:
    texts = [None if i % 3 == 0 else f" {i}\t{i} " for i in range(100)]
    arr = pa.array(texts)
    for start in range(9):
        sl = arr.slice(start, 60)
        got, _ = normalize_text(sl)
        assert got.is_null().to_pylist() == sl.is_null().to_pylist()
        assert got.null_count == sl.null_count
        check(sl)


def test_null_slots_with_garbage_bytes_are_not_read() -> None:
    # A null slot whose bytes are not UTF-8: pyarrow would never read them, neither do we.
    offsets = pa.array([0, 2, 4, 6], pa.int32()).buffers()[1]
    data = pa.py_buffer(b" a\xff\xfe b")
    validity = pa.array([True, False, True]).buffers()[1]
    arr = pa.Array.from_buffers(pa.string(), 3, [validity, offsets, data], null_count=1)
    got, n = normalize_text(arr)
    assert got.to_pylist() == ["a", None, "b"] and n == 2


def test_invalid_utf8_is_a_value_error() -> None:
    offsets = pa.array([0, 1, 3], pa.int32()).buffers()[1]
    arr = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"a\xc3(")])
    with pytest.raises(ValueError, match="not valid UTF-8"):
        normalize_text(arr)


def test_bad_arguments_raise() -> None:
    arr = pa.array(["a"])
    with pytest.raises(ValueError, match="form"):
        normalize_text(arr, form="nfc")
    with pytest.raises(ValueError, match="max_newlines"):
        normalize_text(arr, max_newlines=-1)
    offs = pa.array([0, 5], pa.int32()).buffers()[1]
    with pytest.raises(ValueError, match="past the end"):
        _native.normalize_texts(offs, b"abc")
    with pytest.raises(ValueError, match="validity"):
        _native.normalize_texts(pa.array([0] * 20, pa.int32()).buffers()[1], b"", b"\xff")
    with pytest.raises(TypeError):
        _native.normalize_texts(offs, 3)  # type: ignore[arg-type]


def test_ten_megabyte_documents() -> None:
    rng = random.Random(3)
    unit = "Cafe\u0301 \t au\u00a0lait\r\n  \n\n\n\x07 \u2003word\ufb01 "
    big = "".join(rng.choice([unit, "plain ascii text. ", "\u00e9t\u00e9 "]) for _ in range(520_000))
    assert len(big.encode()) > 10_000_000
    arr = pa.array([big, " small ", big[: 3_000_000] + "\r"], pa.large_string())
    check(arr)
    check(arr, form="NFKD", collapse_whitespace=False)
    check(pa.array([big], pa.string()), form="none", strip=False)


def test_num_threads_and_results_independent_of_threads(sample: pa.Array) -> None:
    one, n1 = normalize_text(sample, num_threads=1)
    two, n2 = normalize_text(sample, num_threads=2)
    default, n0 = normalize_text(sample)
    assert one.equals(two) and one.equals(default) and n1 == n2 == n0


def test_gil_is_released(sample: pa.Array) -> None:
    """While a long batch is normalised, another Python thread keeps running (see gil_probe):
    ten copies of the sample, about 70 MB, take a few hundred milliseconds on one thread."""
    big = pa.concat_arrays([sample] * 10)
    assert_releases_gil(lambda: normalize_text(big, num_threads=1))


def test_overflowing_32_bit_output_splits_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    real = _native.normalize_texts
    calls = []

    def fake(offsets, data, validity=None, **kw):  # type: ignore[no-untyped-def]
        n = len(offsets) // 4 - 1
        calls.append(n)
        if n > 2 and not kw["large_offsets"]:
            raise OverflowError("too big")
        return real(offsets, data, validity, **kw)

    monkeypatch.setattr(_textops._native, "normalize_texts", fake)
    arr = pa.array([f" x{i} " if i % 4 else None for i in range(11)])
    got, n = normalize_text(arr)
    assert isinstance(got, pa.ChunkedArray) and got.num_chunks > 1
    assert got.to_pylist() == [f"x{i}" if i % 4 else None for i in range(11)]
    assert n == 8
    assert max(calls) == 11 and min(calls) <= 2


def test_stage_counts_changed_documents(sample: pa.Array) -> None:
    batch = pa.table({"id": pa.array([str(i) for i in range(len(sample))]), "text": sample})
    out = Normalize(NormalizeParams()).process(batch)
    want, changed = reference(sample)
    assert out.table.column("text").to_pylist() == want
    assert out.counters == {"changed": changed}
    assert out.table.column_names == batch.column_names
