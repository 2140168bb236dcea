//! Real files from every major (10 to 18, plus two 64 MiB-segment clusters) must decode to the
//! values recorded beside them in `facts.txt` (taken from pg_controldata / the server itself).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use pgkeep_pg::control::{self, ControlInfo};
use pgkeep_pg::page::{self, PAGE_SIZE, PageChecksumValidator};
use pgkeep_pg::version::PgVersion;
use pgkeep_pg::wal::{self, Lsn, WalSegSize};

const FOLDERS: &[&str] = &[
    "10",
    "11",
    "11-walseg64",
    "12",
    "13",
    "14",
    "15",
    "16",
    "17",
    "17-walseg64",
    "18",
];

fn dir(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(folder)
}

/// `section.key -> value` from facts.txt, comments stripped.
fn facts(folder: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(dir(folder).join("facts.txt")).unwrap();
    let mut section = String::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            section = name.trim_end_matches(']').to_string();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap();
        let key = if section.is_empty() {
            key.trim().to_string()
        } else {
            format!("{section}.{}", key.trim())
        };
        out.insert(key, value.trim().to_string());
    }
    out
}

fn num<T: std::str::FromStr>(f: &HashMap<String, String>, key: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let v = f.get(key).unwrap_or_else(|| panic!("missing {key}"));
    match v.strip_prefix("0x") {
        Some(hex) => {
            let n = u64::from_str_radix(hex, 16).unwrap();
            n.to_string().parse().unwrap()
        }
        None => v.parse().unwrap(),
    }
}

fn read(folder: &str, file: &str) -> Vec<u8> {
    std::fs::read(dir(folder).join(file)).unwrap()
}

#[test]
fn pg_control_matches_facts() {
    for folder in FOLDERS {
        let f = facts(folder);
        let bytes = read(folder, "pg_control");
        assert_eq!(bytes.len(), num::<usize>(&f, "pg_control.file_size"));
        let info = control::parse(&bytes).unwrap_or_else(|e| panic!("{folder}: {e}"));
        let version: PgVersion = f["pg_version_file"].parse().unwrap();
        assert_eq!(info.version, version, "{folder}");
        assert_eq!(
            PgVersion::from_server_version_num(num(&f, "server_version_num")).unwrap(),
            version
        );
        let expected = ControlInfo {
            version,
            system_id: num(&f, "pg_control.system_identifier"),
            control_version: num(&f, "pg_control.pg_control_version"),
            catalog_version: num(&f, "pg_control.catalog_version_no"),
            state: num(&f, "pg_control.state"),
            time: num(&f, "pg_control.time"),
            checkpoint: f["pg_control.checkpoint_lsn"].parse::<Lsn>().unwrap().0,
            redo: f["pg_control.checkpoint_redo_lsn"]
                .parse::<Lsn>()
                .unwrap()
                .0,
            timeline: num(&f, "pg_control.checkpoint_timeline"),
            page_size: num(&f, "pg_control.block_size"),
            relseg_size: num(&f, "pg_control.relseg_size"),
            wal_segment_size: num(&f, "pg_control.wal_segment_size"),
            wal_page_size: num(&f, "pg_control.wal_block_size"),
            data_checksum_version: num(&f, "pg_control.data_checksum_version"),
            crc_ok: true,
        };
        assert_eq!(info, expected, "{folder}");

        // the layout table agrees with the offsets recorded for this file
        let layout = version.info().unwrap().control;
        assert_eq!(layout.crc, num::<usize>(&f, "pg_control.offset.crc"));
        assert_eq!(layout.blcksz, num::<usize>(&f, "pg_control.offset.blcksz"));
        assert_eq!(
            layout.xlog_seg_size,
            num::<usize>(&f, "pg_control.offset.xlog_seg_size")
        );
        assert_eq!(
            layout.data_checksum_version,
            num::<usize>(&f, "pg_control.offset.data_checksum_version")
        );
        assert_eq!(
            layout.checkpoint_copy,
            num::<usize>(&f, "pg_control.offset.checkPointCopy")
        );
        let crc: u32 = num(&f, "pg_control.crc32c");
        assert_eq!(
            u32::from_le_bytes(bytes[layout.crc..layout.crc + 4].try_into().unwrap()),
            crc
        );

        // the redo segment name is the one the server reported
        let size = WalSegSize::new(info.wal_segment_size).unwrap();
        assert_eq!(
            wal::segment_name(info.timeline, Lsn(info.redo), size),
            f["pg_control.checkpoint_redo_wal_file"],
            "{folder}"
        );
    }
}

