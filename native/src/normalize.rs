//! The `normalize` stage's text clean-up, one pass per document, in parallel over documents.
//!
//! The specification is the pyarrow chain the stage used before (kept as
//! `curate.pipelines._textops.normalize_reference`), applied in this order:
//!
//! 1. `utf8_normalize(text, form)` (skipped for `Form::None`);
//! 2. `\r\n?` -> `\n`;
//! 3. if `remove_control`: delete `[\x00-\x08\x0B-\x1F\x7F-\x9F]` (before collapsing, so
//!    that `"a \x01 b"` becomes `"a b"` and normalising twice changes nothing);
//!
//! except that when control characters are removed, steps 2-3 run first, before step 1 (a
//! control character between a letter and a combining mark must not block composition);
//! 4. if `collapse_whitespace`: `[\t\x0B\x0C\p{Zs}]+` -> `" "`;
//! 5. if `collapse_whitespace`: ` +\n` -> `\n`;
//! 6. `\n{k+1,}` -> `\n` * k (k = `max_newlines`);
//! 7. if `strip`: `utf8_trim_whitespace` (Arrow's whitespace: Unicode category Zs and the bidi
//!    classes WS, B and S, so U+001C..U+001F count and U+FEFF does not).
//!
//! Step 1 runs on the whole document (skipped when the Unicode quick-check says the text is
//! already in `form`). Steps 2-6 are each a small streaming transducer (a regex replacement
//! whose matches need at most a counter of state); they are chained char by char, each feeding
//! the next, which gives exactly the result of running them one after another over the whole
//! text. The leading half of step 7 drops characters at the end of the chain while nothing has
//! been written yet; the trailing half trims the finished output. Runs of characters that no step
//! touches are copied in bulk.

use rayon::prelude::*;
use unicode_normalization::{
    is_nfc_quick, is_nfd_quick, is_nfkc_quick, is_nfkd_quick, IsNormalized, UnicodeNormalization,
};

use crate::arrow::StringColumn;
use crate::error::{invalid, CoreError, Result};

/// Unicode normalisation form of step 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Nfc,
    Nfkc,
    Nfd,
    Nfkd,
    None,
}

impl Form {
    pub fn parse(s: &str) -> Result<Form> {
        Ok(match s {
            "NFC" => Form::Nfc,
            "NFKC" => Form::Nfkc,
            "NFD" => Form::Nfd,
            "NFKD" => Form::Nfkd,
            "none" => Form::None,
            _ => {
                return invalid(format!(
                    "form must be one of NFC, NFKC, NFD, NFKD, none; got {s:?}"
                ))
            }
        })
    }
}

/// Parameters of the clean-up (those of the `normalize` stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub form: Form,
    pub remove_control: bool,
    pub collapse_whitespace: bool,
    /// Longest run of `\n` kept (0 removes every newline).
    pub max_newlines: usize,
    pub strip: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            form: Form::Nfc,
            remove_control: true,
            collapse_whitespace: true,
            max_newlines: 2,
            strip: true,
        }
    }
}

/// `[\t\x0B\x0C\p{Zs}]`: the characters step 4 collapses.
#[inline]
fn is_blank(c: u32) -> bool {
    matches!(
        c,
        0x09 | 0x0B | 0x0C | 0x20 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000
    )
}

/// `[\x00-\x08\x0B-\x1F\x7F-\x9F]`: the characters step 3 removes.
#[inline]
fn is_control(c: u32) -> bool {
    matches!(c, 0x00..=0x08 | 0x0B..=0x1F | 0x7F..=0x9F)
}

/// Arrow's `utf8_trim_whitespace` set: general category Zs or bidi class WS, B or S.
#[inline]
fn is_trim_space(c: u32) -> bool {
    matches!(
        c,
        0x09..=0x0D
            | 0x1C..=0x20
            | 0x85
            | 0xA0
            | 0x1680
            | 0x2000..=0x200A
            | 0x2028
            | 0x2029
            | 0x202F
            | 0x205F
            | 0x3000
    )
}

/// Bytes that start a run of characters no step touches (once the chain is idle): printable
/// ASCII other than the space, UTF-8 continuation bytes and the lead bytes of characters that
/// are never blank, control or trimmed. The lead bytes 0xC2 (U+0080..U+00BF), 0xE1 (U+1680),
/// 0xE2 (U+2000..U+205F) and 0xE3 (U+3000) need a look at the whole character.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x21;
    while b < 256 {
        t[b] = !matches!(b, 0x7F | 0xC2 | 0xE1 | 0xE2 | 0xE3);
        b += 1;
    }
    t
};

/// The characters that the lead bytes 0xC2/0xE1/0xE2/0xE3 introduce and that no step touches.
#[inline]
fn is_plain_char(c: u32) -> bool {
    !(is_blank(c) || is_control(c) || is_trim_space(c))
}

