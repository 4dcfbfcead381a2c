//! Text normalisation and shingling, matching CPython exactly:
//!
//! * tokens = `re.findall(r"\w+", text.lower())` (or of `text` when `lowercase` is false);
//! * the normalised text is the tokens joined by single spaces (punctuation and whitespace runs
//!   fold into one space, leading/trailing ones vanish);
//! * word shingles are `" ".join(tokens[i:i+n])` for every window of `n` tokens; a document with
//!   fewer than `n` tokens (but at least one) is one shingle of all its tokens;
//! * character shingles are `norm[i:i+n]` (n code points) of the normalised text; a shorter
//!   non-empty text is one shingle;
//! * a document without tokens has no shingles.
//!
//! Because tokens are joined by exactly one space, a word shingle is a contiguous byte range of
//! the normalised buffer, so shingles are hashed in place (xxh3-64 of the UTF-8 bytes, the same
//! value as `xxhash.xxh3_64_intdigest(" ".join(tokens[i:i+n]).encode())`).
//!
//! `\w` and the two properties of CPython's final-sigma rule come from tables generated from
//! CPython itself (`unicode_tables.rs`), so results do not depend on the Unicode version of the
//! Rust toolchain.

use std::sync::OnceLock;

use crate::unicode_tables::{CASED, CASE_IGNORABLE, WORD};

/// `\w` for ASCII bytes: `[0-9A-Za-z_]`.
static ASCII_WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || c == b'_';
        i += 1;
    }
    t
};

#[inline]
fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    // First range whose end is >= c; c is in the table iff that range starts at or before c.
    let i = table.partition_point(|&(_, hi)| hi < c);
    i < table.len() && table[i].0 <= c
}

/// Per-code-point flags of the Basic Multilingual Plane, built once from the tables.
const BMP_WORD: u8 = 1;
/// Lowercasing changes the code point (so `char::to_lowercase` must be consulted).
const BMP_LOWER_CHANGES: u8 = 2;

fn bmp_flags() -> &'static [u8] {
    static FLAGS: OnceLock<Box<[u8]>> = OnceLock::new();
    FLAGS.get_or_init(|| {
        let mut t = vec![0u8; 0x10000];
        for &(lo, hi) in WORD.iter() {
            for cp in lo..=hi.min(0xFFFF) {
                t[cp as usize] |= BMP_WORD;
            }
        }
        for (cp, flags) in t.iter_mut().enumerate() {
            if let Some(c) = char::from_u32(cp as u32) {
                let mut l = c.to_lowercase();
                if !(l.len() == 1 && l.next() == Some(c)) {
                    *flags |= BMP_LOWER_CHANGES;
                }
            }
        }
        t.into_boxed_slice()
    })
}

/// Flags of a code point: BMP from the precomputed table, the rest from the range tables.
#[inline]
fn flags(c: char) -> u8 {
    let cp = c as usize;
    if cp < 0x10000 {
        bmp_flags().get(cp).copied().unwrap_or(0)
    } else if in_table(&WORD, c) {
        BMP_WORD | BMP_LOWER_CHANGES
    } else {
        0
    }
}

/// Whether CPython's `re` `\w` matches `c`.
#[inline]
pub fn is_word(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        flags(c) & BMP_WORD != 0
    }
}

#[inline]
fn is_case_ignorable(c: char) -> bool {
    in_table(&CASE_IGNORABLE, c)
}

#[inline]
fn is_cased(c: char) -> bool {
    in_table(&CASED, c)
}

/// CPython's lowercase of U+03A3 at byte position `pos` of `text`: final sigma (U+03C2) when
/// preceded by a cased code point and not followed by one (case-ignorable ones skipped both ways).
fn lower_sigma(text: &str, pos: usize) -> char {
    let before = text[..pos].chars().rev().find(|&c| !is_case_ignorable(c));
    let final_sigma = match before {
        Some(c) if is_cased(c) => {
            let after = text[pos + 'Σ'.len_utf8()..]
                .chars()
                .find(|&c| !is_case_ignorable(c));
            !matches!(after, Some(c) if is_cased(c))
        }
        _ => false,
    };
    if final_sigma {
        'ς'
    } else {
        'σ'
    }
}

