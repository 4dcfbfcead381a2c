use pyo3::prelude::*;

/// Private native core of curate.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__doc__", "curate's private native core (Rust).")?;
    Ok(())
}
