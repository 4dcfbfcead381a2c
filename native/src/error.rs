//! Errors of the pure-Rust core. The Python binding (lib.rs) maps them onto Python exceptions:
//! `Invalid` -> ValueError, `Memory` -> MemoryError.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// Malformed input or arguments (bad offsets, sizes that do not add up, out-of-range params).
    Invalid(String),
    /// An allocation the input asked for could not be made.
    Memory(String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Invalid(m) | CoreError::Memory(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CoreError {}

pub type Result<T> = std::result::Result<T, CoreError>;

/// Shorthand for an `Err(CoreError::Invalid(..))`.
pub fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(CoreError::Invalid(msg.into()))
}

/// A zero-filled vector of `n` elements, or `CoreError::Memory` instead of aborting the process.
pub fn try_zeroed<T: Copy + Default>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        CoreError::Memory(format!(
            "cannot allocate {what}: {n} elements of {} bytes",
            std::mem::size_of::<T>()
        ))
    })?;
    v.resize(n, T::default());
    Ok(v)
}