/// Length of the UTF-8 sequence starting with lead byte `b` (valid UTF-8 assumed).
#[inline]
fn utf8_len(b: u8) -> usize {
    match b {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

/// Code point of the valid UTF-8 sequence `s` (1 to 4 bytes).
#[inline]
fn decode(s: &[u8]) -> u32 {
    let cont = |i: usize| (s.get(i).copied().unwrap_or(0x80) & 0x3F) as u32;
    let b0 = s[0] as u32;
    match s.len() {
        1 => b0,
        2 => ((b0 & 0x1F) << 6) | cont(1),
        3 => ((b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2),
        _ => ((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
    }
}

/// Position of the first byte >= 0x80 of `b` at or after `i`, scanning 8 bytes at a time.
#[inline]
fn first_non_ascii(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = b.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        if u64::from_le_bytes(w) & 0x8080_8080_8080_8080 != 0 {
            break;
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&x| x >= 0x80).map(|p| i + p)
}

/// Whether `s` is already in `form` by the Unicode quick-check (`Maybe` counts as no). ASCII
/// runs are skipped in bulk: ASCII is in every form and resets the quick-check's state, so the
/// check of the text is the combination of the checks of its non-ASCII runs.
fn quick_check_yes(s: &str, form: Form) -> bool {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match first_non_ascii(bytes, i) {
            None => return true,
            Some(p) => i = p,
        }
        let end = bytes[i..]
            .iter()
            .position(|&b| b < 0x80)
            .map_or(bytes.len(), |p| i + p);
        // `i` and `end` are char boundaries: a non-ASCII lead and the first ASCII byte after it.
        let Some(run) = s.get(i..end) else {
            return false;
        };
        let r = match form {
            Form::Nfc => is_nfc_quick(run.chars()),
            Form::Nfkc => is_nfkc_quick(run.chars()),
            Form::Nfd => is_nfd_quick(run.chars()),
            Form::Nfkd => is_nfkd_quick(run.chars()),
            Form::None => IsNormalized::Yes,
        };
        if r != IsNormalized::Yes {
            return false;
        }
        i = end;
    }
    true
}

/// Output of a block of documents: a fixed region of the final data buffer (the bytes the block's
/// input takes there), or, once the output outgrows it (normalisation can lengthen text), a vector
/// holding everything written so far.
pub struct Writer<'r> {
    region: &'r mut [u8],
    len: usize,
    spill: Option<Vec<u8>>,
}

impl<'r> Writer<'r> {
    pub fn new(region: &'r mut [u8]) -> Self {
        Writer {
            region,
            len: 0,
            spill: None,
        }
    }

    #[inline(always)]
    fn extend(&mut self, b: &[u8]) {
        if let Some(v) = &mut self.spill {
            v.extend_from_slice(b);
            return;
        }
        let end = self.len + b.len();
        if let Some(dst) = self.region.get_mut(self.len..end) {
            dst.copy_from_slice(b);
            self.len = end;
        } else {
            let mut v = Vec::with_capacity(end.max(self.region.len()) + self.region.len() / 8 + 64);
            v.extend_from_slice(&self.region[..self.len]);
            v.extend_from_slice(b);
            self.spill = Some(v);
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.spill.as_ref().map_or(self.len, Vec::len)
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &self.spill {
            Some(v) => v,
            None => &self.region[..self.len],
        }
    }

    fn truncate(&mut self, n: usize) {
        match &mut self.spill {
            Some(v) => v.truncate(n),
            None => self.len = self.len.min(n),
        }
    }
}

/// Steps 2-7 as chained streaming transducers writing to `out`.
struct Chain<'o, 'r> {
    out: &'o mut Writer<'r>,
    /// Where this document starts in `out`.
    start: usize,
    remove_control: bool,
    collapse: bool,
    max_newlines: usize,
    /// step 2: a `\r` was seen and not yet replaced.
    pending_cr: bool,
    /// step 4: inside a run of blanks.
    in_blank_run: bool,
    /// step 5: spaces held back until we know whether a `\n` follows.
    pending_spaces: usize,
    /// step 6: length of the current run of `\n`.
    newline_run: usize,
    /// step 7: nothing written yet and leading whitespace is being stripped.
    at_start: bool,
}

const SPACE: (u32, &[u8]) = (0x20, b" ");
const NEWLINE: (u32, &[u8]) = (0x0A, b"\n");

impl Chain<'_, '_> {
    /// True when a character no step touches passes the chain unchanged and leaves it as is
    /// (apart from resetting the newline run).
    #[inline]
    fn idle(&self) -> bool {
        !(self.pending_cr || self.in_blank_run || self.at_start) && self.pending_spaces == 0
    }

    /// Step 2: `\r\n?` -> `\n`.
    #[inline(always)]
    fn crlf(&mut self, c: u32, b: &[u8]) {
        if c == 0x0D {
            if self.pending_cr {
                self.controls(NEWLINE.0, NEWLINE.1);
            }
            self.pending_cr = true;
            return;
        }
        if self.pending_cr {
            self.pending_cr = false;
            self.controls(NEWLINE.0, NEWLINE.1);
            if c == 0x0A {
                return;
            }
        }
        self.controls(c, b);
    }

    /// Step 3: control characters other than `\t` and `\n` go.
    #[inline(always)]
    fn controls(&mut self, c: u32, b: &[u8]) {
        if self.remove_control && is_control(c) {
            return;
        }
        self.blanks(c, b);
    }

    /// Step 4: runs of `[\t\x0B\x0C\p{Zs}]` -> one space.
    #[inline(always)]
    fn blanks(&mut self, c: u32, b: &[u8]) {
        if self.collapse {
            if is_blank(c) {
                self.in_blank_run = true;
                return;
            }
            if self.in_blank_run {
                self.in_blank_run = false;
                self.line_ends(SPACE.0, SPACE.1);
            }
        }
        self.line_ends(c, b);
    }

    /// Step 5: ` +\n` -> `\n`.
    #[inline(always)]
    fn line_ends(&mut self, c: u32, b: &[u8]) {
        if self.collapse {
            if c == 0x20 {
                self.pending_spaces += 1;
                return;
            }
            if c == 0x0A {
                self.pending_spaces = 0;
            } else {
                self.flush_spaces();
            }
        }
        self.newlines(c, b);
    }

    fn flush_spaces(&mut self) {
        while self.pending_spaces > 0 {
            self.pending_spaces -= 1;
            self.newlines(SPACE.0, SPACE.1);
        }
    }

    /// Step 6: runs of more than `max_newlines` `\n` are cut to `max_newlines`.
    #[inline(always)]
    fn newlines(&mut self, c: u32, b: &[u8]) {
        if c == 0x0A {
            self.newline_run += 1;
            if self.newline_run > self.max_newlines {
                return;
            }
        } else {
            self.newline_run = 0;
        }
        self.emit(c, b);
    }

    /// Step 7 (leading half) and output.
    #[inline(always)]
    fn emit(&mut self, c: u32, b: &[u8]) {
        if self.at_start {
            if is_trim_space(c) {
                return;
            }
            self.at_start = false;
        }
        self.out.extend(b);
    }

    /// End of the text: flush what the steps held back, then trim the end if stripping.
    fn finish(mut self, strip: bool) {
        if self.pending_cr {
            self.pending_cr = false;
            self.controls(NEWLINE.0, NEWLINE.1);
        }
        if self.in_blank_run {
            self.in_blank_run = false;
            self.line_ends(SPACE.0, SPACE.1);
        }
        self.flush_spaces();
        if strip {
            let out = self.out.as_slice();
            let mut end = out.len();
            while end > self.start {
                let mut s = end - 1;
                while s > self.start && (out[s] & 0xC0) == 0x80 {
                    s -= 1;
                }
                if !is_trim_space(decode(&out[s..end])) {
                    break;
                }
                end = s;
            }
            self.out.truncate(end);
        }
    }

    /// Feed the whole (valid UTF-8) text.
    fn run(&mut self, text: &[u8]) {
        let n = text.len();
        let mut i = 0;
        while i < n {
            if self.idle() {
                let j = plain_run_end(text, i);
                if j > i {
                    // A run of untouched characters: copy it as is.
                    self.out.extend(&text[i..j]);
                    self.newline_run = 0;
                    i = j;
                    if i == n {
                        break;
                    }
                }
            }
            let len = utf8_len(text[i]).min(n - i);
            let ch = &text[i..i + len];
            self.crlf(decode(ch), ch);
            i += len;
        }
    }
}

/// End of the run of characters from `j` (a char boundary) that an idle chain passes unchanged:
/// characters no step touches, and single spaces between two of them.
#[inline]
fn plain_run_end(text: &[u8], mut j: usize) -> usize {
    let n = text.len();
    loop {
        while let Some(chunk) = text.get(j..j + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            if !clean_ascii8(u64::from_le_bytes(w)) {
                break;
            }
            j += 8;
        }
        let stop = (j + 8).min(n);
        while j < stop {
            let b = text[j];
            if PLAIN[b as usize] {
                j += 1;
            } else if b == b' ' && j + 1 < n && PLAIN[text[j + 1] as usize] {
                j += 2;
            } else if b >= 0xC0 {
                let len = utf8_len(b).min(n - j);
                if !is_plain_char(decode(&text[j..j + len])) {
                    return j;
                }
                j += len;
            } else {
                return j;
            }
        }
        if j >= n {
            return j;
        }
    }
}

/// Whether the 8 bytes of `w` (little-endian) are ASCII that `plain_run_end` passes as a whole:
/// printable characters and single spaces followed, within the word, by a printable character.
/// Byte-wise SWAR: every byte of `w | 0x80..` is at least 0x80, so the subtractions never borrow
/// across bytes and the tests are exact.
#[inline]
fn clean_ascii8(w: u64) -> bool {
    const L: u64 = 0x0101_0101_0101_0101;
    const H: u64 = L * 0x80;
    if w & H != 0 {
        return false;
    }
    let below_21 = !((w | H) - L * 0x21) & H;
    let is_zero = |y: u64| !((y | H) - L) & H;
    let space = is_zero(w ^ (L * 0x20));
    let del = is_zero(w ^ (L * 0x7F));
    let bad = (below_21 & !space) | del | ((space << 8) & below_21) | (space & (0x80 << 56));
    bad == 0
}

/// Normalise `text` (steps 1-7) and append the result to `out`. `scratch` is reused between
/// calls for step 1's output.
pub fn normalize_into(text: &str, opts: &Options, scratch: &mut String, out: &mut Writer<'_>) {
    // Steps 2-3 first when there are control characters (or `\r`) to remove, so that the Unicode
    // normalisation sees the text without them: removing a control character between a base
    // letter and a combining mark afterwards would leave the text unnormalised.
    let cleaned: String;
    let text: &str = if opts.remove_control && needs_control_pass(text.as_bytes()) {
        cleaned = crlf_and_controls(text);
        &cleaned
    } else {
        text
    };
    let src: &str = if opts.form == Form::None || quick_check_yes(text, opts.form) {
        text
    } else {
        scratch.clear();
        match opts.form {
            Form::Nfc => scratch.extend(text.chars().nfc()),
            Form::Nfkc => scratch.extend(text.chars().nfkc()),
            Form::Nfd => scratch.extend(text.chars().nfd()),
            Form::Nfkd => scratch.extend(text.chars().nfkd()),
            Form::None => scratch.push_str(text),
        }
        scratch
    };
    let start = out.len();
    let mut chain = Chain {
        out,
        start,
        remove_control: opts.remove_control,
        collapse: opts.collapse_whitespace,
        max_newlines: opts.max_newlines,
        pending_cr: false,
        in_blank_run: false,
        pending_spaces: 0,
        newline_run: 0,
        at_start: opts.strip,
    };
    chain.run(src.as_bytes());
    chain.finish(opts.strip);
}

/// True when the text has a `\r` or a character step 3 removes (C0 other than `\t`/`\n`, DEL, C1).
fn needs_control_pass(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &x)| {
        (x < 0x20 && x != b'\n' && x != b'\t')
            || x == 0x7F
            || (x == 0xC2 && b.get(i + 1).is_some_and(|&y| (0x80..=0x9F).contains(&y)))
    })
}

/// Steps 2 and 3 on their own: `\r\n?` -> `\n`, then control characters removed.
fn crlf_and_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' {
            if chars.peek() == Some(&'\n') {
                chars.next();
            }
            out.push('\n');
        } else if !is_control(c as u32) {
            out.push(c);
        }
    }
    out
}

