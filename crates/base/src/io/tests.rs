//! Tests of chains: observers at every position, push/pull equivalence, custom filters, specs
//! and results as data, error propagation and bounded memory.

use std::io::{BufRead, Read, Write};

use serde::{Deserialize, Serialize};

use super::*;
use crate::compress::{self, CompressType};
use crate::crypto;
use crate::{Error, ErrorKind, Result};

fn sample(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(4) {
            data.extend_from_slice(&state.to_le_bytes());
        } else {
            data.extend_from_slice(b"pgkeep!!");
        }
    }
    data.truncate(len);
    data
}

struct Keys {
    orig_size: ResultKey<u64>,
    orig_sha1: ResultKey<Sha1Digest>,
    repo_size: ResultKey<u64>,
    repo_sha1: ResultKey<Sha1Digest>,
}

/// pgBackRest's backup pipeline: sha1+size of the original → compress → encrypt → sha1+size of
/// the stored bytes.
fn backup_chain(ty: CompressType, pass: &str) -> (Chain, Keys) {
    let mut chain = Chain::new();
    let orig_sha1 = chain.sha1();
    let orig_size = chain.size();
    chain.transform(FilterSpec::compress(ty)).unwrap();
    chain
        .transform(FilterSpec::Encrypt {
            pass: pass.to_string(),
        })
        .unwrap();
    let repo_sha1 = chain.sha1();
    let repo_size = chain.size();
    (
        chain,
        Keys {
            orig_size,
            orig_sha1,
            repo_size,
            repo_sha1,
        },
    )
}

fn restore_chain(ty: CompressType, pass: &str) -> (Chain, ResultKey<Sha1Digest>) {
    let mut chain = Chain::new();
    chain
        .transform(FilterSpec::Decrypt {
            pass: pass.to_string(),
        })
        .unwrap();
    chain.transform(FilterSpec::Decompress { ty }).unwrap();
    let sha1 = chain.sha1();
    (chain, sha1)
}

#[test]
fn observers_before_and_after_compression_and_encryption() {
    for ty in [CompressType::None, CompressType::Gz, CompressType::Zst] {
        for size in [0, 3, 100_000, 3 * CHUNK_SIZE + 5] {
            let data = sample(size);
            let (chain, keys) = backup_chain(ty, "pass");
            let mut stored = Vec::new();
            let results = copy(&mut &data[..], chain, &mut stored).unwrap();
            assert_eq!(results.len(), 4);
            assert_eq!(results.get(keys.orig_size).unwrap(), size as u64);
            assert_eq!(results.get(keys.orig_sha1).unwrap(), sha1(&data));
            assert_eq!(results.get(keys.repo_size).unwrap(), stored.len() as u64);
            assert_eq!(results.get(keys.repo_sha1).unwrap(), sha1(&stored));
            assert!(crypto::is_encrypted(&stored));

            // and back, with the pull side
            let (chain, restored_sha1) = restore_chain(ty, "pass");
            let mut reader = FilterRead::new(&stored[..], chain);
            let restored = reader.read_all().unwrap();
            assert_eq!(restored, data, "{ty} {size}");
            assert_eq!(
                reader.finish().unwrap().get(restored_sha1).unwrap(),
                sha1(&data)
            );
        }
    }
}

