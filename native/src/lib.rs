//! curate's private native core, exposed to Python as `curate._native`.
//!
//! The work lives in pure-Rust modules (`arrow`, `text`, `minhash`, `unionfind`), tested with
//! `cargo test`; this file is only the thin pyo3 binding: it borrows the callers' buffers
//! zero-copy, validates arguments, releases the GIL around the batch work and maps errors to
//! Python exceptions (ValueError for bad input, MemoryError for failed allocations). Nothing here
//! unwraps input-derived values, so bad input raises instead of panicking.
//!
//! Parallel work runs on the cached pools of [`pool`], sized by the call's `num_threads` or, by
//! default, by the CPUs Ray gave the worker (`OMP_NUM_THREADS`; see [`pool`] for the whole rule),
//! never on rayon's global pool.

pub mod arrow;
pub mod error;
pub mod minhash;
pub mod normalize;
pub mod pool;
pub mod text;
mod unicode_tables;
pub mod unionfind;

use std::mem::MaybeUninit;

use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::arrow::{OffsetWidth, StringColumn};
use crate::error::CoreError;
use crate::minhash::MinHashParams;

fn to_py(e: CoreError) -> PyErr {
    match e {
        CoreError::Invalid(m) => PyValueError::new_err(m),
        CoreError::Memory(m) => PyMemoryError::new_err(m),
    }
}

/// A read-only, contiguous byte view of any object exporting the buffer protocol
/// (bytes, bytearray, memoryview, pyarrow.Buffer, C-contiguous numpy arrays of any dtype),
/// requested as `PyBUF_SIMPLE`, so no format/itemsize restriction applies. Released on drop.
///
/// The bytes are read with the GIL released: callers must not mutate a buffer while a call that
/// reads it is running (the same contract as numpy's and pyarrow's own nogil code).
struct ByteView {
    raw: Box<ffi::Py_buffer>,
}

impl ByteView {
    fn get(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Self> {
        let py = obj.py();
        let mut raw: Box<MaybeUninit<ffi::Py_buffer>> = Box::new(MaybeUninit::zeroed());
        // SAFETY: `obj` is a live object; `raw` points to writable memory for a Py_buffer.
        let rc =
            unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), raw.as_mut_ptr(), ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            let cause = PyErr::fetch(py);
            let type_name = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "?".to_owned());
            let err = PyTypeError::new_err(format!(
                "{name} must be a contiguous object supporting the buffer protocol (bytes, \
                 pyarrow.Buffer, C-contiguous numpy array), got {type_name}"
            ));
            err.set_cause(py, Some(cause));
            return Err(err);
        }
        // SAFETY: PyObject_GetBuffer succeeded, so it filled in the Py_buffer.
        let raw = unsafe { raw.assume_init() };
        Ok(ByteView { raw })
    }

    fn as_slice(&self) -> &[u8] {
        let len = usize::try_from(self.raw.len).unwrap_or(0);
        if self.raw.buf.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: a PyBUF_SIMPLE export is `len` contiguous bytes at `buf`, valid until released
        // (in Drop, so for at least the lifetime of `&self`).
        unsafe { std::slice::from_raw_parts(self.raw.buf as *const u8, len) }
    }
}

impl Drop for ByteView {
    fn drop(&mut self) {
        let raw: &mut ffi::Py_buffer = &mut self.raw;
        // SAFETY: the buffer was obtained by PyObject_GetBuffer and is released exactly once.
        // (If the interpreter is gone, so is the exporter, and there is nothing to release.)
        let _ = Python::try_attach(|_| unsafe { ffi::PyBuffer_Release(raw) });
    }
}

fn count_arg(name: &str, v: i64) -> PyResult<usize> {
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} must be >= 0, got {v}")))
}

fn width(large_offsets: bool) -> OffsetWidth {
    if large_offsets {
        OffsetWidth::I64
    } else {
        OffsetWidth::I32
    }
}

fn out_len(parts: &[usize]) -> PyResult<usize> {
    parts
        .iter()
        .try_fold(1usize, |acc, &x| acc.checked_mul(x))
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| PyMemoryError::new_err(format!("output size {parts:?} overflows")))
}

/// The pool size of a call: `num_threads` if > 0, else the default of [`pool::default_threads`]
/// (read from the environment: call it with the GIL held, before detaching).
fn pool_size(num_threads: i64) -> PyResult<usize> {
    Ok(pool::resolve(count_arg("num_threads", num_threads)?))
}

