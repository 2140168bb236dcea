//! Tests of the codecs: round trips, pgBackRest's exact bytes, other producers' streams,
//! concatenation, corrupt input and bounded output.

use std::io::{Read, Write};

use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};

use super::*;
use crate::ErrorKind;
use crate::io::{CHUNK_SIZE, Chain, FilterRead, FilterSpec, FilterWrite};

const SIZES: &[usize] = &[0, 1, 3, 65535, 65536, 65537, (1 << 20) + 17];
const TYPES: [CompressType; 4] = [
    CompressType::Gz,
    CompressType::Bz2,
    CompressType::Lz4,
    CompressType::Zst,
];

/// Deterministic data that compresses somewhat: text-like runs mixed with noise.
pub(crate) fn sample(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state.is_multiple_of(3) {
            data.extend_from_slice(b"relation page tuple header 8192 ");
        } else {
            data.extend_from_slice(&state.to_le_bytes());
        }
    }
    data.truncate(len);
    data
}

/// The bytes of an `xxd` dump section of a fixture file, starting after the line `marker`.
pub(crate) fn xxd_section(fixture: &str, marker: &str) -> Vec<u8> {
    let mut lines = fixture.lines().skip_while(|line| !line.starts_with(marker));
    lines.next().expect("marker");
    let mut bytes = Vec::new();
    for line in lines {
        let Some((offset, rest)) = line.split_once(": ") else {
            break;
        };
        if offset.len() != 8 || !offset.chars().all(|c| c.is_ascii_hexdigit()) {
            break;
        }
        let hex: String = rest
            .chars()
            .take(39)
            .filter(|c| !c.is_whitespace())
            .collect();
        for pair in hex.as_bytes().chunks(2) {
            bytes.push(u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap());
        }
    }
    bytes
}

const HEADS: &str = include_str!("../../tests/fixtures/compressed-file-heads.txt");

fn compress_write(ty: CompressType, level: i32, data: &[u8], piece: usize) -> Vec<u8> {
    let mut chain = Chain::new();
    chain.transform(FilterSpec::Compress { ty, level }).unwrap();
    let mut writer = FilterWrite::new(Vec::new(), chain);
    for part in data.chunks(piece.max(1)) {
        writer.write_all(part).unwrap();
    }
    writer.finish().unwrap().0
}

fn decompress_read(ty: CompressType, data: &[u8]) -> crate::Result<Vec<u8>> {
    let mut chain = Chain::new();
    chain.transform(FilterSpec::Decompress { ty })?;
    FilterRead::new(data, chain).read_all()
}

#[test]
fn names_extensions_and_levels() {
    for ty in CompressType::ALL {
        assert_eq!(CompressType::from_name(ty.name()).unwrap(), ty);
        assert_eq!(ty.name().parse::<CompressType>().unwrap(), ty);
        assert_eq!(CompressType::from_ext(ty.ext()).unwrap(), ty);
        assert_eq!(
            CompressType::from_file_name(&format!("000000010000000000000001{}", ty.ext())).unwrap(),
            ty
        );
        assert!(ty.level_range().contains(&ty.default_level()));
        let json = serde_json::to_string(&ty).unwrap();
        assert_eq!(json, format!("\"{}\"", ty.name()));
        assert_eq!(serde_json::from_str::<CompressType>(&json).unwrap(), ty);
    }
    assert_eq!(CompressType::from_ext("gz").unwrap(), CompressType::Gz);
    assert_eq!(CompressType::Zst.ext(), ".zst");
    assert_eq!(CompressType::Gz.default_level(), 6);
    assert_eq!(CompressType::Lz4.default_level(), 1);
    assert_eq!(CompressType::Zst.default_level(), 3);
    assert_eq!(CompressType::Bz2.default_level(), 9);
    assert_eq!(CompressType::Gz.level_range(), -1..=9);
    assert_eq!(CompressType::Zst.level_range(), -7..=22);
    assert_eq!(
        CompressType::from_file_name("PG_VERSION").unwrap(),
        CompressType::None
    );

    let xz = CompressType::from_name("xz").unwrap_err();
    assert_eq!(xz.kind(), ErrorKind::OptionInvalidValue);
    assert!(xz.message().contains("'xz' is not supported"), "{xz}");
    let xz = CompressType::from_ext(".xz").unwrap_err();
    assert!(xz.message().contains("not supported"), "{xz}");
    let xz = CompressType::from_file_name("x/000000010000000000000001.xz").unwrap_err();
    assert_eq!(
        xz.message(),
        "file 'x/000000010000000000000001.xz' is compressed with xz, which is not supported"
    );
    assert_eq!(
        CompressType::from_name("zip").unwrap_err().message(),
        "invalid compress type 'zip'"
    );
    assert!(CompressType::from_ext(".zip").is_err());
}