/// A normalised document: tokens joined by single spaces, and where each token starts.
#[derive(Debug, Default, Clone)]
pub struct Normalized {
    /// UTF-8 text: the tokens separated by one ASCII space.
    pub buf: Vec<u8>,
    /// Byte offset in `buf` where each token starts.
    pub starts: Vec<usize>,
    /// Whether `buf` is pure ASCII (char shingles can then skip boundary bookkeeping).
    pub ascii: bool,
}

struct Builder<'a> {
    n: &'a mut Normalized,
    in_token: bool,
}

impl Builder<'_> {
    #[inline]
    fn begin(&mut self) {
        if !self.in_token {
            if !self.n.buf.is_empty() {
                self.n.buf.push(b' ');
            }
            self.n.starts.push(self.n.buf.len());
            self.in_token = true;
        }
    }

    #[inline]
    fn push_byte(&mut self, b: u8) {
        self.begin();
        self.n.buf.push(b);
    }

    #[inline]
    fn push_char(&mut self, c: char) {
        if c.is_ascii() {
            self.push_byte(c as u8);
        } else {
            self.begin();
            let mut tmp = [0u8; 4];
            self.n
                .buf
                .extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            self.n.ascii = false;
        }
    }

    #[inline]
    fn sep(&mut self) {
        self.in_token = false;
    }

    /// Consume one separator byte, one run of ASCII word bytes or one non-ASCII code point of
    /// `text` at byte `i` (a char boundary); returns the position after it.
    #[inline(always)]
    fn scalar_step(&mut self, text: &str, mut i: usize, lowercase: bool) -> usize {
        let bytes = text.as_bytes();
        let n = bytes.len();
        let c = bytes[i];
        if c < 0x80 {
            if !ASCII_WORD[c as usize] {
                self.sep();
                return i + 1;
            }
            let run = i;
            while i < n && ASCII_WORD[bytes[i] as usize] {
                i += 1;
            }
            self.begin();
            let src = &bytes[run..i];
            if lowercase {
                self.n.buf.extend(src.iter().map(u8::to_ascii_lowercase));
            } else {
                self.n.buf.extend_from_slice(src);
            }
            return i;
        }
        // `i` is on a char boundary: we only ever step over whole ASCII bytes and whole chars.
        let Some(ch) = text.get(i..).and_then(|rest| rest.chars().next()) else {
            return n;
        };
        let f = flags(ch);
        if f & BMP_WORD == 0 {
            // CPython: lowercasing a non-word code point never yields a word one
            // (checked by the table generator), so it is a separator either way.
            self.sep();
        } else if !lowercase || f & BMP_LOWER_CHANGES == 0 {
            self.push_char(ch);
        } else if ch == 'Σ' {
            self.push_char(lower_sigma(text, i));
        } else {
            // Full lowercase mapping; it may contain non-word code points (U+0130 gives
            // "i" + U+0307), which split the token as they would in CPython.
            for l in ch.to_lowercase() {
                if is_word(l) {
                    self.push_char(l);
                } else {
                    self.sep();
                }
            }
        }
        i + ch.len_utf8()
    }
}

/// A block of at most 64 bytes, classified: bit masks of its ASCII word bytes and of its bytes
/// >= 0x80, and the block with ASCII capitals lowercased (plain loops the compiler vectorises).
struct Block {
    word: u64,
    high: u64,
    lower: [u8; 64],
}

#[inline(always)]
fn classify(block: &[u8]) -> Block {
    let mut chunk = [0u8; 64]; // NUL is an ASCII separator
    let len = block.len().min(64);
    chunk[..len].copy_from_slice(&block[..len]);
    let mut word = 0u64;
    let mut high = 0u64;
    let mut lower = [0u8; 64];
    for (j, &c) in chunk.iter().enumerate() {
        let upper = c.wrapping_sub(b'A') < 26;
        let alpha = (c | 0x20).wrapping_sub(b'a') < 26;
        let digit = c.wrapping_sub(b'0') < 10;
        let w = alpha | digit | (c == b'_');
        word |= (w as u64) << j;
        high |= ((c >> 7) as u64) << j;
        lower[j] = c | ((upper as u8) << 5);
    }
    Block { word, high, lower }
}