#[test]
fn empty_gz_encrypted_file_is_48_bytes() {
    let (chain, keys) = backup_chain(CompressType::Gz, "x");
    let mut stored = Vec::new();
    let results = copy(&mut &b""[..], chain, &mut stored).unwrap();
    assert_eq!(stored.len(), 48);
    assert_eq!(results.get(keys.repo_size).unwrap(), 48);
    assert_eq!(results.get(keys.orig_size).unwrap(), 0);
    assert_eq!(
        results.get(keys.orig_sha1).unwrap().to_hex(),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
}

#[test]
fn push_and_pull_give_identical_bytes_and_results() {
    let data = sample(1_000_003);
    for ty in CompressType::ALL {
        let build = || {
            let mut chain = Chain::new();
            let a = chain.size();
            chain.transform(FilterSpec::compress(ty)).unwrap();
            let b = chain.sha1();
            let c = chain.size();
            (chain, a, b, c)
        };
        let (chain, a, b, c) = build();
        let mut pushed = Vec::new();
        let push_results = copy(&mut &data[..], chain, &mut pushed).unwrap();

        let (chain, ..) = build();
        let mut reader = FilterRead::new(&data[..], chain);
        let mut pulled = Vec::new();
        // tiny reads, then BufRead, then the rest
        let mut byte = [0u8; 1];
        for _ in 0..10 {
            if reader.read(&mut byte).unwrap() == 1 {
                pulled.push(byte[0]);
            }
        }
        let buffered = reader.fill_buf().unwrap().to_vec();
        pulled.extend_from_slice(&buffered);
        reader.consume(buffered.len());
        reader.read_to_end(&mut pulled).unwrap();
        let pull_results = reader.finish().unwrap();

        assert_eq!(pushed, pulled, "{ty}");
        assert_eq!(push_results, pull_results, "{ty}");
        assert_eq!(push_results.get(a).unwrap(), data.len() as u64);
        assert_eq!(push_results.get(b).unwrap(), sha1(&pushed));
        assert_eq!(push_results.get(c).unwrap(), pushed.len() as u64);
    }
}

#[test]
fn finish_of_a_reader_drains_what_was_not_read() {
    let data = sample(500_000);
    let mut chain = Chain::new();
    let size = chain.size();
    let digest = chain.sha1();
    let mut reader = FilterRead::new(&data[..], chain);
    let mut head = [0u8; 100];
    reader.read_exact(&mut head).unwrap();
    let results = reader.finish().unwrap();
    assert_eq!(results.get(size).unwrap(), 500_000);
    assert_eq!(results.get(digest).unwrap(), sha1(&data));
}

#[test]
fn empty_chain_passes_bytes_through() {
    let data = sample(300_000);
    let chain = Chain::new();
    assert!(chain.is_empty());
    let mut out = Vec::new();
    let results = copy(&mut &data[..], chain, &mut out).unwrap();
    assert!(results.is_empty());
    assert_eq!(out, data);
    let mut reader = FilterRead::new(&data[..], Chain::new());
    assert_eq!(reader.read_all().unwrap(), data);
}

#[test]
fn compress_none_adds_no_stage() {
    let mut chain = Chain::new();
    chain
        .transform(FilterSpec::compress(CompressType::None))
        .unwrap();
    chain
        .transform(FilterSpec::Decompress {
            ty: CompressType::None,
        })
        .unwrap();
    assert!(chain.is_empty());
    assert!(chain.specs().is_empty());
}

#[test]
fn observer_specs_are_not_transforms() {
    let err = Chain::new().transform(FilterSpec::Sha1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Assert);
    let bad_level = Chain::new()
        .transform(FilterSpec::Compress {
            ty: CompressType::Gz,
            level: 10,
        })
        .unwrap_err();
    assert_eq!(bad_level.kind(), ErrorKind::OptionInvalidValue);
}

/// A domain observer as another crate would write one: counts zero bytes.
struct ZeroCount(u64);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct ZeroReport {
    zeros: u64,
    label: String,
}

impl Observe for ZeroCount {
    type Output = ZeroReport;

    fn update(&mut self, data: &[u8]) {
        self.0 += data.iter().filter(|&&b| b == 0).count() as u64;
    }

    fn finish(&mut self) -> Result<ZeroReport> {
        Ok(ZeroReport {
            zeros: self.0,
            label: "zeros".into(),
        })
    }
}

/// A custom transform: XOR with a key byte.
struct Xor(u8);

impl Transform for Xor {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        out.extend(input.iter().map(|b| b ^ self.0));
        Ok(input.len())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<bool> {
        Ok(true)
    }
}

struct Factory;

impl FilterFactory for Factory {
    fn build(&self, name: &str, params: &serde_json::Value) -> Result<Option<CustomFilter>> {
        Ok(match name {
            "zero-count" => Some(CustomFilter::Observe(Box::new(ZeroCount(0)))),
            "xor" => {
                let key = params["key"].as_u64().unwrap_or(0) as u8;
                Some(CustomFilter::Transform(Box::new(Xor(key))))
            }
            _ => None,
        })
    }
}

#[test]
fn custom_filters_have_typed_results_and_rebuild_from_specs() {
    let mut data = sample(200_000);
    data.extend(std::iter::repeat_n(0, 777));
    let zeros_in = data.iter().filter(|&&b| b == 0).count() as u64;

    let mut chain = Chain::new();
    let zeros = chain.observe("zero-count", serde_json::Value::Null, ZeroCount(0));
    chain.transform_custom("xor", serde_json::json!({"key": 1}), Box::new(Xor(1)));
    chain
        .transform(FilterSpec::compress(CompressType::Lz4))
        .unwrap();
    let stored = chain.sha1();
    assert_eq!(zeros.index(), 0);
    assert_eq!(stored.index(), 1);

    // the specs travel as JSON (to a remote, a worker) and are rebuilt there
    let specs_json = serde_json::to_string(chain.specs()).unwrap();
    let specs: Vec<FilterSpec> = serde_json::from_str(&specs_json).unwrap();
    assert_eq!(specs, chain.specs());
    let remote = Chain::from_specs(&specs, Some(&Factory)).unwrap();

    let mut local_out = Vec::new();
    let local = copy(&mut &data[..], chain, &mut local_out).unwrap();
    let mut remote_out = Vec::new();
    let remote = copy(&mut &data[..], remote, &mut remote_out).unwrap();
    assert_eq!(local_out, remote_out);

    // results come back as JSON and answer the keys of the chain built here
    let remote: FilterResults =
        serde_json::from_str(&serde_json::to_string(&remote).unwrap()).unwrap();
    for results in [&local, &remote] {
        assert_eq!(
            results.get(zeros).unwrap(),
            ZeroReport {
                zeros: zeros_in,
                label: "zeros".into()
            }
        );
        assert_eq!(results.get(stored).unwrap(), sha1(&local_out));
    }

    // the xor really ran before compression
    let plain = compress::decompress(CompressType::Lz4, &local_out).unwrap();
    assert_eq!(plain.len(), data.len());
    assert!(plain.iter().zip(&data).all(|(a, b)| a ^ 1 == *b));

    let unknown = [FilterSpec::Custom {
        name: "nope".into(),
        params: serde_json::Value::Null,
    }];
    assert_eq!(
        Chain::from_specs(&unknown, Some(&Factory))
            .unwrap_err()
            .message(),
        "unknown filter 'nope'"
    );
    assert!(Chain::from_specs(&unknown, None).is_err());
}

#[test]
fn specs_serialize_readably_and_debug_hides_passphrases() {
    let specs = vec![
        FilterSpec::Sha1,
        FilterSpec::Size,
        FilterSpec::Compress {
            ty: CompressType::Zst,
            level: 3,
        },
        FilterSpec::Encrypt {
            pass: "secret".into(),
        },
    ];
    let json = serde_json::to_string(&specs).unwrap();
    assert_eq!(
        json,
        r#"[{"filter":"sha1"},{"filter":"size"},{"filter":"compress","ty":"zst","level":3},{"filter":"encrypt","pass":"secret"}]"#
    );
    let chain = Chain::from_specs(&specs, None).unwrap();
    let debug = format!("{chain:?}");
    assert!(!debug.contains("secret"), "{debug}");
    assert!(debug.contains("compress-zst:3"), "{debug}");
}

#[test]
fn wrong_keys_are_errors_not_panics() {
    let mut chain = Chain::new();
    let size = chain.size();
    let results = copy(&mut &b"abc"[..], chain, &mut Vec::new()).unwrap();
    assert_eq!(results.get(size).unwrap(), 3);

    let mut other = Chain::new();
    other.size();
    let digest = other.sha1();
    let err = results.get(digest).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Assert);
    assert!(err.message().contains("no filter result 1"), "{err}");

    let mut other = Chain::new();
    let as_sha1 = other.sha1();
    let err = results.get(as_sha1).unwrap_err();
    assert!(err.message().contains("unexpected type"), "{err}");
}