#[test]
fn build_reproduces_the_fixed_part_of_real_files() {
    for folder in FOLDERS {
        let bytes = read(folder, "pg_control");
        let info = control::parse(&bytes).unwrap();
        let built = control::build(&info).unwrap();
        let layout = info.version.info().unwrap().control;
        // maxAlign through data_checksum_version (and char signedness on 18) are build facts
        // plus the fields we model: they must match the real file byte for byte
        let end = layout
            .char_signedness
            .unwrap_or(layout.data_checksum_version + 3)
            + 1;
        assert_eq!(
            built[layout.max_align..end],
            bytes[layout.max_align..end],
            "{folder}"
        );
        assert_eq!(built[..32], bytes[..32], "{folder}");
        // checkpoint copy: redo, timelines, full_page_writes (and wal_level from 17 on)
        let cc = layout.checkpoint_copy;
        assert_eq!(built[cc..cc + 17], bytes[cc..cc + 17], "{folder}");
        if let Some(off) = layout.checkpoint_wal_level {
            assert_eq!(built[off..off + 4], bytes[off..off + 4], "{folder}");
        }
        assert_eq!(control::parse(&built).unwrap(), info);
    }
}

#[test]
fn damaged_real_control_files_are_refused() {
    let bytes = read("15", "pg_control");
    let mut bad = bytes.clone();
    bad[100] ^= 0x01;
    assert_eq!(
        control::parse(&bad).unwrap_err().kind(),
        pgkeep_base::ErrorKind::Checksum
    );
    assert!(!control::parse_lenient(&bad).unwrap().crc_ok);
    assert_eq!(
        control::parse(&bytes[..200]).unwrap_err().kind(),
        pgkeep_base::ErrorKind::FileInvalid
    );
}

#[test]
fn wal_first_page_matches_facts() {
    for folder in FOLDERS {
        let f = facts(folder);
        let bytes = read(folder, "wal-first-page.bin");
        let header = wal::header_parse(&bytes).unwrap();
        let version: PgVersion = f["pg_version_file"].parse().unwrap();
        assert_eq!(header.version, Some(version), "{folder}");
        assert_eq!(header.magic, num::<u16>(&f, "wal-first-page.bin.xlp_magic"));
        assert_eq!(header.info, num::<u16>(&f, "wal-first-page.bin.xlp_info"));
        assert_eq!(
            header.timeline,
            num::<u32>(&f, "wal-first-page.bin.xlp_tli")
        );
        assert_eq!(
            Lsn(header.page_addr),
            f["wal-first-page.bin.xlp_pageaddr"].parse().unwrap()
        );
        assert_eq!(
            header.rem_len,
            num::<u32>(&f, "wal-first-page.bin.xlp_rem_len")
        );
        assert_eq!(
            header.system_id,
            num::<u64>(&f, "wal-first-page.bin.xlp_sysid")
        );
        assert_eq!(
            header.seg_size,
            num::<u32>(&f, "wal-first-page.bin.xlp_seg_size")
        );
        assert_eq!(
            header.page_size,
            num::<u32>(&f, "wal-first-page.bin.xlp_xlog_blcksz")
        );
        // the page is the first of segment 1, and the header system id is the cluster's
        let size = WalSegSize::new(header.seg_size).unwrap();
        assert_eq!(
            wal::segment_name(header.timeline, Lsn(header.page_addr), size),
            "000000010000000000000001"
        );
        let control = control::parse(&read(folder, "pg_control")).unwrap();
        assert_eq!(header.system_id, control.system_id);
        // the builder writes the same 40 bytes (padding included)
        assert_eq!(
            wal::header_build(&header)[..],
            bytes[..wal::LONG_HEADER_SIZE]
        );
    }
}

#[test]
fn relation_pages_verify() {
    for folder in FOLDERS {
        let f = facts(folder);
        let bytes = read(folder, "relation-page.bin");
        let page: &[u8; PAGE_SIZE] = bytes.as_slice().try_into().unwrap();
        let block: u32 = num(&f, "relation-page.bin.block_number");
        let expected: u16 = num(&f, "relation-page.bin.pd_checksum");
        assert_eq!(page::checksum(page, block), expected, "{folder}");
        assert_eq!(page::stored_checksum(page), Some(expected));
        assert_ne!(page::checksum(page, block + 1), expected);
        assert_eq!(
            Lsn(page::page_lsn(page).unwrap()),
            f["relation-page.bin.pd_lsn"].parse().unwrap()
        );

        // as a file: the real page then a new (all-zero) page verify in any chunking
        let mut file = bytes.clone();
        file.extend_from_slice(&[0u8; PAGE_SIZE]);
        let mut corrupt = bytes.clone();
        corrupt[4000] ^= 0x10;
        for chunk in [1usize, 100, 8192, 65536] {
            let mut v = PageChecksumValidator::new(0, None);
            for c in file.chunks(chunk) {
                v.update(c);
            }
            let r = v.result();
            assert!(r.valid && r.align && r.errors.is_empty(), "{folder}");
            // one flipped bit in the real page is caught
            let mut v = PageChecksumValidator::new(0, None);
            for c in corrupt.chunks(chunk) {
                v.update(c);
            }
            let r = v.result();
            assert_eq!((r.valid, r.align, r.errors.clone()), (false, true, vec![0]));
            assert_eq!(r.errors_json(), "[0]");
        }
        // with a start LSN at or below the page LSN the page is skipped even when corrupt
        let lsn = page::page_lsn(&corrupt).unwrap();
        let mut v = PageChecksumValidator::new(0, Some(lsn));
        v.update(&corrupt);
        assert!(v.result().valid);
    }
}
