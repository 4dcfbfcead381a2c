//! MinHash signatures, LSH band keys and Jaccard estimates.
//!
//! Permutation family: for a shingle hash `h` (xxh3-64), `x = h as u32` (its low 32 bits) and
//! `perm_i(x) = a_i * x + b_i  (mod 2^32)`, `a_i` odd (so each is a bijection of u32). The `a_i`,
//! `b_i` come from SplitMix64 seeded with `seed`. This is a few vector instructions per 16
//! permutations (the modular 2^61-1 form is ~30x slower); since `x` is already a strong hash, its
//! estimates are unbiased with the binomial variance J(1-J)/num_perm (checked by the tests).
//!
//! The inner loop keeps a block of accumulators in registers and sweeps the shingle hashes, in
//! u32 lanes the compiler vectorises; on x86-64 it is compiled three times (AVX-512, AVX2,
//! baseline) and picked at run time.

use rayon::prelude::*;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::arrow::StringColumn;
use crate::error::{invalid, Result};
use crate::text::Normalized;

/// Lanes per block of the portable kernel; `num_perm` is padded internally to a multiple of it.
const LANES: usize = 16;

/// Largest accepted `num_perm` (a sanity bound, not a technical one).
pub const MAX_NUM_PERM: usize = 1 << 16;

/// SplitMix64: small, fast, well-mixed; only used to derive permutation parameters.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `num_perm` affine permutations of u32, padded to a multiple of `LANES`.
#[derive(Debug, Clone)]
pub struct Permutations {
    a: Vec<u32>,
    b: Vec<u32>,
    num_perm: usize,
}

impl Permutations {
    pub fn new(num_perm: usize, seed: u64) -> Result<Self> {
        if num_perm == 0 || num_perm > MAX_NUM_PERM {
            return invalid(format!(
                "num_perm must be in 1..={MAX_NUM_PERM}, got {num_perm}"
            ));
        }
        let padded = num_perm.div_ceil(LANES) * LANES;
        let mut st = seed;
        let mut a = Vec::with_capacity(padded);
        let mut b = Vec::with_capacity(padded);
        for _ in 0..padded {
            let r = splitmix64(&mut st);
            a.push((r as u32) | 1);
            b.push((r >> 32) as u32);
        }
        Ok(Permutations { a, b, num_perm })
    }

    pub fn num_perm(&self) -> usize {
        self.num_perm
    }

    /// Length of the (padded) accumulator `apply` expects.
    pub fn padded(&self) -> usize {
        self.a.len()
    }

    /// `sig[i] = min(sig[i], min over hashes of perm_i(h))` for all padded lanes.
    pub fn apply(&self, hashes: &[u64], sig: &mut [u32]) {
        debug_assert_eq!(sig.len(), self.a.len());
        let n = sig.len().min(self.a.len());
        let (a, b, sig) = (&self.a[..n], &self.b[..n], &mut sig[..n]);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F (checked just above).
                unsafe { apply_avx512(a, b, hashes, sig) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { apply_avx2(a, b, hashes, sig) };
                return;
            }
        }
        apply_generic::<LANES>(a, b, hashes, sig);
    }

    /// Name of the kernel `apply` uses on this CPU.
    pub fn kernel_name() -> &'static str {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return "avx512";
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return "avx2";
            }
        }
        "portable"
    }
}

#[inline(always)]
fn block<const L: usize>(a: &[u32], b: &[u32], hashes: &[u64], sig: &mut [u32]) {
    let mut av = [0u32; L];
    let mut bv = [0u32; L];
    let mut acc = [0u32; L];
    av.copy_from_slice(a);
    bv.copy_from_slice(b);
    acc.copy_from_slice(sig);
    for &h in hashes {
        let x = h as u32;
        for l in 0..L {
            acc[l] = acc[l].min(av[l].wrapping_mul(x).wrapping_add(bv[l]));
        }
    }
    sig.copy_from_slice(&acc);
}