/// Convenience for tests: the normalised text as a `String`.
pub fn normalize_str(text: &str, opts: &Options) -> String {
    let mut region = vec![0u8; text.len() / 2];
    let mut out = Writer::new(&mut region);
    normalize_into(text, opts, &mut String::new(), &mut out);
    // The chain only ever copies whole characters of valid UTF-8.
    String::from_utf8(out.as_slice().to_vec()).unwrap_or_default()
}

/// Validity bitmap of an Arrow array: bit `offset + i` (LSB first) set when value `i` is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity<'a> {
    pub bits: &'a [u8],
    pub offset: usize,
}

impl Validity<'_> {
    #[inline]
    fn is_valid(&self, i: usize) -> bool {
        let k = self.offset + i;
        self.bits
            .get(k / 8)
            .is_some_and(|byte| byte & (1 << (k % 8)) != 0)
    }
}

/// Errors of `normalize_column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NormalizeError {
    Core(CoreError),
    /// The output (this many bytes) does not fit 32-bit offsets.
    TooLarge(usize),
}

impl From<CoreError> for NormalizeError {
    fn from(e: CoreError) -> Self {
        NormalizeError::Core(e)
    }
}

/// What `normalize_column` wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// Bytes of output data.
    pub data_len: usize,
    /// Valid values whose text changed.
    pub changed: usize,
    /// When the output is longer than the input's values (normalisation lengthened the text more
    /// than the clean-up shortened it), it did not fit the data buffer: here it is instead.
    pub spilled: Option<Vec<u8>>,
}

