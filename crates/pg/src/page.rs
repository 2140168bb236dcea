//! Data page checksums: PostgreSQL's algorithm and a streaming validator for relation files.
//!
//! Contract:
//! - [`checksum`] is `pg_checksum_page()`: FNV-1a-derived over 32 lanes, the stored `pd_checksum`
//!   treated as zero, the block number mixed in, result in `1..=65535`. Only 8 KiB pages.
//! - [`PageChecksumValidator`] observes the bytes of one relation segment file as they stream past
//!   (any chunk sizes; the result does not depend on how the file was split) and reports what
//!   pgBackRest's page checksum filter reports, with block numbers absolute in the relation fork
//!   (`segment_no * 131072 + page index`):
//!   - an all-zero page is new and skipped;
//!   - a page whose `pd_lsn` is at or after the backup start LSN (when a limit is given) is
//!     skipped: it may be torn mid-write and WAL replay rewrites it;
//!   - a page with `pd_upper == 0` that is not all zero is an error (its header is damaged);
//!   - any other page whose checksum differs is an error, unless the optional recheck hook says the
//!     page changed on disk since it was read (PostgreSQL was writing it; pgBackRest re-reads once);
//!   - a trailing partial page makes the file misaligned (`align = false`, `valid = false`). As in
//!     pgBackRest, a remainder of at least 512 bytes is counted as a page and recorded as an error
//!     (a partial page cannot carry a valid checksum), a shorter remainder just invalidates the
//!     file. Callers drop the error list of a misaligned file, which pgBackRest reports as "page
//!     misalignment" without a list.
//! - [`PageChecksumResult::errors_json`] renders the list as stored in the manifest's
//!   `checksum-page-error` (`[[2,3],6]`: runs of consecutive blocks collapse to `[first,last]`).
//! - The validator never panics and never fails: damage is data, reported in the result.

use crate::bytes::{u16_at, u32_at};

/// Data page size (the only one supported).
pub const PAGE_SIZE: usize = 8192;
/// Pages per relation segment file for 8 KiB pages.
pub const SEGMENT_PAGES: u32 = 131_072;
/// Smallest trailing fragment still treated as a (partially written) page.
pub const PARTIAL_PAGE_MIN: usize = 512;

const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F_36E9,
    0xB852_5960,
    0x02AB_50AA,
    0x1DE6_6D2A,
    0x79FF_467A,
    0x9BB9_F8A3,
    0x217E_7CD2,
    0x83E1_3D2C,
    0xF8D4_474F,
    0xE39E_B970,
    0x42C6_AE16,
    0x9932_16FA,
    0x7B09_3B5D,
    0x98DA_FF3C,
    0xF718_902A,
    0x0B1C_9CDB,
    0xE58F_764B,
    0x1876_36BC,
    0x5D7B_3BB1,
    0xE73D_E7DE,
    0x92BE_C979,
    0xCCA6_C0B2,
    0x304A_0979,
    0x85AA_43D4,
    0x7831_25BB,
    0x6CA8_EAA2,
    0xE407_EAC6,
    0x4B5C_FC3E,
    0x9FBF_8C76,
    0x15CA_20BE,
    0xF2CA_9FD3,
    0x959B_D756,
];

/// Offset of `pd_checksum` in the page header.
const PD_CHECKSUM: usize = 8;
/// Offset of `pd_upper` in the page header.
const PD_UPPER: usize = 14;

#[inline]
fn comp(sum: u32, value: u32) -> u32 {
    let tmp = sum ^ value;
    tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17)
}