/// Blocks of `L` lanes, then the rest in blocks of `LANES` (lengths are multiples of `LANES`).
#[inline(always)]
fn apply_generic<const L: usize>(a: &[u32], b: &[u32], hashes: &[u64], sig: &mut [u32]) {
    let big = sig.len() / L * L;
    let (sig_big, sig_rest) = sig.split_at_mut(big);
    for ((ac, bc), sc) in a
        .chunks_exact(L)
        .zip(b.chunks_exact(L))
        .zip(sig_big.chunks_exact_mut(L))
    {
        block::<L>(ac, bc, hashes, sc);
    }
    for ((ac, bc), sc) in a[big..]
        .chunks_exact(LANES)
        .zip(b[big..].chunks_exact(LANES))
        .zip(sig_rest.chunks_exact_mut(LANES))
    {
        block::<LANES>(ac, bc, hashes, sc);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
unsafe fn apply_avx512(a: &[u32], b: &[u32], hashes: &[u64], sig: &mut [u32]) {
    // 64 lanes = 4 zmm registers per array: 12 of the 32 registers.
    apply_generic::<64>(a, b, hashes, sig)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn apply_avx2(a: &[u32], b: &[u32], hashes: &[u64], sig: &mut [u32]) {
    // 32 lanes = 4 ymm registers per array: 12 of the 16 registers.
    apply_generic::<32>(a, b, hashes, sig)
}

/// Parameters of a MinHash signature.
#[derive(Debug, Clone, Copy)]
pub struct MinHashParams {
    pub num_perm: usize,
    pub ngram: usize,
    pub char_ngrams: bool,
    pub lowercase: bool,
    pub seed: u64,
}

impl MinHashParams {
    pub fn validate(&self) -> Result<()> {
        if self.ngram == 0 || self.ngram > 1 << 20 {
            return invalid(format!("ngram must be in 1..=1048576, got {}", self.ngram));
        }
        if self.num_perm == 0 || self.num_perm > MAX_NUM_PERM {
            return invalid(format!(
                "num_perm must be in 1..={MAX_NUM_PERM}, got {}",
                self.num_perm
            ));
        }
        Ok(())
    }
}

/// Per-thread scratch buffers, reused across documents.
#[derive(Debug, Default)]
pub struct Scratch {
    norm: Normalized,
    bounds: Vec<usize>,
    hashes: Vec<u64>,
    sig: Vec<u32>,
}

impl Scratch {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Hash every shingle of `text` (xxh3-64, seed 0) into `scratch.hashes` (with duplicates).
pub fn shingle_hashes_into(text: &str, p: &MinHashParams, scratch: &mut Scratch) {
    scratch.norm.fill(text, p.lowercase);
    scratch.hashes.clear();
    let hashes = &mut scratch.hashes;
    scratch
        .norm
        .for_each_shingle(p.ngram, p.char_ngrams, &mut scratch.bounds, |s| {
            hashes.push(xxh3_64(s))
        });
}

/// Sorted, de-duplicated shingle hashes of one text.
pub fn shingle_hash_set(text: &str, p: &MinHashParams) -> Vec<u64> {
    let mut s = Scratch::new();
    shingle_hashes_into(text, p, &mut s);
    let mut h = std::mem::take(&mut s.hashes);
    h.sort_unstable();
    h.dedup();
    h
}

/// Signature of one document into `out` (`perms.num_perm()` values); all `u32::MAX` if the
/// document has no shingles.
pub fn signature(
    text: &str,
    p: &MinHashParams,
    perms: &Permutations,
    scratch: &mut Scratch,
    out: &mut [u32],
) {
    shingle_hashes_into(text, p, scratch);
    scratch.sig.clear();
    scratch.sig.resize(perms.padded(), u32::MAX);
    perms.apply(&scratch.hashes, &mut scratch.sig);
    let n = out.len().min(perms.num_perm());
    out[..n].copy_from_slice(&scratch.sig[..n]);
}

/// UTF-8 text of `bytes`, borrowed when valid (std's fast validator), else with every invalid
/// sequence replaced by U+FFFD.
pub fn decode_lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Signatures of every value of `col` (decoded as UTF-8, invalid sequences replaced by U+FFFD),
/// written row-major as little-endian u32 into `out` (`col.len() * num_perm * 4` bytes).
pub fn minhash_column(col: &StringColumn<'_>, p: &MinHashParams, out: &mut [u8]) -> Result<()> {
    p.validate()?;
    let perms = Permutations::new(p.num_perm, p.seed)?;
    let row = p.num_perm * 4;
    if out.len() != col.len() * row {
        return invalid(format!(
            "output is {} bytes, expected {} docs x {} perms x 4",
            out.len(),
            col.len(),
            p.num_perm
        ));
    }
    if row == 0 {
        return Ok(());
    }
    out.par_chunks_mut(row).enumerate().for_each_init(
        || (Scratch::new(), vec![0u32; p.num_perm]),
        |(scratch, sig), (i, dst)| {
            let text = decode_lossy(col.value(i));
            signature(&text, p, &perms, scratch, sig);
            for (d, v) in dst.chunks_exact_mut(4).zip(sig.iter()) {
                d.copy_from_slice(&v.to_le_bytes());
            }
        },
    );
    Ok(())
}

/// xxh3-64 (with `seed`) of the raw bytes of every value, little-endian u64 into `out`.
pub fn hash_column(col: &StringColumn<'_>, seed: u64, out: &mut [u8]) -> Result<()> {
    if out.len() != col.len() * 8 {
        return invalid(format!(
            "output is {} bytes, expected {} x 8",
            out.len(),
            col.len()
        ));
    }
    out.par_chunks_mut(8)
        .with_min_len(256)
        .enumerate()
        .for_each(|(i, dst)| {
            dst.copy_from_slice(&xxh3_64_with_seed(col.value(i), seed).to_le_bytes());
        });
    Ok(())
}

/// Check that a signature buffer holds `n_docs x num_perm` u32 values.
pub fn check_signatures(sigs: &[u8], n_docs: usize, num_perm: usize) -> Result<()> {
    if num_perm == 0 {
        return invalid("num_perm must be >= 1");
    }
    let want = n_docs.checked_mul(num_perm).and_then(|x| x.checked_mul(4));
    if want != Some(sigs.len()) {
        return invalid(format!(
            "signature buffer is {} bytes, expected n_docs ({n_docs}) x num_perm ({num_perm}) x 4",
            sigs.len()
        ));
    }
    Ok(())
}

/// LSH band keys: for doc `d` and band `k`, xxh3-64 of the little-endian bytes of
/// `sig[d][k*rows .. (k+1)*rows]` with seed `k` (so equal keys of the same band mean equal
/// slices; the band index is mixed in so keys of different bands do not collide by design).
/// Output: `n_docs x bands` little-endian u64, row-major.
pub fn lsh_bands(
    sigs: &[u8],
    n_docs: usize,
    num_perm: usize,
    bands: usize,
    rows: usize,
    out: &mut [u8],
) -> Result<()> {
    check_signatures(sigs, n_docs, num_perm)?;
    if bands == 0 || rows == 0 {
        return invalid(format!(
            "bands and rows must be >= 1, got bands={bands}, rows={rows}"
        ));
    }
    match bands.checked_mul(rows) {
        Some(used) if used <= num_perm => {}
        _ => {
            return invalid(format!(
                "bands x rows ({bands} x {rows}) exceeds num_perm ({num_perm})"
            ))
        }
    }
    if out.len() != n_docs * bands * 8 {
        return invalid(format!(
            "output is {} bytes, expected {n_docs} x {bands} x 8",
            out.len()
        ));
    }
    if n_docs == 0 {
        return Ok(());
    }
    let row_bytes = num_perm * 4;
    out.par_chunks_mut(bands * 8)
        .zip(sigs.par_chunks(row_bytes))
        .with_min_len(64)
        .for_each(|(dst, sig)| {
            for (k, d) in dst.chunks_exact_mut(8).enumerate() {
                let slice = &sig[k * rows * 4..(k + 1) * rows * 4];
                d.copy_from_slice(&xxh3_64_with_seed(slice, k as u64).to_le_bytes());
            }
        });
    Ok(())
}

/// Read one index of an index buffer (u32 or u64 little-endian).
fn read_index(buf: &[u8], width: usize, i: usize) -> u64 {
    let b = &buf[i * width..(i + 1) * width];
    if width == 4 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64
    } else {
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

/// Estimated Jaccard (share of equal signature values) for the pairs `(idx_a[i], idx_b[i])` of
/// rows of `sigs`; `index_width` is 4 (u32) or 8 (u64). Output: f32 little-endian into `out`.
pub fn jaccard_pairs(
    sigs: &[u8],
    n_docs: usize,
    num_perm: usize,
    idx_a: &[u8],
    idx_b: &[u8],
    index_width: usize,
    out: &mut [u8],
) -> Result<()> {
    check_signatures(sigs, n_docs, num_perm)?;
    if index_width != 4 && index_width != 8 {
        return invalid(format!(
            "index width must be 4 or 8 bytes, got {index_width}"
        ));
    }
    if idx_a.len() != idx_b.len() || !idx_a.len().is_multiple_of(index_width) {
        return invalid(format!(
            "index buffers must have equal lengths that are multiples of {index_width} bytes, \
             got {} and {}",
            idx_a.len(),
            idx_b.len()
        ));
    }
    let n_pairs = idx_a.len() / index_width;
    if out.len() != n_pairs * 4 {
        return invalid(format!(
            "output is {} bytes, expected {n_pairs} x 4",
            out.len()
        ));
    }
    for i in 0..n_pairs {
        for (name, buf) in [("a", idx_a), ("b", idx_b)] {
            let v = read_index(buf, index_width, i);
            if v >= n_docs as u64 {
                return invalid(format!(
                    "index_{name}[{i}] = {v} is out of range for {n_docs} signatures"
                ));
            }
        }
    }
    let row = num_perm * 4;
    out.par_chunks_mut(4)
        .with_min_len(256)
        .enumerate()
        .for_each(|(i, d)| {
            let a = read_index(idx_a, index_width, i) as usize;
            let b = read_index(idx_b, index_width, i) as usize;
            let ra = &sigs[a * row..(a + 1) * row];
            let rb = &sigs[b * row..(b + 1) * row];
            let eq = ra
                .chunks_exact(4)
                .zip(rb.chunks_exact(4))
                .filter(|(x, y)| x == y)
                .count();
            d.copy_from_slice(&((eq as f64 / num_perm as f64) as f32).to_le_bytes());
        });
    Ok(())
}

/// Jaccard similarity of two sorted, de-duplicated hash sets; 1.0 when both are empty.
pub fn jaccard_sorted(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut inter) = (0usize, 0usize, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    inter as f64 / (a.len() + b.len() - inter) as f64
}

/// Jaccard similarity of the shingle sets of the value pairs `(idx_a[i], idx_b[i])` of `col`
/// (u32 or u64 little-endian indices per `index_width` = 4 or 8), for verifying candidate pairs
/// in bulk: each distinct document is shingled once, then the pairs are intersected, both in
/// parallel. Shingles are compared by their xxh3-64 hashes (the values MinHash permutes), so the
/// result equals `exact_jaccard` unless two distinct shingles of the pair collide in 64 bits.
/// Output: f64 little-endian into `out`, 1.0 for two documents without shingles.
pub fn text_jaccard_pairs(
    col: &StringColumn<'_>,
    p: &MinHashParams,
    idx_a: &[u8],
    idx_b: &[u8],
    index_width: usize,
    out: &mut [u8],
) -> Result<()> {
    p.validate()?;
    if index_width != 4 && index_width != 8 {
        return invalid(format!(
            "index width must be 4 or 8 bytes, got {index_width}"
        ));
    }
    if idx_a.len() != idx_b.len() || !idx_a.len().is_multiple_of(index_width) {
        return invalid(format!(
            "index buffers must have equal lengths that are multiples of {index_width} bytes, \
             got {} and {}",
            idx_a.len(),
            idx_b.len()
        ));
    }
    let n_pairs = idx_a.len() / index_width;
    if out.len() != n_pairs * 8 {
        return invalid(format!(
            "output is {} bytes, expected {n_pairs} x 8",
            out.len()
        ));
    }
    let mut docs: Vec<u64> = Vec::new();
    docs.try_reserve_exact(2 * n_pairs)
        .map_err(|_| crate::error::CoreError::Memory(format!("cannot index {n_pairs} pairs")))?;
    for i in 0..n_pairs {
        for (name, buf) in [("a", idx_a), ("b", idx_b)] {
            let v = read_index(buf, index_width, i);
            if v >= col.len() as u64 {
                return invalid(format!(
                    "index_{name}[{i}] = {v} is out of range for {} texts",
                    col.len()
                ));
            }
            docs.push(v);
        }
    }
    docs.sort_unstable();
    docs.dedup();
    let sets: Vec<Vec<u64>> = docs
        .par_iter()
        .map_init(Scratch::new, |scratch, &d| {
            let text = decode_lossy(col.value(d as usize));
            shingle_hashes_into(&text, p, scratch);
            let mut h = scratch.hashes.clone();
            h.sort_unstable();
            h.dedup();
            h
        })
        .collect();
    let slot = |v: u64| docs.binary_search(&v).unwrap_or_else(|e| e);
    out.par_chunks_mut(8)
        .with_min_len(64)
        .enumerate()
        .for_each(|(i, d)| {
            let a = &sets[slot(read_index(idx_a, index_width, i))];
            let b = &sets[slot(read_index(idx_b, index_width, i))];
            d.copy_from_slice(&jaccard_sorted(a, b).to_le_bytes());
        });
    Ok(())
}

/// Exact Jaccard similarity of the shingle sets of two texts (same shingling as the signatures).
/// Two texts without any shingle are identical: 1.0.
pub fn exact_jaccard(a: &str, b: &str, ngram: usize, char_ngrams: bool, lowercase: bool) -> f64 {
    use std::collections::HashSet;
    let shingles = |t: &str| {
        let mut n = Normalized::new();
        n.fill(t, lowercase);
        let mut set: HashSet<Vec<u8>> = HashSet::new();
        n.for_each_shingle(ngram, char_ngrams, &mut Vec::new(), |s| {
            if !set.contains(s) {
                set.insert(s.to_vec());
            }
        });
        set
    };
    let (sa, sb) = (shingles(a), shingles(b));
    if sa.is_empty() && sb.is_empty() {
        return 1.0;
    }
    let inter = sa.intersection(&sb).count();
    inter as f64 / (sa.len() + sb.len() - inter) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> MinHashParams {
        MinHashParams {
            num_perm: 128,
            ngram: 5,
            char_ngrams: false,
            lowercase: true,
            seed: 1,
        }
    }

    fn sig(text: &str, p: &MinHashParams) -> Vec<u32> {
        let perms = Permutations::new(p.num_perm, p.seed).unwrap();
        let mut out = vec![0u32; p.num_perm];
        signature(text, p, &perms, &mut Scratch::new(), &mut out);
        out
    }

    #[test]
    fn kernels_agree_with_scalar() {
        for num_perm in [1, 16, 100, 128, 200, 256] {
            let perms = Permutations::new(num_perm, 7).unwrap();
            let mut st = 3u64;
            let hashes: Vec<u64> = (0..1000).map(|_| splitmix64(&mut st)).collect();
            let mut fast = vec![u32::MAX; perms.padded()];
            perms.apply(&hashes, &mut fast);
            let mut portable = vec![u32::MAX; perms.padded()];
            apply_generic::<LANES>(&perms.a, &perms.b, &hashes, &mut portable);
            for i in 0..perms.padded() {
                let want = hashes
                    .iter()
                    .map(|&h| perms.a[i].wrapping_mul(h as u32).wrapping_add(perms.b[i]))
                    .min()
                    .unwrap();
                assert_eq!(fast[i], want);
                assert_eq!(portable[i], want);
            }
        }
    }

    #[test]
    fn identical_and_empty() {
        let p = params();
        let t = "the quick brown fox jumps over the lazy dog again and again";
        assert_eq!(sig(t, &p), sig(&t.to_uppercase(), &p));
        assert!(sig("", &p).iter().all(|&v| v == u32::MAX));
        assert!(sig(" ,.; ", &p).iter().all(|&v| v == u32::MAX));
        assert!(sig("short", &p).iter().any(|&v| v != u32::MAX));
    }

    #[test]
    fn shingle_hashes_match_reference() {
        let p = MinHashParams {
            ngram: 2,
            ..params()
        };
        let mut want: Vec<u64> = ["a b", "b c"]
            .iter()
            .map(|s| xxh3_64(s.as_bytes()))
            .collect();
        want.sort_unstable();
        assert_eq!(shingle_hash_set("A, b; c", &p), want);
    }

    #[test]
    fn estimate_tracks_exact() {
        let p = params();
        let words: Vec<String> = (0..400).map(|i| format!("w{}", i * 7919 % 1000)).collect();
        let a = words.join(" ");
        let b = words[..300].join(" ")
            + " "
            + &words[300..]
                .iter()
                .rev()
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
        let j = exact_jaccard(&a, &b, 5, false, true);
        let (sa, sb) = (sig(&a, &p), sig(&b, &p));
        let est = sa.iter().zip(&sb).filter(|(x, y)| x == y).count() as f64 / 128.0;
        let sd = (j * (1.0 - j) / 128.0).sqrt();
        assert!((est - j).abs() < 4.0 * sd + 1e-9, "est {est} exact {j}");
    }

    #[test]
    fn text_pairs_match_exact_jaccard() {
        let texts = [
            "the quick brown fox jumps over the lazy dog and runs far away",
            "the quick brown fox jumps over the lazy cat and runs far away",
            "",
            "!!",
            "something else entirely, with no words in common at all here",
        ];
        let mut data = Vec::new();
        let mut offs: Vec<u8> = 0i32.to_le_bytes().to_vec();
        for t in texts {
            data.extend_from_slice(t.as_bytes());
            offs.extend_from_slice(&(data.len() as i32).to_le_bytes());
        }
        let col = StringColumn::new(&offs, &data, crate::arrow::OffsetWidth::I32).unwrap();
        let p = MinHashParams {
            ngram: 3,
            ..params()
        };
        let pairs = [(0u64, 1u64), (0, 0), (2, 3), (0, 2), (4, 0), (1, 4)];
        let ia: Vec<u8> = pairs.iter().flat_map(|x| x.0.to_le_bytes()).collect();
        let ib: Vec<u8> = pairs.iter().flat_map(|x| x.1.to_le_bytes()).collect();
        let mut out = vec![0u8; pairs.len() * 8];
        text_jaccard_pairs(&col, &p, &ia, &ib, 8, &mut out).unwrap();
        for (k, &(a, b)) in pairs.iter().enumerate() {
            let got = f64::from_le_bytes(out[k * 8..k * 8 + 8].try_into().unwrap());
            let want = exact_jaccard(texts[a as usize], texts[b as usize], 3, false, true);
            assert_eq!(got, want, "pair {a} {b}");
        }
        let bad: Vec<u8> = 9u64.to_le_bytes().to_vec();
        let mut one = vec![0u8; 8];
        assert!(text_jaccard_pairs(&col, &p, &ia[..8], &bad, 8, &mut one).is_err());
        assert!(text_jaccard_pairs(&col, &p, &ia, &ib[..8], 8, &mut out).is_err());
        assert!(text_jaccard_pairs(&col, &p, &ia[..8], &ib[..8], 3, &mut one).is_err());
    }

    #[test]
    fn bands_and_pairs_validate() {
        let sigs = vec![0u8; 2 * 8 * 4];
        let mut out = vec![0u8; 2 * 4 * 8];
        lsh_bands(&sigs, 2, 8, 4, 2, &mut out).unwrap();
        assert_eq!(out[..8], out[32..40]); // equal signatures -> equal keys per band
        assert_ne!(out[..8], out[8..16]); // band index is mixed in
        assert!(lsh_bands(&sigs, 2, 8, 5, 2, &mut out).is_err());
        assert!(lsh_bands(&sigs, 3, 8, 4, 2, &mut out).is_err());
        let idx: Vec<u8> = [0u32, 1].iter().flat_map(|x| x.to_le_bytes()).collect();
        let mut j = vec![0u8; 8];
        jaccard_pairs(&sigs, 2, 8, &idx, &idx, 4, &mut j).unwrap();
        assert_eq!(f32::from_le_bytes([j[0], j[1], j[2], j[3]]), 1.0);
        let bad: Vec<u8> = [0u32, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(jaccard_pairs(&sigs, 2, 8, &idx, &bad, 4, &mut j).is_err());
    }
}