/// Sum of the value lengths of `col`: the size of the data buffer `normalize_column` fills.
pub fn values_len(col: &StringColumn<'_>) -> usize {
    (0..col.len()).map(|i| col.value(i).len()).sum()
}

/// Input bytes per parallel block (at least one document).
const BLOCK_BYTES: usize = 256 * 1024;

struct BlockOut {
    /// End of each document's output, relative to the block's output.
    ends: Vec<usize>,
    len: usize,
    /// The block's output when it outgrew its region.
    spill: Option<Vec<u8>>,
    changed: usize,
}

fn process_block(
    col: &StringColumn<'_>,
    validity: Option<Validity<'_>>,
    docs: std::ops::Range<usize>,
    opts: &Options,
    region: &mut [u8],
) -> Result<BlockOut> {
    let mut ends = Vec::new();
    ends.try_reserve_exact(docs.len())
        .map_err(|_| CoreError::Memory(format!("cannot allocate {} offsets", docs.len())))?;
    let mut out = Writer::new(region);
    let mut scratch = String::new();
    let mut changed = 0;
    for i in docs {
        let start = out.len();
        if validity.is_none_or(|v| v.is_valid(i)) {
            let raw = col.value(i);
            let text = std::str::from_utf8(raw)
                .map_err(|e| CoreError::Invalid(format!("value {i} is not valid UTF-8: {e}")))?;
            normalize_into(text, opts, &mut scratch, &mut out);
            if out.as_slice()[start..] != *raw {
                changed += 1;
            }
        }
        ends.push(out.len());
    }
    Ok(BlockOut {
        ends,
        len: out.len(),
        spill: out.spill,
        changed,
    })
}