/// Run `f` on the cached pool of `threads` threads (> 0, from [`pool_size`]).
fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> PyResult<T> {
    pool::install(threads, f)
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start {threads} threads: {e}")))
}

fn u64s(buf: &[u8], name: &str) -> PyResult<Vec<u64>> {
    if !buf.len().is_multiple_of(8) {
        return Err(PyValueError::new_err(format!(
            "{name} is {} bytes, not a whole number of u64 values",
            buf.len()
        )));
    }
    Ok(buf
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// xxh3-64 of the raw bytes of every value of an Arrow string/binary array, as little-endian u64
/// bytes (one per value).
#[pyfunction]
#[pyo3(signature = (offsets, data, *, seed=0, large_offsets=false))]
fn hash_texts<'py>(
    py: Python<'py>,
    offsets: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    seed: u64,
    large_offsets: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let (ov, dv) = (
        ByteView::get(offsets, "offsets")?,
        ByteView::get(data, "data")?,
    );
    let col =
        StringColumn::new(ov.as_slice(), dv.as_slice(), width(large_offsets)).map_err(to_py)?;
    let len = out_len(&[col.len(), 8])?;
    let threads = pool_size(0)?;
    PyBytes::new_with(py, len, |out| {
        py.detach(|| in_pool(threads, || minhash::hash_column(&col, seed, out)))?
            .map_err(to_py)
    })
}

/// MinHash signatures of every value of an Arrow string array: `n x num_perm` little-endian u32
/// bytes, row-major. The GIL is released and documents are processed in parallel.
#[pyfunction]
#[pyo3(name = "minhash", signature = (offsets, data, *, num_perm=128, ngram=5, char_ngrams=false, seed=1,
                    lowercase=true, large_offsets=false, num_threads=0))]
#[allow(clippy::too_many_arguments)]
fn py_minhash<'py>(
    py: Python<'py>,
    offsets: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    num_perm: i64,
    ngram: i64,
    char_ngrams: bool,
    seed: u64,
    lowercase: bool,
    large_offsets: bool,
    num_threads: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let params = MinHashParams {
        num_perm: count_arg("num_perm", num_perm)?,
        ngram: count_arg("ngram", ngram)?,
        char_ngrams,
        lowercase,
        seed,
    };
    params.validate().map_err(to_py)?;
    let threads = pool_size(num_threads)?;
    let (ov, dv) = (
        ByteView::get(offsets, "offsets")?,
        ByteView::get(data, "data")?,
    );
    let col =
        StringColumn::new(ov.as_slice(), dv.as_slice(), width(large_offsets)).map_err(to_py)?;
    let len = out_len(&[col.len(), params.num_perm, 4])?;
    PyBytes::new_with(py, len, |out| {
        py.detach(|| in_pool(threads, || minhash::minhash_column(&col, &params, out)))?
            .map_err(to_py)
    })
}

/// LSH band keys of a signature matrix: `n_docs x bands` little-endian u64 bytes.
#[pyfunction]
#[pyo3(signature = (signatures, n_docs, num_perm, bands, rows))]
fn lsh_bands<'py>(
    py: Python<'py>,
    signatures: &Bound<'py, PyAny>,
    n_docs: i64,
    num_perm: i64,
    bands: i64,
    rows: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let n_docs = count_arg("n_docs", n_docs)?;
    let num_perm = count_arg("num_perm", num_perm)?;
    let bands = count_arg("bands", bands)?;
    let rows = count_arg("rows", rows)?;
    let sv = ByteView::get(signatures, "signatures")?;
    let sigs = sv.as_slice();
    minhash::check_signatures(sigs, n_docs, num_perm).map_err(to_py)?;
    let len = out_len(&[n_docs, bands, 8])?;
    let threads = pool_size(0)?;
    PyBytes::new_with(py, len, |out| {
        py.detach(|| {
            in_pool(threads, || {
                minhash::lsh_bands(sigs, n_docs, num_perm, bands, rows, out)
            })
        })?
        .map_err(to_py)
    })
}