/// `pg_checksum_page()` of an 8 KiB page at absolute block number `blkno`.
#[must_use]
pub fn checksum(page: &[u8; PAGE_SIZE], blkno: u32) -> u16 {
    let mut sums = BASE_OFFSETS;
    for (word_idx, word) in page.chunks_exact(4).enumerate() {
        let mut value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        // pd_checksum (bytes 8..10) is the low half of word 2 and counts as zero
        if word_idx == PD_CHECKSUM / 4 {
            value &= 0xFFFF_0000;
        }
        let lane = word_idx % N_SUMS;
        sums[lane] = comp(sums[lane], value);
    }
    for _ in 0..2 {
        for sum in &mut sums {
            *sum = comp(*sum, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ blkno;
    // (x % 65535) + 1 is at most 65535, so it always fits
    u16::try_from(folded % 65_535 + 1).unwrap_or(u16::MAX)
}

/// The checksum stored in a page header.
#[must_use]
pub fn stored_checksum(page: &[u8]) -> Option<u16> {
    u16_at(page, PD_CHECKSUM)
}

/// `pd_lsn` of a page: two u32 halves, high first (not a plain little-endian u64).
#[must_use]
pub fn page_lsn(page: &[u8]) -> Option<u64> {
    let hi = u32_at(page, 0)?;
    let lo = u32_at(page, 4)?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// Called with (page index within the file, page as read) for a page that failed; returns true
/// when the page on disk has changed since (so the failure is ignored).
pub type RecheckFn = Box<dyn FnMut(u32, &[u8; PAGE_SIZE]) -> bool + Send>;

/// What [`PageChecksumValidator`] found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageChecksumResult {
    /// False when any page failed or the file is misaligned.
    pub valid: bool,
    /// False when the file size is not a multiple of the page size.
    pub align: bool,
    /// Absolute block numbers that failed, ascending.
    pub errors: Vec<u32>,
}

/// One entry of the collapsed error list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageErrorRange {
    /// A single failed block.
    Single(u32),
    /// Consecutive failed blocks `first..=last`.
    Range(u32, u32),
}

impl PageChecksumResult {
    /// Errors with runs of consecutive blocks collapsed, in order.
    #[must_use]
    pub fn error_ranges(&self) -> Vec<PageErrorRange> {
        collapse_errors(&self.errors)
    }

    /// The manifest's `checksum-page-error` value, e.g. `[[2,3],6]`.
    #[must_use]
    pub fn errors_json(&self) -> String {
        let items: Vec<String> = self
            .error_ranges()
            .iter()
            .map(|r| match r {
                PageErrorRange::Single(b) => b.to_string(),
                PageErrorRange::Range(a, b) => format!("[{a},{b}]"),
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    /// The list as pgBackRest logs it in its warning, e.g. `2-3, 6`.
    #[must_use]
    pub fn errors_text(&self) -> String {
        let items: Vec<String> = self
            .error_ranges()
            .iter()
            .map(|r| match r {
                PageErrorRange::Single(b) => b.to_string(),
                PageErrorRange::Range(a, b) => format!("{a}-{b}"),
            })
            .collect();
        items.join(", ")
    }
}

/// Collapses ascending block numbers into single blocks and `[first,last]` runs.
#[must_use]
pub fn collapse_errors(errors: &[u32]) -> Vec<PageErrorRange> {
    let mut out = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for &block in errors {
        run = match run {
            Some((first, last)) if last.checked_add(1) == Some(block) => Some((first, block)),
            Some((first, last)) => {
                out.push(range_of(first, last));
                Some((block, block))
            }
            None => Some((block, block)),
        };
    }
    if let Some((first, last)) = run {
        out.push(range_of(first, last));
    }
    out
}

fn range_of(first: u32, last: u32) -> PageErrorRange {
    if first == last {
        PageErrorRange::Single(first)
    } else {
        PageErrorRange::Range(first, last)
    }
}

/// Streaming page checksum check of one relation segment file.
pub struct PageChecksumValidator {
    block_base: u64,
    lsn_limit: Option<u64>,
    page_index: u32,
    pending: Vec<u8>,
    errors: Vec<u32>,
    recheck: Option<RecheckFn>,
}

impl std::fmt::Debug for PageChecksumValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageChecksumValidator")
            .field("block_base", &self.block_base)
            .field("lsn_limit", &self.lsn_limit)
            .field("page_index", &self.page_index)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl PageChecksumValidator {
    /// A validator for segment file number `segment_no` (`0` for `16384`, `2` for `16384.2`),
    /// skipping pages whose LSN is at or after `start_lsn_limit` when given.
    #[must_use]
    pub fn new(segment_no: u32, start_lsn_limit: Option<u64>) -> PageChecksumValidator {
        PageChecksumValidator {
            block_base: u64::from(segment_no) * u64::from(SEGMENT_PAGES),
            lsn_limit: start_lsn_limit,
            page_index: 0,
            pending: Vec::with_capacity(PAGE_SIZE),
            errors: Vec::new(),
            recheck: None,
        }
    }

    /// Installs a hook that re-reads a failed page (see [`RecheckFn`]).
    #[must_use]
    pub fn with_recheck(mut self, recheck: RecheckFn) -> PageChecksumValidator {
        self.recheck = Some(recheck);
        self
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut data: &[u8]) {
        if !self.pending.is_empty() {
            let take = (PAGE_SIZE - self.pending.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.pending.extend_from_slice(head);
            data = rest;
            if self.pending.len() < PAGE_SIZE {
                return;
            }
            let page = std::mem::take(&mut self.pending);
            if let Ok(page) = <&[u8; PAGE_SIZE]>::try_from(page.as_slice()) {
                self.check_page(page);
            }
            self.pending = page;
            self.pending.clear();
        }
        let mut chunks = data.chunks_exact(PAGE_SIZE);
        for chunk in &mut chunks {
            if let Ok(page) = <&[u8; PAGE_SIZE]>::try_from(chunk) {
                self.check_page(page);
            }
        }
        self.pending.extend_from_slice(chunks.remainder());
    }

    /// Finishes the file and returns what was found.
    #[must_use]
    pub fn result(mut self) -> PageChecksumResult {
        let mut align = true;
        let mut valid = true;
        if !self.pending.is_empty() {
            align = false;
            if self.pending.len() >= PARTIAL_PAGE_MIN {
                let block = self.block_no();
                self.errors.push(block);
            } else {
                valid = false;
            }
        }
        if !self.errors.is_empty() {
            valid = false;
        }
        PageChecksumResult {
            valid,
            align,
            errors: self.errors,
        }
    }

    fn block_no(&self) -> u32 {
        u32::try_from(self.block_base.saturating_add(u64::from(self.page_index)))
            .unwrap_or(u32::MAX)
    }

    fn check_page(&mut self, page: &[u8; PAGE_SIZE]) {
        let block = self.block_no();
        let index = self.page_index;
        self.page_index = self.page_index.saturating_add(1);

        if page.iter().all(|&b| b == 0) {
            return;
        }
        if let (Some(limit), Some(lsn)) = (self.lsn_limit, page_lsn(page))
            && lsn >= limit
        {
            return;
        }
        let header_ok = u16_at(page, PD_UPPER).is_some_and(|upper| upper != 0);
        if header_ok && stored_checksum(page) == Some(checksum(page, block)) {
            return;
        }
        if let Some(recheck) = self.recheck.as_mut()
            && recheck(index, page)
        {
            return;
        }
        self.errors.push(block);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A non-empty page with a valid checksum for `blkno`.
    fn page(blkno: u32, fill: u8) -> [u8; PAGE_SIZE] {
        let mut p = [fill; PAGE_SIZE];
        p[0..8].fill(0); // pd_lsn 0/0
        p[12..14].copy_from_slice(&24u16.to_le_bytes());
        p[14..16].copy_from_slice(&8000u16.to_le_bytes());
        p[16..18].copy_from_slice(&8192u16.to_le_bytes());
        let c = checksum(&p, blkno);
        p[8..10].copy_from_slice(&c.to_le_bytes());
        p
    }

    fn run(data: &[u8], chunk: usize, segment_no: u32, limit: Option<u64>) -> PageChecksumResult {
        let mut v = PageChecksumValidator::new(segment_no, limit);
        for c in data.chunks(chunk.max(1)) {
            v.update(c);
        }
        v.result()
    }

    #[test]
    fn checksum_ignores_stored_value_and_never_zero() {
        let p = page(5, 0x5A);
        let mut q = p;
        q[8] ^= 0xFF;
        assert_eq!(checksum(&p, 5), checksum(&q, 5));
        assert_ne!(checksum(&p, 5), checksum(&p, 6));
        assert_ne!(checksum(&[0u8; PAGE_SIZE], 0), 0);
    }

    #[test]
    fn flags_bad_pages_with_absolute_block_numbers() {
        let mut file = Vec::new();
        for i in 0..8u32 {
            let mut p = page(SEGMENT_PAGES + i, i as u8 + 1);
            if [2, 3, 6].contains(&i) {
                p[100] ^= 1;
            }
            file.extend_from_slice(&p);
        }
        let result = run(&file, 8192, 1, None);
        let b = SEGMENT_PAGES;
        assert_eq!(result.errors, [b + 2, b + 3, b + 6]);
        assert!(!result.valid);
        assert!(result.align);
        // the same pages read as segment 0 are all wrong
        assert_eq!(run(&file, 8192, 0, None).errors.len(), 8);
    }

    #[test]
    fn chunk_size_independence() {
        let mut file = Vec::new();
        for i in 0..6u32 {
            let mut p = page(i, 0x11 * i as u8);
            if i == 4 {
                p[9000 % PAGE_SIZE] ^= 0x80;
            }
            file.extend_from_slice(&p);
        }
        file.extend_from_slice(&[0u8; PAGE_SIZE]);
        let expected = run(&file, file.len(), 0, None);
        assert_eq!(expected.errors, [4]);
        for chunk in [1, 7, 511, 4096, 8191, 8193, 65536] {
            assert_eq!(run(&file, chunk, 0, None), expected, "chunk {chunk}");
        }
    }

    #[test]
    fn new_pages_lsn_limit_and_damaged_headers() {
        let mut file = vec![0u8; PAGE_SIZE]; // new page: skipped
        let mut torn = page(1, 3);
        torn[0..4].copy_from_slice(&1u32.to_le_bytes()); // pd_lsn 1/0
        torn[4..8].copy_from_slice(&0x10u32.to_le_bytes());
        torn[200] ^= 1;
        file.extend_from_slice(&torn);
        let mut zero_upper = [0u8; PAGE_SIZE];
        zero_upper[300] = 1;
        file.extend_from_slice(&zero_upper);
        let without_limit = run(&file, 4096, 0, None);
        assert_eq!(without_limit.errors, [1, 2]);
        let with_limit = run(&file, 4096, 0, Some(0x1_0000_0010));
        assert_eq!(with_limit.errors, [2]);
        let limit_above = run(&file, 4096, 0, Some(0x1_0000_0011));
        assert_eq!(limit_above.errors, [1, 2]);
    }

    #[test]
    fn recheck_hook_ignores_changed_pages() {
        let mut bad = page(0, 9);
        bad[50] ^= 1;
        let mut file = bad.to_vec();
        file.extend_from_slice(&bad);
        let mut v =
            PageChecksumValidator::new(0, None).with_recheck(Box::new(|index, _page| index == 1));
        v.update(&file);
        assert_eq!(v.result().errors, [0]);
    }

    #[test]
    fn misalignment() {
        let mut file = page(0, 1).to_vec();
        file.extend_from_slice(&[1u8; 512]);
        let r = run(&file, 1000, 0, None);
        assert_eq!(
            (r.valid, r.align, r.errors.clone()),
            (false, false, vec![1])
        );
        let mut file = page(0, 1).to_vec();
        file.extend_from_slice(&[1u8; 511]);
        let r = run(&file, 1000, 0, None);
        assert_eq!((r.valid, r.align, r.errors.len()), (false, false, 0));
        let r = run(&[], 10, 0, None);
        assert_eq!((r.valid, r.align, r.errors.len()), (true, true, 0));
    }

    #[test]
    fn collapsed_forms() {
        let r = PageChecksumResult {
            valid: false,
            align: true,
            errors: vec![2, 3, 6],
        };
        assert_eq!(r.errors_json(), "[[2,3],6]");
        assert_eq!(r.errors_text(), "2-3, 6");
        let r = PageChecksumResult {
            valid: false,
            align: true,
            errors: vec![0, 2, 3, 4, 9, u32::MAX - 1, u32::MAX],
        };
        assert_eq!(r.errors_json(), "[0,[2,4],9,[4294967294,4294967295]]");
        assert_eq!(r.errors_text(), "0, 2-4, 9, 4294967294-4294967295");
        assert!(collapse_errors(&[]).is_empty());
    }
}