/// Normalise every value of `col` in parallel on the current rayon pool (the binding runs it on
/// a pool of `crate::pool`). Null values (per `validity`) become empty and are neither read nor
/// counted as changed.
///
/// `data` must be `values_len(col)` bytes: the output is written there, starting at 0, unless it
/// is longer (see `Written::spilled`). `offsets` must be `(col.len() + 1) * width` bytes (width 4
/// or 8): the output's Arrow offsets, little-endian, from 0.
pub fn normalize_column(
    col: &StringColumn<'_>,
    validity: Option<Validity<'_>>,
    opts: &Options,
    offsets: &mut [u8],
    width: usize,
    data: &mut [u8],
) -> std::result::Result<Written, NormalizeError> {
    let n = col.len();
    if let Some(v) = validity {
        if v.offset.saturating_add(n).div_ceil(8) > v.bits.len() {
            return Err(CoreError::Invalid(format!(
                "validity bitmap of {} bytes is too short for {n} values at bit offset {}",
                v.bits.len(),
                v.offset
            ))
            .into());
        }
    }
    if (width != 4 && width != 8) || Some(offsets.len()) != (n + 1).checked_mul(width) {
        return Err(CoreError::Invalid(format!(
            "offsets output must be {n} + 1 values of 4 or 8 bytes, got {} bytes of width {width}",
            offsets.len()
        ))
        .into());
    }
    // Blocks of consecutive documents; each writes its output where its input sat (the regions
    // tile `data`), which holds it unless normalisation lengthened the text.
    let mut blocks: Vec<(std::ops::Range<usize>, usize)> = Vec::new();
    let (mut first, mut bytes, mut total) = (0, 0, 0);
    for i in 0..n {
        bytes += col.value(i).len();
        if bytes >= BLOCK_BYTES || i + 1 == n {
            blocks.push((first..i + 1, bytes));
            total += bytes;
            first = i + 1;
            bytes = 0;
        }
    }
    if data.len() != total {
        return Err(CoreError::Invalid(format!(
            "data output must be {total} bytes (the input's values), got {}",
            data.len()
        ))
        .into());
    }
    let sizes: Vec<usize> = blocks.iter().map(|b| b.1).collect();
    let mut regions = Vec::with_capacity(blocks.len());
    let mut rest: &mut [u8] = data;
    for (_, len) in &blocks {
        let (head, tail) = rest.split_at_mut(*len);
        regions.push(head);
        rest = tail;
    }
    let outs = blocks
        .into_par_iter()
        .zip(regions)
        .map(|((docs, _), region)| process_block(col, validity, docs, opts, region))
        .collect::<Result<Vec<BlockOut>>>()?;

    let data_len: usize = outs.iter().map(|b| b.len).sum();
    if width == 4 && data_len > i32::MAX as usize {
        return Err(NormalizeError::TooLarge(data_len));
    }
    let changed = outs.iter().map(|b| b.changed).sum();
    let mut put = |k: usize, v: usize| {
        let o = &mut offsets[k * width..(k + 1) * width];
        if width == 4 {
            o.copy_from_slice(&(v as i32).to_le_bytes());
        } else {
            o.copy_from_slice(&(v as i64).to_le_bytes());
        }
    };
    put(0, 0);
    let (mut k, mut base) = (1, 0);
    for b in &outs {
        for &e in &b.ends {
            put(k, base + e);
            k += 1;
        }
        base += b.len;
    }

    // Move each block's output to its place. Moving left to right in place is safe while no
    // block's output ends past the start of the next (still unmoved) region, i.e. while no prefix
    // of the output is longer than the same prefix of the input; otherwise gather it elsewhere.
    let (mut pos, mut region_end) = (0usize, 0usize);
    let mut in_place = true;
    for (b, region_len) in outs.iter().zip(sizes.iter().copied()) {
        region_end += region_len;
        pos += b.len;
        if pos > region_end {
            in_place = false;
            break;
        }
    }
    if in_place {
        let (mut pos, mut region_start) = (0usize, 0usize);
        for (b, region_len) in outs.iter().zip(sizes.iter().copied()) {
            match &b.spill {
                Some(v) => data[pos..pos + b.len].copy_from_slice(v),
                None => data.copy_within(region_start..region_start + b.len, pos),
            }
            pos += b.len;
            region_start += region_len;
        }
        return Ok(Written {
            data_len,
            changed,
            spilled: None,
        });
    }
    let mut all = Vec::new();
    all.try_reserve_exact(data_len).map_err(|_| {
        CoreError::Memory(format!(
            "cannot allocate {data_len} bytes of normalised text"
        ))
    })?;
    let mut region_start = 0;
    for (b, region_len) in outs.iter().zip(sizes.iter().copied()) {
        match &b.spill {
            Some(v) => all.extend_from_slice(v),
            None => all.extend_from_slice(&data[region_start..region_start + b.len]),
        }
        region_start += region_len;
    }
    Ok(Written {
        data_len,
        changed,
        spilled: Some(all),
    })
}