/// Estimated Jaccard similarity (share of equal signature values) of the signature rows
/// `index_a[i]` and `index_b[i]`: little-endian f32 bytes, one per pair.
#[pyfunction]
#[pyo3(signature = (signatures, n_docs, num_perm, index_a, index_b, *, index_width=8))]
fn jaccard_estimate<'py>(
    py: Python<'py>,
    signatures: &Bound<'py, PyAny>,
    n_docs: i64,
    num_perm: i64,
    index_a: &Bound<'py, PyAny>,
    index_b: &Bound<'py, PyAny>,
    index_width: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let n_docs = count_arg("n_docs", n_docs)?;
    let num_perm = count_arg("num_perm", num_perm)?;
    let iw = count_arg("index_width", index_width)?;
    if iw != 4 && iw != 8 {
        return Err(PyValueError::new_err(format!(
            "index_width must be 4 or 8, got {iw}"
        )));
    }
    let sv = ByteView::get(signatures, "signatures")?;
    let (av, bv) = (
        ByteView::get(index_a, "index_a")?,
        ByteView::get(index_b, "index_b")?,
    );
    let (sigs, ia, ib) = (sv.as_slice(), av.as_slice(), bv.as_slice());
    let len = out_len(&[ia.len() / iw, 4])?;
    let threads = pool_size(0)?;
    PyBytes::new_with(py, len, |out| {
        py.detach(|| {
            in_pool(threads, || {
                minhash::jaccard_pairs(sigs, n_docs, num_perm, ia, ib, iw, out)
            })
        })?
        .map_err(to_py)
    })
}

/// Jaccard similarity of the shingle sets of the value pairs `(index_a[i], index_b[i])` of an
/// Arrow string array (shingles compared by their xxh3-64 hashes): little-endian f64 bytes, one
/// per pair. Each distinct document is shingled once; the GIL is released.
#[pyfunction]
#[pyo3(signature = (offsets, data, index_a, index_b, *, ngram=5, char_ngrams=false, lowercase=true,
                    large_offsets=false, index_width=8, num_threads=0))]
#[allow(clippy::too_many_arguments)]
fn text_jaccard_pairs<'py>(
    py: Python<'py>,
    offsets: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    index_a: &Bound<'py, PyAny>,
    index_b: &Bound<'py, PyAny>,
    ngram: i64,
    char_ngrams: bool,
    lowercase: bool,
    large_offsets: bool,
    index_width: i64,
    num_threads: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let params = MinHashParams {
        num_perm: 1,
        ngram: count_arg("ngram", ngram)?,
        char_ngrams,
        lowercase,
        seed: 0,
    };
    params.validate().map_err(to_py)?;
    let iw = count_arg("index_width", index_width)?;
    if iw != 4 && iw != 8 {
        return Err(PyValueError::new_err(format!(
            "index_width must be 4 or 8, got {iw}"
        )));
    }
    let threads = pool_size(num_threads)?;
    let (ov, dv) = (
        ByteView::get(offsets, "offsets")?,
        ByteView::get(data, "data")?,
    );
    let (av, bv) = (
        ByteView::get(index_a, "index_a")?,
        ByteView::get(index_b, "index_b")?,
    );
    let col =
        StringColumn::new(ov.as_slice(), dv.as_slice(), width(large_offsets)).map_err(to_py)?;
    let (ia, ib) = (av.as_slice(), bv.as_slice());
    let len = out_len(&[ia.len() / iw, 8])?;
    PyBytes::new_with(py, len, |out| {
        py.detach(|| {
            in_pool(threads, || {
                minhash::text_jaccard_pairs(&col, &params, ia, ib, iw, out)
            })
        })?
        .map_err(to_py)
    })
}

/// Connected components of the graph with edges `src[i] - dst[i]` (u64 little-endian bytes).
/// Returns `(nodes, roots)` as u64 bytes: the distinct node ids ascending, and for each the
/// minimum node id of its component.
#[pyfunction]
fn connected_components<'py>(
    py: Python<'py>,
    src: &Bound<'py, PyAny>,
    dst: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let (sv, dv) = (ByteView::get(src, "src")?, ByteView::get(dst, "dst")?);
    let (s, d) = (sv.as_slice(), dv.as_slice());
    let threads = pool_size(0)?;
    let (nodes, roots) = py.detach(|| -> PyResult<_> {
        let (s, d) = (u64s(s, "src")?, u64s(d, "dst")?);
        in_pool(threads, || unionfind::connected_components(&s, &d))?.map_err(to_py)
    })?;
    let to_bytes = |v: &[u64]| -> PyResult<Bound<'py, PyBytes>> {
        PyBytes::new_with(py, out_len(&[v.len(), 8])?, |out| {
            for (o, x) in out.chunks_exact_mut(8).zip(v) {
                o.copy_from_slice(&x.to_le_bytes());
            }
            Ok(())
        })
    };
    Ok((to_bytes(&nodes)?, to_bytes(&roots)?))
}