#[test]
fn levels_outside_the_range_are_refused_and_every_level_inside_works() {
    for ty in TYPES {
        let range = ty.level_range();
        let low = ty.compressor(range.start() - 1).err().unwrap();
        assert_eq!(low.kind(), ErrorKind::OptionInvalidValue);
        assert!(ty.compressor(range.end() + 1).is_err());
        let data = sample(5000, 7);
        for level in range {
            let packed = compress(ty, level, &data).unwrap();
            assert_eq!(decompress(ty, &packed).unwrap(), data, "{ty} level {level}");
        }
    }
    assert!(CompressType::None.compressor(0).unwrap().is_none());
    assert!(CompressType::None.decompressor().unwrap().is_none());
    assert_eq!(compress(CompressType::None, 0, b"abc").unwrap(), b"abc");
}

#[test]
fn round_trip_every_type_and_size_push_then_pull() {
    for ty in TYPES {
        for &size in SIZES {
            let data = sample(size, size as u64 + 1);
            let packed = compress_write(ty, ty.default_level(), &data, 100_000);
            assert_eq!(
                decompress_read(ty, &packed).unwrap(),
                data,
                "{ty} size {size}"
            );
        }
    }
}

#[test]
fn round_trip_every_type_and_size_pull_then_push() {
    for ty in TYPES {
        for &size in SIZES {
            let data = sample(size, size as u64 + 99);
            let mut chain = Chain::new();
            chain.transform(FilterSpec::compress(ty)).unwrap();
            let mut reader = FilterRead::new(&data[..], chain);
            // odd read sizes exercise partial consumption of the pulled output
            let mut packed = Vec::new();
            let mut buf = [0u8; 7777];
            loop {
                let read = reader.read(&mut buf).unwrap();
                if read == 0 {
                    break;
                }
                packed.extend_from_slice(&buf[..read]);
            }
            let mut chain = Chain::new();
            chain.transform(FilterSpec::Decompress { ty }).unwrap();
            let mut writer = FilterWrite::new(Vec::new(), chain);
            for part in packed.chunks(1009) {
                writer.write_data(part).unwrap();
            }
            assert_eq!(writer.finish().unwrap().0, data, "{ty} size {size}");
        }
    }
}

#[test]
fn pgbackrest_heads_for_a_three_byte_file() {
    let cases = [
        (
            CompressType::Gz,
            "== compress-type=gz file=PG_VERSION.gz size=23",
        ),
        (
            CompressType::Lz4,
            "== compress-type=lz4 file=PG_VERSION.lz4 size=22",
        ),
        (
            CompressType::Zst,
            "== compress-type=zst file=PG_VERSION.zst size=12",
        ),
        (
            CompressType::Bz2,
            "== compress-type=bz2 file=PG_VERSION.bz2 size=40",
        ),
    ];
    for (ty, marker) in cases {
        let theirs = xxd_section(HEADS, marker);
        let size: usize = marker.rsplit('=').next().unwrap().parse().unwrap();
        assert_eq!(theirs.len(), size, "{marker}");
        // we read what pgBackRest wrote
        assert_eq!(decompress(ty, &theirs).unwrap(), b"15\n", "{ty}");
        // and write the same bytes
        let ours = compress(ty, ty.default_level(), b"15\n").unwrap();
        assert_eq!(ours, theirs, "{ty}");
    }
}

#[test]
fn empty_gz_is_pgbackrests_20_bytes() {
    let theirs = xxd_section(HEADS, "== zero-length file, gz, non-bundled");
    assert_eq!(theirs.len(), 20);
    assert_eq!(compress(CompressType::Gz, 6, b"").unwrap(), theirs);
    assert!(decompress(CompressType::Gz, &theirs).unwrap().is_empty());
    for ty in TYPES {
        let packed = compress(ty, ty.default_level(), b"").unwrap();
        assert!(!packed.is_empty(), "{ty}");
        assert!(decompress(ty, &packed).unwrap().is_empty(), "{ty}");
    }
}

#[test]
fn gz_level_9_sets_xfl_2_like_history_manifests() {
    let theirs = xxd_section(HEADS, "== backup.history manifest gz header");
    let ours = compress(CompressType::Gz, 9, b"[backrest]\n").unwrap();
    assert_eq!(ours[..10], theirs[..10]);
}

