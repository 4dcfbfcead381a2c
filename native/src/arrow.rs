//! Zero-copy views of Arrow string columns (`string` with i32 offsets, `large_string` with i64),
//! given as the raw offsets and data buffers. Offsets are validated once, up front; after that,
//! every accessor is infallible and never indexes out of bounds.

use crate::error::{invalid, Result};

/// Width of the Arrow offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetWidth {
    /// `string` / `binary`: int32 offsets.
    I32,
    /// `large_string` / `large_binary`: int64 offsets.
    I64,
}

impl OffsetWidth {
    pub fn bytes(self) -> usize {
        match self {
            OffsetWidth::I32 => 4,
            OffsetWidth::I64 => 8,
        }
    }
}

/// A validated Arrow string column: `len()` values, value `i` is `data[off[i]..off[i+1]]`.
///
/// The offsets buffer is read with `from_le_bytes`, so it needs no particular alignment. The
/// offsets need not start at 0 (a sliced Arrow array keeps its parent's data buffer).
#[derive(Debug, Clone, Copy)]
pub struct StringColumn<'a> {
    offsets: &'a [u8],
    width: OffsetWidth,
    data: &'a [u8],
    len: usize,
}

impl<'a> StringColumn<'a> {
    /// Validate `offsets` (little-endian, `width` bytes each) against `data`.
    ///
    /// An empty offsets buffer is a column of zero values. Otherwise the buffer holds `n + 1`
    /// offsets that must be non-negative, non-decreasing and at most `data.len()`.
    pub fn new(offsets: &'a [u8], data: &'a [u8], width: OffsetWidth) -> Result<Self> {
        let w = width.bytes();
        if !offsets.len().is_multiple_of(w) {
            return invalid(format!(
                "offsets buffer is {} bytes, not a multiple of the {w}-byte offset width \
                 (int{} offsets{})",
                offsets.len(),
                w * 8,
                if w == 4 {
                    "; pass large=True for large_string"
                } else {
                    ""
                }
            ));
        }
        let count = offsets.len() / w;
        let col = StringColumn {
            offsets,
            width,
            data,
            len: count.saturating_sub(1),
        };
        let mut prev: u64 = 0;
        for i in 0..count {
            let raw = col.raw_offset(i);
            if raw < 0 {
                return invalid(format!("offset {i} is negative ({raw})"));
            }
            let o = raw as u64;
            if i > 0 && o < prev {
                return invalid(format!(
                    "offsets are not monotonic: offset {i} ({o}) < offset {} ({prev})",
                    i - 1
                ));
            }
            if o > data.len() as u64 {
                return invalid(format!(
                    "offset {i} ({o}) is past the end of the {}-byte data buffer",
                    data.len()
                ));
            }
            prev = o;
        }
        Ok(col)
    }

    #[inline]
    fn raw_offset(&self, i: usize) -> i64 {
        let w = self.width.bytes();
        let b = &self.offsets[i * w..i * w + w];
        match self.width {
            OffsetWidth::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64,
            OffsetWidth::I64 => {
                i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
            }
        }
    }

    /// Number of values.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Raw bytes of value `i` (`i < len()`; validated offsets make the slice in bounds).
    #[inline]
    pub fn value(&self, i: usize) -> &'a [u8] {
        // Validated in `new`: 0 <= start <= end <= data.len(), so the casts and slice are sound.
        let start = self.raw_offset(i) as usize;
        let end = self.raw_offset(i + 1) as usize;
        &self.data[start..end]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offs32(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_values() {
        let o = offs32(&[0, 2, 2, 5]);
        let c = StringColumn::new(&o, b"abcde", OffsetWidth::I32).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c.value(0), b"ab");
        assert_eq!(c.value(1), b"");
        assert_eq!(c.value(2), b"cde");
    }

    #[test]
    fn sliced_offsets_need_not_start_at_zero() {
        let o: Vec<u8> = [3i64, 4, 5].iter().flat_map(|x| x.to_le_bytes()).collect();
        let c = StringColumn::new(&o, b"abcde", OffsetWidth::I64).unwrap();
        assert_eq!(c.value(0), b"d");
        assert_eq!(c.value(1), b"e");
    }

    #[test]
    fn empty_buffer_is_zero_values() {
        let c = StringColumn::new(&[], b"", OffsetWidth::I32).unwrap();
        assert!(c.is_empty());
        let o = offs32(&[0]);
        assert!(StringColumn::new(&o, b"", OffsetWidth::I32)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn rejects_bad_offsets() {
        let bad: [&[i32]; 3] = [&[0, 3, 2], &[0, 6], &[-1, 0]];
        for b in bad {
            let o = offs32(b);
            assert!(
                StringColumn::new(&o, b"abcde", OffsetWidth::I32).is_err(),
                "{b:?}"
            );
        }
        assert!(StringColumn::new(&[0, 0, 0], b"", OffsetWidth::I32).is_err());
        assert!(StringColumn::new(&[0; 12], b"", OffsetWidth::I64).is_err());
    }
}
