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

/// Whether CPython's `re` `\w` matches `c`.
#[inline]
pub fn is_word(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_'
    } else {
        in_table(&WORD, c)
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
        self.buf.clear();
        self.starts.clear();
        self.ascii = true;
        // The output is at most as long as the input for ASCII, and rarely longer otherwise.
        self.buf.reserve(text.len());
        let bytes = text.as_bytes();
        let n = bytes.len();
        let mut b = Builder { n: self, in_token: false };
        let mut i = 0;
        while i < n {
            let c = bytes[i];
            if c < 0x80 {
                if !ASCII_WORD[c as usize] {
                    b.sep();
                    i += 1;
                    continue;
                }
                // A run of ASCII word bytes, copied (and lowercased) in one go.
                let run = i;
                while i < n && ASCII_WORD[bytes[i] as usize] {
                    i += 1;
                }
                b.begin();
                let src = &bytes[run..i];
                if lowercase {
                    b.n.buf.extend(src.iter().map(u8::to_ascii_lowercase));
                } else {
                    b.n.buf.extend_from_slice(src);
                }
                continue;
            }
            // A non-ASCII code point: `i` is on a char boundary (we only ever step over whole
            // ASCII bytes and whole chars).
            let Some(ch) = text.get(i..).and_then(|rest| rest.chars().next()) else {
                break;
            };
            let pos = i;
            i += ch.len_utf8();
            if !is_word(ch) {
                // CPython: lowercasing a non-word code point never yields a word one
                // (checked by the table generator), so it is a separator either way.
                b.sep();
            } else if !lowercase {
                b.push_char(ch);
            } else if ch == 'Σ' {
                b.push_char(lower_sigma(text, pos));
            } else {
                // Full lowercase mapping; it may contain non-word code points (U+0130 gives
                // "i" + U+0307), which split the token as they would in CPython.
                for l in ch.to_lowercase() {
                    if is_word(l) {
                        b.push_char(l);
                    } else {
                        b.sep();
                    }
                }
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