#[test]
fn magic_numbers() {
    let data = sample(1000, 3);
    let magic = |ty: CompressType| compress(ty, ty.default_level(), &data).unwrap()[..4].to_vec();
    assert_eq!(magic(CompressType::Gz)[..3], [0x1f, 0x8b, 0x08]);
    assert_eq!(magic(CompressType::Lz4), [0x04, 0x22, 0x4d, 0x18]);
    assert_eq!(magic(CompressType::Zst), [0x28, 0xb5, 0x2f, 0xfd]);
    assert_eq!(magic(CompressType::Bz2), *b"BZh9");
    assert_eq!(
        compress(CompressType::Bz2, 1, &data).unwrap()[..4],
        *b"BZh1"
    );
}

#[test]
fn concatenated_members_and_frames_decode_whole() {
    let first = sample(70_000, 11);
    let second = sample(1234, 12);
    for ty in TYPES {
        let mut joined = compress(ty, ty.default_level(), &first).unwrap();
        joined.extend(compress(ty, ty.default_level(), b"").unwrap());
        joined.extend(compress(ty, ty.default_level(), &second).unwrap());
        let mut expected = first.clone();
        expected.extend_from_slice(&second);
        assert_eq!(decompress(ty, &joined).unwrap(), expected, "{ty}");
        // byte by byte through a push chain too
        let mut chain = Chain::new();
        chain.transform(FilterSpec::Decompress { ty }).unwrap();
        let mut writer = FilterWrite::new(Vec::new(), chain);
        for byte in &joined {
            writer.write_data(std::slice::from_ref(byte)).unwrap();
        }
        assert_eq!(writer.finish().unwrap().0, expected, "{ty} bytewise");
    }
}

#[test]
fn skippable_frames_are_skipped() {
    let skippable = |magic: u32, len: u32| {
        let mut frame = magic.to_le_bytes().to_vec();
        frame.extend(len.to_le_bytes());
        frame.extend(std::iter::repeat_n(0xAB, len as usize));
        frame
    };
    for (ty, magic) in [
        (CompressType::Lz4, 0x184D_2A5Fu32),
        (CompressType::Zst, 0x184D_2A50u32),
    ] {
        let mut stream = skippable(magic, 10);
        stream.extend(compress(ty, ty.default_level(), b"after").unwrap());
        stream.extend(skippable(magic, 0));
        assert_eq!(decompress(ty, &stream).unwrap(), b"after", "{ty}");
    }
}