struct FailingReader;

impl Read for FailingReader {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::from_raw_os_error(5))
    }
}

struct FailingWriter;

impl Write for FailingWriter {
    fn write(&mut self, _buf: &[u8]) -> std::io::Result<usize> {
        Err(Error::new(
            ErrorKind::FileWrite,
            "unable to write file '/repo/x': [28] No space left on device",
        )
        .into())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn io_errors_keep_their_meaning() {
    let err = copy(&mut FailingReader, Chain::new(), &mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::FileRead);
    assert_eq!(err.message(), "unable to read: [5] Input/output error");

    // a pgkeep error raised inside a writer comes back unchanged
    let err = copy(&mut &b"abc"[..], Chain::new(), &mut FailingWriter).unwrap_err();
    assert_eq!(
        err.message(),
        "unable to write file '/repo/x': [28] No space left on device"
    );

    // a filter error surfaces through Read as an io::Error carrying the pgkeep error
    let mut chain = Chain::new();
    chain
        .transform(FilterSpec::Decrypt { pass: "p".into() })
        .unwrap();
    let mut reader = FilterRead::new(&b"not encrypted at all"[..], chain);
    let io_err = reader.read_to_end(&mut Vec::new()).unwrap_err();
    let err = Error::from_io_error(&io_err, ErrorKind::FileRead, "unable to read");
    assert_eq!(err.kind(), ErrorKind::Crypto);
    assert_eq!(err.message(), "cipher header invalid");

    // nested: a FilterRead as the source of copy
    let mut chain = Chain::new();
    chain
        .transform(FilterSpec::Decompress {
            ty: CompressType::Gz,
        })
        .unwrap();
    let mut inner = FilterRead::new(&b"\x1f\x8b"[..], chain);
    let err = copy(&mut inner, Chain::new(), &mut Vec::new()).unwrap_err();
    assert_eq!(err.message(), "unexpected eof in compressed data");
}

/// Records the largest slice it is shown.
struct MaxPiece(usize);

impl Observe for MaxPiece {
    type Output = u64;

    fn update(&mut self, data: &[u8]) {
        self.0 = self.0.max(data.len());
    }

    fn finish(&mut self) -> Result<u64> {
        Ok(self.0 as u64)
    }
}

#[test]
fn highly_compressed_streams_flow_in_bounded_pieces() {
    let zeros = vec![0u8; 48 << 20];
    for ty in [
        CompressType::Gz,
        CompressType::Zst,
        CompressType::Lz4,
        CompressType::Bz2,
    ] {
        let packed = compress::compress(ty, ty.default_level(), &zeros).unwrap();
        let build = || {
            let mut chain = Chain::new();
            chain.transform(FilterSpec::Decompress { ty }).unwrap();
            let piece = chain.observe("max-piece", serde_json::Value::Null, MaxPiece(0));
            let size = chain.size();
            (chain, piece, size)
        };
        let (chain, piece, size) = build();
        let mut reader = FilterRead::new(&packed[..], chain);
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            let read = reader.read(&mut buf).unwrap();
            if read == 0 {
                break;
            }
            total += read;
        }
        assert_eq!(total, zeros.len());
        let results = reader.finish().unwrap();
        assert_eq!(results.get(size).unwrap(), zeros.len() as u64);
        assert!(
            results.get(piece).unwrap() <= 2 * CHUNK_SIZE as u64,
            "{ty} pull"
        );

        let (chain, piece, _) = build();
        let results = copy(&mut &packed[..], chain, &mut std::io::sink()).unwrap();
        assert!(
            results.get(piece).unwrap() <= 2 * CHUNK_SIZE as u64,
            "{ty} push"
        );
    }
}

#[test]
fn transforms_that_stall_are_reported() {
    struct Stuck;
    impl Transform for Stuck {
        fn process(&mut self, _input: &[u8], _out: &mut Vec<u8>) -> Result<usize> {
            Ok(0)
        }
        fn finish(&mut self, _out: &mut Vec<u8>) -> Result<bool> {
            Ok(false)
        }
    }
    let mut chain = Chain::new();
    chain.transform_custom("stuck", serde_json::Value::Null, Box::new(Stuck));
    let err = copy(&mut &b"x"[..], chain, &mut Vec::new()).unwrap_err();
    assert_eq!(err.message(), "filter made no progress");
    let mut chain = Chain::new();
    chain.transform_custom("stuck", serde_json::Value::Null, Box::new(Stuck));
    let err = FilterRead::new(&b""[..], chain).read_all().unwrap_err();
    assert_eq!(err.message(), "filter made no progress");
    assert!(transform_all(&mut Stuck, b"x").is_err());
}

#[test]
fn write_adapter_and_finish_return_the_writer() {
    let mut chain = Chain::new();
    chain
        .transform(FilterSpec::compress(CompressType::Gz))
        .unwrap();
    let size = chain.size();
    let mut writer = FilterWrite::new(Vec::new(), chain);
    let who = "world";
    write!(writer, "hello {who}").unwrap();
    writer.flush().unwrap();
    let (packed, results) = writer.finish().unwrap();
    assert_eq!(results.get(size).unwrap(), packed.len() as u64);
    assert_eq!(
        compress::decompress(CompressType::Gz, &packed).unwrap(),
        b"hello world"
    );
}

#[test]
fn hex_helper() {
    assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
}