/// Exact Jaccard similarity of the shingle sets of two texts (the shingling of `minhash`);
/// 1.0 when neither text has a shingle.
#[pyfunction]
#[pyo3(signature = (text_a, text_b, ngram=5, char_ngrams=false, lowercase=true))]
fn exact_jaccard(
    py: Python<'_>,
    text_a: &str,
    text_b: &str,
    ngram: i64,
    char_ngrams: bool,
    lowercase: bool,
) -> PyResult<f64> {
    let n = count_arg("ngram", ngram)?;
    if n == 0 {
        return Err(PyValueError::new_err("ngram must be >= 1"));
    }
    Ok(py.detach(|| minhash::exact_jaccard(text_a, text_b, n, char_ngrams, lowercase)))
}

/// Sorted distinct xxh3-64 hashes of the shingles of `text` (u64 little-endian bytes): the
/// values `minhash` permutes, equal to `xxh3_64(" ".join(tokens[i:i+ngram]).encode())`.
#[pyfunction]
#[pyo3(signature = (text, ngram=5, char_ngrams=false, lowercase=true))]
fn shingle_hashes<'py>(
    py: Python<'py>,
    text: &str,
    ngram: i64,
    char_ngrams: bool,
    lowercase: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let p = MinHashParams {
        num_perm: 1,
        ngram: count_arg("ngram", ngram)?,
        char_ngrams,
        lowercase,
        seed: 0,
    };
    p.validate().map_err(to_py)?;
    let hashes = py.detach(|| minhash::shingle_hash_set(text, &p));
    PyBytes::new_with(py, out_len(&[hashes.len(), 8])?, |out| {
        for (o, x) in out.chunks_exact_mut(8).zip(&hashes) {
            o.copy_from_slice(&x.to_le_bytes());
        }
        Ok(())
    })
}

/// The tokens of `text` as `minhash` sees them: `re.findall(r"\w+", text.lower())`.
#[pyfunction]
#[pyo3(signature = (text, lowercase=true))]
fn tokenize(text: &str, lowercase: bool) -> Vec<String> {
    let mut n = text::Normalized::new();
    n.fill(text, lowercase);
    n.tokens().map(str::to_owned).collect()
}

/// The number of threads a call with this `num_threads` computes on: `num_threads` if > 0,
/// else the default read from the environment now (`CURATE_NUM_THREADS`, `RAYON_NUM_THREADS`,
/// `OMP_NUM_THREADS`, then the CPUs available). Measured on the pool itself.
#[pyfunction]
#[pyo3(signature = (num_threads=0))]
fn effective_threads(py: Python<'_>, num_threads: i64) -> PyResult<usize> {
    let threads = pool_size(num_threads)?;
    py.detach(|| in_pool(threads, rayon::current_num_threads))
}

/// The sizes of the thread pools this process has built (each is built once and kept).
#[pyfunction]
fn thread_pools() -> Vec<usize> {
    pool::sizes()
}

/// Name of the MinHash kernel picked for this CPU ("avx512", "avx2" or "portable").
#[pyfunction]
fn minhash_kernel() -> &'static str {
    minhash::Permutations::kernel_name()
}

/// Private native core of curate.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "__doc__",
        "curate's private native core (Rust): hashing, MinHash, LSH, union-find.",
    )?;
    m.add("UNICODE_VERSION", unicode_tables::UNICODE_VERSION)?;
    m.add_function(wrap_pyfunction!(hash_texts, m)?)?;
    m.add_function(wrap_pyfunction!(py_minhash, m)?)?;
    m.add_function(wrap_pyfunction!(lsh_bands, m)?)?;
    m.add_function(wrap_pyfunction!(jaccard_estimate, m)?)?;
    m.add_function(wrap_pyfunction!(connected_components, m)?)?;
    m.add_function(wrap_pyfunction!(exact_jaccard, m)?)?;
    m.add_function(wrap_pyfunction!(text_jaccard_pairs, m)?)?;
    m.add_function(wrap_pyfunction!(shingle_hashes, m)?)?;
    m.add_function(wrap_pyfunction!(tokenize, m)?)?;
    m.add_function(wrap_pyfunction!(minhash_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(effective_threads, m)?)?;
    m.add_function(wrap_pyfunction!(thread_pools, m)?)?;
    m.add_function(wrap_pyfunction!(normalize::py::normalize_texts, m)?)?;
    // pyo3 lists the module docstring in __all__; export only the public API.
    let public: Vec<String> = m
        .getattr("__all__")?
        .extract::<Vec<String>>()?
        .into_iter()
        .filter(|n| !n.starts_with("__"))
        .collect();
    m.setattr("__all__", public)?;
    Ok(())
}