#[test]
fn lz4_reads_other_frame_layouts() {
    let data = sample(5 << 20, 5);
    let layouts = [
        FrameInfo::new(),
        FrameInfo::new()
            .block_size(BlockSize::Max4MB)
            .block_checksums(true)
            .content_size(Some(data.len() as u64)),
        FrameInfo::new()
            .block_size(BlockSize::Max256KB)
            .block_mode(BlockMode::Linked)
            .content_checksum(true)
            .block_checksums(true),
        FrameInfo::new()
            .block_size(BlockSize::Max1MB)
            .block_mode(BlockMode::Independent),
    ];
    for info in layouts {
        let mut encoder = FrameEncoder::with_frame_info(info.clone(), Vec::new());
        encoder.write_all(&data).unwrap();
        let frame = encoder.finish().unwrap();
        assert_eq!(
            decompress(CompressType::Lz4, &frame).unwrap(),
            data,
            "{info:?}"
        );
    }
    // our frames decode with lz4_flex's own decoder as well
    let ours = compress(CompressType::Lz4, 1, &data).unwrap();
    let mut decoded = Vec::new();
    lz4_flex::frame::FrameDecoder::new(&ours[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, data);
}

#[test]
fn empty_truncated_and_corrupt_input_errors_without_panic() {
    let data = sample(200_000, 21);
    for ty in TYPES {
        let eof = decompress(ty, b"").unwrap_err();
        assert_eq!(eof.kind(), ErrorKind::Format, "{ty}");
        assert_eq!(eof.message(), "unexpected eof in compressed data", "{ty}");

        let packed = compress(ty, ty.default_level(), &data).unwrap();
        for cut in [1, 2, 5, 10, 11, 17, packed.len() / 2, packed.len() - 1] {
            let err = decompress(ty, &packed[..cut]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Format, "{ty} cut {cut}: {err}");
        }

        let garbage = decompress(ty, b"this is not compressed at all").unwrap_err();
        assert_eq!(garbage.kind(), ErrorKind::Format, "{ty}: {garbage}");

        // flipped bytes: checksummed formats must notice; none may panic
        for at in [packed.len() / 3, packed.len() / 2, packed.len() - 3] {
            let mut bad = packed.clone();
            bad[at] ^= 0x55;
            let result = decompress(ty, &bad);
            if ty != CompressType::Zst {
                assert!(result.is_err(), "{ty} flip at {at}");
            }
        }

        // trailing garbage after a valid stream
        let mut trailing = packed.clone();
        trailing.extend_from_slice(b"junk!");
        assert!(decompress(ty, &trailing).is_err(), "{ty} trailing");
    }
    assert_eq!(
        decompress(
            CompressType::Lz4,
            &[0x04, 0x22, 0x4d, 0x18, 0x44, 0x40, 0x00]
        )
        .unwrap_err()
        .message(),
        "lz4 error: ERROR_headerChecksum_invalid"
    );
    assert!(
        decompress(CompressType::Gz, b"\x1f\x8b\x08\0\0\0\0\0\0\x03garbage")
            .unwrap_err()
            .message()
            .starts_with("zlib threw error: ")
    );
    assert!(
        decompress(CompressType::Bz2, b"BZh9garbagegarbage")
            .unwrap_err()
            .message()
            .starts_with("bz2 error: [-4]")
    );
}

#[test]
fn decompressors_emit_bounded_pieces() {
    // 64 MiB of zeros packs into a few KiB to a few hundred KiB; every decompressor must hand it
    // out piece by piece instead of inflating it in one call
    let zeros = vec![0u8; 64 << 20];
    for ty in TYPES {
        let packed = compress(ty, ty.default_level(), &zeros).unwrap();
        assert!(packed.len() < zeros.len() / 100, "{ty} {}", packed.len());
        let mut decompressor = ty.decompressor().unwrap().unwrap();
        let mut total = 0usize;
        let mut pos = 0;
        let mut out = Vec::new();
        let limit = 64 * 1024 + CHUNK_SIZE * 2;
        while pos < packed.len() {
            out.clear();
            pos += decompressor.process(&packed[pos..], &mut out).unwrap();
            assert!(
                out.len() <= limit,
                "{ty} produced {} in one call",
                out.len()
            );
            total += out.len();
        }
        loop {
            out.clear();
            let done = decompressor.finish(&mut out).unwrap();
            assert!(out.len() <= limit, "{ty} produced {} in finish", out.len());
            total += out.len();
            if done {
                break;
            }
        }
        assert_eq!(total, zeros.len(), "{ty}");
    }
}

#[test]
fn decodes_multi_frame_files_made_by_the_command_line_tools() {
    let expected: String = (1..=8000).map(|n| format!("{n}\n")).collect();
    assert_eq!(expected.len(), 38893);
    let files: [(CompressType, &[u8]); 4] = [
        (
            CompressType::Gz,
            include_bytes!("../../tests/fixtures/seq-8000.cli.gz"),
        ),
        (
            CompressType::Bz2,
            include_bytes!("../../tests/fixtures/seq-8000.cli.bz2"),
        ),
        (
            CompressType::Lz4,
            include_bytes!("../../tests/fixtures/seq-8000.cli.lz4"),
        ),
        (
            CompressType::Zst,
            include_bytes!("../../tests/fixtures/seq-8000.cli.zst"),
        ),
    ];
    for (ty, packed) in files {
        let plain = decompress_read(ty, packed).unwrap();
        assert_eq!(
            crate::io::sha1(&plain).to_hex(),
            "900b470dc8d6a3750775b8d6b14c344579dcd1aa",
            "{ty}"
        );
        assert_eq!(plain, expected.as_bytes(), "{ty}");
    }
}

#[test]
fn multi_threaded_zst_is_one_ordinary_stream() {
    for &size in SIZES.iter().chain(&[9 << 20]) {
        let data = sample(size, size as u64 + 5);
        let mut compressor = CompressType::Zst.wal_compressor(3, 2).unwrap().unwrap();
        let packed = transform_all(compressor.as_mut(), &data).unwrap();
        assert_eq!(
            decompress(CompressType::Zst, &packed).unwrap(),
            data,
            "size {size}"
        );
        // one ordinary zstd frame, whatever the size
        assert_eq!(zst_frames(&packed).len(), 1, "size {size}");
    }
    // other types and one worker: the ordinary compressors
    let mut gz = CompressType::Gz.wal_compressor(6, 4).unwrap().unwrap();
    assert_eq!(
        decompress(
            CompressType::Gz,
            &transform_all(gz.as_mut(), b"abc").unwrap()
        )
        .unwrap(),
        b"abc"
    );
    assert!(CompressType::None.wal_compressor(0, 4).unwrap().is_none());
    assert!(CompressType::Zst.wal_compressor(99, 2).is_err());
}

/// The compressed size of each zstd frame of `packed`, checking that none has a checksum or (but
/// for the frame of an empty stream, as libzstd writes it for pgBackRest too) a content size.
fn zst_frames(packed: &[u8]) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut rest = packed;
    while !rest.is_empty() {
        assert_eq!(rest[..4], [0x28, 0xb5, 0x2f, 0xfd]);
        // frame header descriptor: no checksum; no content size and not single-segment
        assert_eq!(rest[4] & 0x04, 0, "descriptor {:#x}", rest[4]);
        if packed.len() > 9 {
            assert_eq!(rest[4] & 0xe0, 0, "descriptor {:#x}", rest[4]);
        }
        let size = zstd::zstd_safe::find_frame_compressed_size(rest).unwrap();
        sizes.push(size);
        rest = &rest[size..];
    }
    sizes
}