impl Normalized {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of tokens.
    pub fn n_tokens(&self) -> usize {
        self.starts.len()
    }

    /// Byte range of token `i` in `buf`.
    pub fn token_range(&self, i: usize) -> (usize, usize) {
        let start = self.starts[i];
        let end = match self.starts.get(i + 1) {
            Some(&next) => next - 1,
            None => self.buf.len(),
        };
        (start, end)
    }

    /// Replace the contents with the normalisation of `text`.
    pub fn fill(&mut self, text: &str, lowercase: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2 (checked just above).
                unsafe { self.fill_avx2(text, lowercase) };
                return;
            }
        }
        self.fill_impl(text, lowercase);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,bmi2")]
    unsafe fn fill_avx2(&mut self, text: &str, lowercase: bool) {
        self.fill_impl(text, lowercase);
    }

    /// Blocks of 64 bytes are classified at once (vectorised compares into bit masks, and a
    /// lowercased copy); their ASCII bytes are cut into tokens a run at a time from the mask,
    /// and each non-ASCII code point goes through the scalar path.
    #[inline(always)]
    fn fill_impl(&mut self, text: &str, lowercase: bool) {
        self.buf.clear();
        self.starts.clear();
        self.ascii = true;
        // The output is at most as long as the input for ASCII, and rarely longer otherwise.
        self.buf.reserve(text.len());
        let bytes = text.as_bytes();
        let n = bytes.len();
        let mut b = Builder {
            n: self,
            in_token: false,
        };
        let mut i = 0;
        while i < n {
            let blen = (n - i).min(64);
            let blk = classify(&bytes[i..i + blen]);
            // ASCII bytes up to the first non-ASCII one (or the whole block) go by the mask.
            let limit = if blk.high == 0 {
                blen
            } else {
                blk.high.trailing_zeros() as usize
            };
            let mut w = if limit >= 64 {
                blk.word
            } else {
                blk.word & ((1u64 << limit) - 1)
            };
            let src: &[u8] = if lowercase {
                &blk.lower
            } else {
                &bytes[i..i + blen]
            };
            let mut pos = 0u32;
            while w != 0 {
                let s = w.trailing_zeros();
                if s > pos {
                    b.sep();
                }
                let e = s + (!(w >> s)).trailing_zeros();
                b.begin();
                b.n.buf.extend_from_slice(&src[s as usize..e as usize]);
                pos = e;
                w = if e >= 64 { 0 } else { w & (u64::MAX << e) };
            }
            if (pos as usize) < limit {
                b.sep();
            }
            i += limit;
            // Non-ASCII code points, one at a time (a token may run into them: `in_token`).
            while i < n && bytes[i] >= 0x80 {
                i = b.scalar_step(text, i, lowercase);
            }
        }
    }

    /// The tokens, as string slices of `buf`.
    pub fn tokens(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.n_tokens()).map(move |i| {
            let (s, e) = self.token_range(i);
            // `buf` is built from whole UTF-8 sequences and ASCII bytes only.
            std::str::from_utf8(&self.buf[s..e]).unwrap_or("")
        })
    }

    /// Call `f` with the bytes of every shingle (duplicates included, in document order).
    /// `bounds` is scratch space for character shingles.
    pub fn for_each_shingle(
        &self,
        ngram: usize,
        char_ngrams: bool,
        bounds: &mut Vec<usize>,
        mut f: impl FnMut(&[u8]),
    ) {
        let n = ngram.max(1);
        if self.buf.is_empty() {
            return;
        }
        if char_ngrams {
            if self.ascii {
                if self.buf.len() <= n {
                    f(&self.buf);
                } else {
                    self.buf.windows(n).for_each(f);
                }
                return;
            }
            bounds.clear();
            bounds.extend(
                (0..self.buf.len()).filter(|&i| (self.buf[i] as i8) >= -0x40), // not a continuation byte
            );
            bounds.push(self.buf.len());
            let nchars = bounds.len() - 1;
            if nchars <= n {
                f(&self.buf);
            } else {
                for i in 0..=nchars - n {
                    f(&self.buf[bounds[i]..bounds[i + n]]);
                }
            }
            return;
        }
        let nt = self.n_tokens();
        if nt <= n {
            f(&self.buf);
            return;
        }
        for i in 0..=nt - n {
            let start = self.starts[i];
            let end = match self.starts.get(i + n) {
                Some(&next) => next - 1, // drop the separating space
                None => self.buf.len(),
            };
            f(&self.buf[start..end]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        let mut n = Normalized::new();
        n.fill(s, true);
        n.tokens().map(str::to_owned).collect()
    }

    fn shingles(s: &str, ngram: usize, chars: bool) -> Vec<String> {
        let mut n = Normalized::new();
        n.fill(s, true);
        let mut out = Vec::new();
        n.for_each_shingle(ngram, chars, &mut Vec::new(), |b| {
            out.push(String::from_utf8(b.to_vec()).unwrap())
        });
        out
    }

    #[test]
    fn ascii_tokens() {
        assert_eq!(
            toks("Hello, World!  foo_bar 42"),
            ["hello", "world", "foo_bar", "42"]
        );
        assert!(toks("  ,.;  ").is_empty());
        assert!(toks("").is_empty());
    }

    #[test]
    fn unicode_tokens() {
        assert_eq!(toks("Straße ÉTÉ"), ["straße", "été"]);
        // U+0130 lowercases to "i" + combining dot (not \w): the token splits.
        assert_eq!(toks("İstanbul"), ["i", "stanbul"]);
        // Combining marks are not \w in CPython's re.
        assert_eq!(toks("cafe\u{301}"), ["cafe"]);
        assert_eq!(toks("日本語 テキスト"), ["日本語", "テキスト"]);
    }

    #[test]
    fn final_sigma() {
        assert_eq!(toks("ΟΔΟΣ"), ["οδος"]);
        assert_eq!(toks("ΣΑ"), ["σα"]);
        assert_eq!(toks("Σ"), ["σ"]);
        assert_eq!(toks("ΑΣ'Α"), ["ασ", "α"]); // ' is case-ignorable, then a cased letter follows
    }

    /// Straightforward reference: std's whole-string lowercase, then split on non-word chars.
    fn reference_tokens(s: &str) -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !is_word(c))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn blocks_agree_with_reference() {
        // Tokens straddling 64-byte block edges, multi-byte chars at and across the edges.
        let alphabet = [
            "a", "B", "_", "7", " ", ".", "\n", "é", "É", "日", "’", "ß", "İ", "Σ", "😀", "ا",
        ];
        let mut st = 12345u64;
        for len in [0usize, 1, 63, 64, 65, 127, 128, 129, 200, 1000] {
            for _ in 0..50 {
                let mut s = String::new();
                while s.len() < len {
                    let r = crate::minhash::splitmix64(&mut st);
                    // Long runs of one kind make boundary cases likely.
                    let tok = alphabet[(r % alphabet.len() as u64) as usize];
                    for _ in 0..(r >> 60) {
                        s.push_str(tok);
                    }
                }
                assert_eq!(toks(&s), reference_tokens(&s), "{s:?}");
            }
        }
    }

    #[test]
    fn word_shingles() {
        assert_eq!(shingles("a b c d", 2, false), ["a b", "b c", "c d"]);
        assert_eq!(shingles("A, b", 5, false), ["a b"]);
        assert!(shingles("!!", 5, false).is_empty());
    }

    #[test]
    fn char_shingles() {
        assert_eq!(shingles("Ab, c", 3, true), ["ab ", "b c"]);
        assert_eq!(shingles("ab", 3, true), ["ab"]);
        assert_eq!(shingles("éa b", 3, true), ["éa ", "a b"]);
    }
}