pub mod py {
    //! The Python binding, registered by lib.rs as `curate._native.normalize_texts`.

    use pyo3::exceptions::{PyOverflowError, PyRuntimeError};
    use pyo3::prelude::*;
    use pyo3::types::PyBytes;

    use super::{normalize_column, values_len, Form, NormalizeError, Options, Validity};
    use crate::arrow::StringColumn;
    use crate::{count_arg, in_pool, pool_size, to_py, width, ByteView};

    /// Normalise every value of an Arrow string array (the `normalize` stage). Returns
    /// `(offsets, data, data_len, changed)`: the new array's offsets (n + 1, from 0, of the
    /// input's width), a data buffer whose first `data_len` bytes are its values, and the number
    /// of valid values that changed.
    #[pyfunction]
    #[pyo3(signature = (offsets, data, validity=None, *, validity_offset=0, form="NFC",
                        remove_control=true, collapse_whitespace=true, max_newlines=2,
                        strip=true, large_offsets=false, num_threads=0))]
    #[allow(clippy::too_many_arguments)]
    pub fn normalize_texts<'py>(
        py: Python<'py>,
        offsets: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
        validity: Option<&Bound<'py, PyAny>>,
        validity_offset: i64,
        form: &str,
        remove_control: bool,
        collapse_whitespace: bool,
        max_newlines: i64,
        strip: bool,
        large_offsets: bool,
        num_threads: i64,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>, usize, usize)> {
        let opts = Options {
            form: Form::parse(form).map_err(to_py)?,
            remove_control,
            collapse_whitespace,
            max_newlines: count_arg("max_newlines", max_newlines)?,
            strip,
        };
        let threads = pool_size(num_threads)?;
        let voff = count_arg("validity_offset", validity_offset)?;
        let (ov, dv) = (
            ByteView::get(offsets, "offsets")?,
            ByteView::get(data, "data")?,
        );
        let vv = validity.map(|v| ByteView::get(v, "validity")).transpose()?;
        let w = width(large_offsets);
        let col = StringColumn::new(ov.as_slice(), dv.as_slice(), w).map_err(to_py)?;
        let valid = vv.as_ref().map(|v| Validity {
            bits: v.as_slice(),
            offset: voff,
        });
        let wb = w.bytes();
        let offsets_len = (col.len() + 1)
            .checked_mul(wb)
            .ok_or_else(|| PyOverflowError::new_err("too many values"))?;
        let total = py.detach(|| values_len(&col));
        let (mut written, mut data_out) = (None, None);
        let offsets_out = PyBytes::new_with(py, offsets_len, |o| {
            let d = PyBytes::new_with(py, total, |d| {
                let r = py.detach(|| {
                    in_pool(threads, || normalize_column(&col, valid, &opts, o, wb, d))
                })?;
                written = Some(r.map_err(|e| match e {
                    NormalizeError::Core(e) => to_py(e),
                    NormalizeError::TooLarge(len) => PyOverflowError::new_err(format!(
                        "normalised text is {len} bytes, more than 32-bit offsets can address"
                    )),
                })?);
                Ok(())
            })?;
            data_out = Some(d);
            Ok(())
        })?;
        let (Some(written), Some(data_out)) = (written, data_out) else {
            return Err(PyRuntimeError::new_err(
                "normalize_texts produced no output",
            ));
        };
        let data_out = match &written.spilled {
            Some(v) => PyBytes::new(py, v),
            None => data_out,
        };
        Ok((offsets_out, data_out, written.data_len, written.changed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrow::OffsetWidth;

    fn opts() -> Options {
        Options::default()
    }

    #[test]
    fn stage_example() {
        let t = "  Cafe\u{301} \t  au\u{a0}lait\r\nline two   \n\n\n\n\nend\x00\x07 ";
        assert_eq!(
            normalize_str(t, &opts()),
            "Caf\u{e9} au lait\nline two\n\nend"
        );
        let o = Options {
            form: Form::Nfkc,
            max_newlines: 1,
            ..opts()
        };
        assert_eq!(normalize_str("\u{fb01}ne\n\n\nx", &o), "fine\nx");
    }

    #[test]
    fn steps_run_in_order() {
        // Control characters go before blanks are collapsed (so normalising is idempotent).
        assert_eq!(normalize_str("a \x01 b", &opts()), "a b");
        // ...and before the Unicode normalisation: the accent composes with its letter.
        assert_eq!(normalize_str("a\x1b\u{301}", &opts()), "\u{e1}");
        // ...and spaces that then meet a newline go.
        assert_eq!(normalize_str("a \x01 \nb", &opts()), "a\nb");
        // \r\r\n is two newlines; lone \r is one.
        assert_eq!(normalize_str("a\r\r\nb\rc", &opts()), "a\n\nb\nc");
        // Without collapsing, \x0B and \x0C are controls, tabs stay.
        let o = Options {
            collapse_whitespace: false,
            ..opts()
        };
        assert_eq!(normalize_str("a\x0B\t  \nb", &o), "a\t  \nb");
        // Without removing controls, U+001C..U+001F are still stripped at the ends.
        let o = Options {
            remove_control: false,
            ..opts()
        };
        assert_eq!(normalize_str("\x1c\x01a\x1f", &o), "\x01a");
        // Newline runs are counted after the spaces between them went.
        assert_eq!(normalize_str("a\n \n \n \nb", &opts()), "a\n\nb");
        let o = Options {
            max_newlines: 0,
            ..opts()
        };
        assert_eq!(normalize_str("a\n\nb\n", &o), "ab");
    }

    #[test]
    fn swar_run_scan_matches_byte_scan() {
        fn scalar(text: &[u8]) -> usize {
            let (n, mut j) = (text.len(), 0);
            while j < n {
                let b = text[j];
                if PLAIN[b as usize] {
                    j += 1;
                } else if b == b' ' && j + 1 < n && PLAIN[text[j + 1] as usize] {
                    j += 2;
                } else if b >= 0xC0 && is_plain_char(decode(&text[j..j + utf8_len(b)])) {
                    j += utf8_len(b);
                } else {
                    break;
                }
            }
            j
        }
        let alphabet: Vec<&str> = vec![
            "a",
            "Z",
            "!",
            "~",
            " ",
            "\n",
            "\t",
            "\x7f",
            "\x00",
            "\x1f",
            "\u{e9}",
            "\u{a0}",
            "\u{85}",
            "\u{2019}",
            "\u{2003}",
            "\u{3000}",
            "\u{1f600}",
            "xyz",
            "  ",
        ];
        let mut state = 12345u64;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(state % 40) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Mostly plain text, sometimes a special character.
                let k = (state >> 33) as usize;
                s.push_str(if k.is_multiple_of(4) {
                    alphabet[k / 4 % alphabet.len()]
                } else {
                    "ab"
                });
            }
            state = state.wrapping_add(7);
            assert_eq!(
                plain_run_end(s.as_bytes(), 0),
                scalar(s.as_bytes()),
                "{s:?}"
            );
        }
        for w in [
            *b"abcdefgh",
            *b"ab cd ef",
            *b"abcdefg ",
            *b"ab  cdef",
            *b"a\x7fbcdefg",
        ] {
            let want = scalar(&w) == 8 && w[7] != b' ';
            assert_eq!(clean_ascii8(u64::from_le_bytes(w)), want, "{w:?}");
        }
    }

    #[test]
    fn strip_set() {
        let o = Options {
            form: Form::None,
            remove_control: false,
            collapse_whitespace: false,
            max_newlines: 100,
            strip: true,
        };
        assert_eq!(
            normalize_str("\u{2028}\u{85}x\u{feff}\u{3000}", &o),
            "x\u{feff}"
        );
        assert_eq!(normalize_str(" \u{2029} ", &o), "");
        assert_eq!(normalize_str("", &o), "");
    }

    #[test]
    fn forms() {
        let s = "e\u{301}\u{fb01}\u{1100}\u{1161}";
        let f = |form| {
            normalize_str(
                s,
                &Options {
                    form,
                    ..Options::default()
                },
            )
        };
        assert_eq!(f(Form::Nfc), "\u{e9}\u{fb01}\u{ac00}");
        assert_eq!(f(Form::Nfkc), "\u{e9}fi\u{ac00}");
        assert_eq!(f(Form::Nfd), "e\u{301}\u{fb01}\u{1100}\u{1161}");
        assert_eq!(f(Form::Nfkd), "e\u{301}fi\u{1100}\u{1161}");
        assert_eq!(f(Form::None), s);
        assert!(quick_check_yes("plain ascii", Form::Nfc));
        assert!(!quick_check_yes("ab e\u{301}", Form::Nfc));
        assert!(Form::parse("nfc").is_err());
    }

    fn column(values: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
        let mut offs = vec![0i32];
        let mut data = Vec::new();
        for v in values {
            data.extend_from_slice(v);
            offs.push(data.len() as i32);
        }
        (offs.iter().flat_map(|x| x.to_le_bytes()).collect(), data)
    }

    /// Run `normalize_column` on `col` with fresh buffers: (offsets as i64, data, changed).
    fn run_column(
        col: &StringColumn<'_>,
        validity: Option<Validity<'_>>,
        opts: &Options,
        width: usize,
    ) -> std::result::Result<(Vec<i64>, Vec<u8>, usize), NormalizeError> {
        let mut offs = vec![0u8; (col.len() + 1) * width];
        let mut data = vec![0u8; values_len(col)];
        let w = normalize_column(col, validity, opts, &mut offs, width, &mut data)?;
        let data = match w.spilled {
            Some(v) => v,
            None => data[..w.data_len].to_vec(),
        };
        assert_eq!(data.len(), w.data_len);
        let offs = offs
            .chunks_exact(width)
            .map(|c| match width {
                4 => i32::from_le_bytes(c.try_into().unwrap()) as i64,
                _ => i64::from_le_bytes(c.try_into().unwrap()),
            })
            .collect();
        Ok((offs, data, w.changed))
    }

    #[test]
    fn column_with_nulls_and_bad_utf8() {
        let (o, d) = column(&[b" a ", b"\xff", b"b", b""]);
        let col = StringColumn::new(&o, &d, OffsetWidth::I32).unwrap();
        // value 1 is null (bit offset 1: bits 1..5 hold values 0..3)
        let bits = [0b0001_1010u8];
        let v = Validity {
            bits: &bits,
            offset: 1,
        };
        let (offs, data, changed) = run_column(&col, Some(v), &opts(), 8).unwrap();
        assert_eq!(changed, 1);
        assert_eq!(data, b"ab");
        assert_eq!(offs, [0, 1, 1, 2, 2]);
        // Without the validity, the invalid value is an error, not a panic.
        assert!(matches!(
            run_column(&col, None, &opts(), 4),
            Err(NormalizeError::Core(CoreError::Invalid(_)))
        ));
        // A short bitmap is an error too, and so are wrongly sized outputs.
        let short = Validity {
            bits: &bits,
            offset: 5,
        };
        assert!(run_column(&col, Some(short), &opts(), 4).is_err());
        let mut small = vec![0u8; 3];
        let mut offs = vec![0u8; 20];
        assert!(normalize_column(&col, Some(v), &opts(), &mut offs, 4, &mut small).is_err());
        let mut data = vec![0u8; values_len(&col)];
        assert!(normalize_column(&col, Some(v), &opts(), &mut offs, 8, &mut data).is_err());
    }

    #[test]
    fn many_blocks_keep_order() {
        let doc = "x ".repeat(50_000) + "\r\n";
        let docs: Vec<&[u8]> = (0..20).map(|_| doc.as_bytes()).collect();
        let (o, d) = column(&docs);
        let col = StringColumn::new(&o, &d, OffsetWidth::I32).unwrap();
        let (offs, data, changed) = run_column(&col, None, &opts(), 4).unwrap();
        assert_eq!(changed, 20);
        let want = doc.trim_end();
        assert_eq!(data, want.repeat(20).as_bytes());
        assert_eq!(offs[20] as usize, data.len());
        assert_eq!(offs[1] as usize, want.len());
    }

    #[test]
    fn lengthening_normalisation_spills() {
        // U+FDFA is 3 bytes and 33 in NFKD: blocks outgrow their regions.
        let nfkd = Options {
            form: Form::Nfkd,
            ..opts()
        };
        let one: String = normalize_str("\u{fdfa}", &nfkd);
        assert_eq!(one.len(), 33);
        // Only some blocks lengthen (the first ones): data still fits in place or not, both
        // paths must give the same result as document-by-document normalisation.
        let fdfa = |k: usize| "\u{fdfa}".repeat(k);
        let spaces = |k: usize| " ".repeat(k) + "x";
        let cases: Vec<Vec<String>> = vec![
            // one block, shrinks overall
            vec![fdfa(1) + &spaces(200_000), " \u{fdfa} ".into(), "  ".into()],
            // every block grows: gathered elsewhere
            vec![fdfa(100_000), " \u{fdfa} ".into(), fdfa(100_000)],
            // the first block shrinks, the second outgrows its region but the prefix fits:
            // moved in place from its spill
            vec![spaces(400_000), fdfa(10_000), "a".into(), String::new()],
            // the first block grows, the second shrinks: gathered elsewhere
            vec![fdfa(90_000), spaces(400_000), "b ".into()],
            vec![String::new(), " ".into()],
        ];
        for docs in cases {
            let bytes: Vec<&[u8]> = docs.iter().map(|d| d.as_bytes()).collect();
            let (o, d) = column(&bytes);
            let col = StringColumn::new(&o, &d, OffsetWidth::I32).unwrap();
            let (offs, data, changed) = run_column(&col, None, &nfkd, 8).unwrap();
            let want: Vec<String> = docs.iter().map(|t| normalize_str(t, &nfkd)).collect();
            assert_eq!(data, want.concat().as_bytes());
            let mut end = 0;
            for (k, w) in want.iter().enumerate() {
                end += w.len();
                assert_eq!(offs[k + 1] as usize, end);
            }
            let n_changed = docs.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(changed, n_changed);
        }
    }
}