/// `data` through the single-worker WAL compressor, fed `piece` bytes at a time.
fn wal_zst(data: &[u8], piece: usize) -> Vec<u8> {
    let mut compressor = CompressType::Zst.wal_compressor(3, 1).unwrap().unwrap();
    let mut out = Vec::new();
    for part in data.chunks(piece.max(1)) {
        out.extend(transform_part(compressor.as_mut(), part));
    }
    out.extend(transform_end(compressor.as_mut()));
    out
}

fn transform_part(transform: &mut dyn crate::io::Transform, mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let used = transform.process(input, &mut out).unwrap();
        input = &input[used..];
    }
    out
}

fn transform_end(transform: &mut dyn crate::io::Transform) -> Vec<u8> {
    let mut out = Vec::new();
    while !transform.finish(&mut out).unwrap() {}
    out
}

#[test]
fn wal_zst_starts_a_new_frame_after_every_512_kib_of_input() {
    let frame = zst::FRAME_INPUT;
    for (size, frames) in [
        (0, 1),
        (1000, 1),
        (frame, 1),
        (frame + 1, 2),
        (2 * frame, 2),
        (2 * frame + 17, 3),
    ] {
        let data = sample(size, size as u64 + 11);
        let whole = wal_zst(&data, usize::MAX);
        let sizes = zst_frames(&whole);
        assert_eq!(sizes.len(), frames, "size {size}");
        // however the input arrives, frames end at the same offsets with the same bytes
        for piece in [1000, 65536, 300_000] {
            assert_eq!(wal_zst(&data, piece), whole, "size {size} piece {piece}");
        }
        // each frame stands alone: it decodes to its own part of the input
        let mut offset = 0;
        for (i, frame_size) in sizes.iter().enumerate() {
            let part = decompress(CompressType::Zst, &whole[offset..offset + frame_size]).unwrap();
            let from = (i * frame).min(size);
            assert_eq!(
                part,
                data[from..(from + frame).min(size)],
                "size {size} frame {i}"
            );
            offset += frame_size;
        }
        assert_eq!(decompress(CompressType::Zst, &whole).unwrap(), data);
    }
}

#[test]
fn zst_for_backups_is_one_frame_as_pgbackrest_writes_it() {
    for size in [0, 1000, zst::FRAME_INPUT, 3 * zst::FRAME_INPUT + 5] {
        let data = sample(size, 5);
        let mut encoder = zstd::stream::raw::Encoder::new(3).unwrap();
        let mut plain = vec![0u8; 2 * size + 1024];
        let mut output = zstd::stream::raw::OutBuffer::around(&mut plain[..]);
        let mut input = zstd::stream::raw::InBuffer::around(&data[..]);
        while input.pos() < data.len() {
            zstd::stream::raw::Operation::run(&mut encoder, &mut input, &mut output).unwrap();
        }
        assert_eq!(
            zstd::stream::raw::Operation::finish(&mut encoder, &mut output, true).unwrap(),
            0
        );
        let written = output.pos();
        let ours = compress(CompressType::Zst, 3, &data).unwrap();
        assert_eq!(ours, plain[..written], "size {size}");
        assert_eq!(zst_frames(&ours).len(), 1, "size {size}");
        assert_eq!(compress_write(CompressType::Zst, 3, &data, 65536), ours);
    }
}
