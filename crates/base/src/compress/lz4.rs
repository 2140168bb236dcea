//! LZ4 frame format. Encoding uses `lz4_flex`'s frame encoder with pgBackRest's (liblz4's
//! default) preferences: 64 KiB linked blocks and a content checksum. Decoding is our own frame
//! reader over `lz4_flex`'s block decoder, because the crate's frame decoder stops after the
//! first frame and only reads from a `Read`; ours consumes pushed input, follows any number of
//! frames (and skips skippable ones), checks every checksum the frame carries and emits one
//! block per call, so output stays bounded by the frame's block size (at most 4 MiB).

use std::hash::Hasher;
use std::io::Write;

use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
use twox_hash::XxHash32;

use super::unexpected_eof;
use crate::error::{Error, Result};
use crate::io::{Transform, chunk_of};

const FRAME_MAGIC: u32 = 0x184D_2204;
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
const SKIPPABLE_MASK: u32 = 0xFFFF_FFF0;
/// How far back a linked block may refer.
const WINDOW: usize = 64 * 1024;

fn lz4_error(name: &str) -> Error {
    crate::err!(Format, "lz4 error: {name}")
}

pub(crate) struct Lz4Compress {
    encoder: FrameEncoder<Vec<u8>>,
}

impl Lz4Compress {
    pub(crate) fn new() -> Lz4Compress {
        let info = FrameInfo::new()
            .block_size(BlockSize::Max64KB)
            .block_mode(BlockMode::Linked)
            .content_checksum(true);
        Lz4Compress {
            encoder: FrameEncoder::with_frame_info(info, Vec::new()),
        }
    }
}

impl Transform for Lz4Compress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let input = chunk_of(input);
        self.encoder
            .write_all(input)
            .map_err(|e| crate::err!(Assert, "lz4 error: {e}"))?;
        out.append(self.encoder.get_mut());
        Ok(input.len())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<bool> {
        self.encoder
            .try_finish()
            .map_err(|e| crate::err!(Assert, "lz4 error: {e}"))?;
        out.append(self.encoder.get_mut());
        Ok(true)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Magic,
    SkipSize,
    Skip(u64),
    Descriptor,
    DescriptorRest { flg: u8, bd: u8 },
    BlockHeader,
    Block { size: usize, compressed: bool },
    ContentChecksum,
}

struct Frame {
    linked: bool,
    block_checksum: bool,
    content_checksum: bool,
    max_block: usize,
    content_size: Option<u64>,
    produced: u64,
    hasher: XxHash32,
}

/// Everything but the pending input, so a unit borrowed from the pending buffer can be handled.
struct Reader {
    state: State,
    frame: Option<Frame>,
    window: Vec<u8>,
    frames: u64,
}

pub(crate) struct Lz4Decompress {
    /// Bytes of an incomplete unit (header, block) carried over from earlier input.
    pending: Vec<u8>,
    reader: Reader,
}

impl Lz4Decompress {
    pub(crate) fn new() -> Lz4Decompress {
        Lz4Decompress {
            pending: Vec::new(),
            reader: Reader {
                state: State::Magic,
                frame: None,
                window: Vec::new(),
                frames: 0,
            },
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

impl Reader {
    /// Bytes the current unit needs (0 for `Skip`, which is handled without buffering).
    fn need(&self) -> usize {
        match self.state {
            State::Magic | State::SkipSize | State::BlockHeader | State::ContentChecksum => 4,
            State::Skip(_) => 0,
            State::Descriptor => 2,
            State::DescriptorRest { flg, .. } => {
                1 + if flg & 0x08 != 0 { 8 } else { 0 } + if flg & 0x01 != 0 { 4 } else { 0 }
            }
            State::Block { size, .. } => {
                size + if self.frame.as_ref().is_some_and(|f| f.block_checksum) {
                    4
                } else {
                    0
                }
            }
        }
    }

    /// Handle one complete unit; returns true when it appended output.
    fn handle(&mut self, unit: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        match self.state {
            State::Magic => {
                let magic = u32_at(unit, 0);
                self.state = if magic == FRAME_MAGIC {
                    State::Descriptor
                } else if magic & SKIPPABLE_MASK == SKIPPABLE_MAGIC {
                    State::SkipSize
                } else {
                    return Err(lz4_error("ERROR_frameType_unknown"));
                };
            }
            State::SkipSize => {
                let size = u64::from(u32_at(unit, 0));
                self.state = if size == 0 {
                    State::Magic
                } else {
                    State::Skip(size)
                };
            }
            State::Skip(_) => {}
            State::Descriptor => {
                let (flg, bd) = match unit {
                    [flg, bd, ..] => (*flg, *bd),
                    _ => return Err(unexpected_eof()),
                };
                if flg >> 6 != 0b01 {
                    return Err(lz4_error("ERROR_headerVersion_wrong"));
                }
                if flg & 0x02 != 0 || bd & 0x8F != 0 {
                    return Err(lz4_error("ERROR_reservedFlag_set"));
                }
                if !(4..=7).contains(&(bd >> 4)) {
                    return Err(lz4_error("ERROR_maxBlockSize_invalid"));
                }
                if flg & 0x01 != 0 {
                    return Err(lz4_error("dictionary frames are not supported"));
                }
                self.state = State::DescriptorRest { flg, bd };
            }
            State::DescriptorRest { flg, bd } => {
                let (fields, checksum) = unit.split_at(unit.len().saturating_sub(1));
                let mut hasher = XxHash32::with_seed(0);
                hasher.write(&[flg, bd]);
                hasher.write(fields);
                if checksum.first().copied() != Some((hasher.finish_32() >> 8) as u8) {
                    return Err(lz4_error("ERROR_headerChecksum_invalid"));
                }
                self.window.clear();
                self.frame = Some(Frame {
                    linked: flg & 0x20 == 0,
                    block_checksum: flg & 0x10 != 0,
                    content_checksum: flg & 0x04 != 0,
                    max_block: 1 << (8 + 2 * usize::from(bd >> 4)),
                    content_size: (flg & 0x08 != 0).then(|| u64_at(fields, 0)),
                    produced: 0,
                    hasher: XxHash32::with_seed(0),
                });
                self.state = State::BlockHeader;
            }
            State::BlockHeader => {
                let word = u32_at(unit, 0);
                let Some(frame) = self.frame.as_ref() else {
                    return Err(lz4_error("ERROR_GENERIC"));
                };
                if word == 0 {
                    if frame.content_checksum {
                        self.state = State::ContentChecksum;
                    } else {
                        self.end_frame()?;
                    }
                } else {
                    let size = (word & 0x7FFF_FFFF) as usize;
                    if size > frame.max_block {
                        return Err(lz4_error("ERROR_maxBlockSize_invalid"));
                    }
                    self.state = State::Block {
                        size,
                        compressed: word & 0x8000_0000 == 0,
                    };
                }
            }
            State::Block { size, compressed } => {
                self.state = State::BlockHeader;
                return self.block(unit, size, compressed, out);
            }
            State::ContentChecksum => {
                let expected = u32_at(unit, 0);
                if self.frame.as_ref().map(|f| f.hasher.finish_32()) != Some(expected) {
                    return Err(lz4_error("ERROR_contentChecksum_invalid"));
                }
                self.end_frame()?;
            }
        }
        Ok(false)
    }

    fn block(
        &mut self,
        unit: &[u8],
        size: usize,
        compressed: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        let Some(frame) = self.frame.as_mut() else {
            return Err(lz4_error("ERROR_GENERIC"));
        };
        let (data, checksum) = unit.split_at(size.min(unit.len()));
        if frame.block_checksum && Some(u32_at(checksum, 0)) != Some(XxHash32::oneshot(0, data)) {
            return Err(lz4_error("ERROR_blockChecksum_invalid"));
        }
        let start = out.len();
        if compressed {
            out.resize(start + frame.max_block, 0);
            let dest = out.get_mut(start..).unwrap_or_default();
            let written = if frame.linked {
                let dict = self
                    .window
                    .get(self.window.len().saturating_sub(WINDOW)..)
                    .unwrap_or_default();
                lz4_flex::block::decompress_into_with_dict(data, dest, dict)
            } else {
                lz4_flex::block::decompress_into(data, dest)
            }
            .map_err(|e| crate::err!(Format, "lz4 error: ERROR_decompressionFailed: {e}"))?;
            out.truncate(start + written);
        } else {
            out.extend_from_slice(data);
        }
        let block = out.get(start..).unwrap_or_default();
        frame.produced += block.len() as u64;
        if frame.content_checksum {
            frame.hasher.write(block);
        }
        if frame.linked {
            if block.len() >= WINDOW {
                self.window.clear();
                self.window
                    .extend_from_slice(block.get(block.len() - WINDOW..).unwrap_or_default());
            } else {
                if self.window.len() + block.len() > 4 * WINDOW {
                    let keep_from = self.window.len() - (WINDOW - block.len());
                    self.window.drain(..keep_from);
                }
                self.window.extend_from_slice(block);
            }
        }
        Ok(!block.is_empty())
    }

    fn end_frame(&mut self) -> Result<()> {
        if let Some(frame) = self.frame.take()
            && frame
                .content_size
                .is_some_and(|size| size != frame.produced)
        {
            return Err(lz4_error("ERROR_frameSize_wrong"));
        }
        self.window.clear();
        self.frames += 1;
        self.state = State::Magic;
        Ok(())
    }
}

impl Transform for Lz4Decompress {
    fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize> {
        let input = chunk_of(input);
        let mut pos = 0;
        while pos < input.len() {
            if let State::Skip(remaining) = self.reader.state {
                let skip = remaining.min((input.len() - pos) as u64);
                pos += skip as usize;
                self.reader.state = match remaining - skip {
                    0 => State::Magic,
                    left => State::Skip(left),
                };
                continue;
            }
            let need = self.reader.need();
            let rest = input.get(pos..).unwrap_or_default();
            let emitted = if self.pending.is_empty() && rest.len() >= need {
                pos += need;
                self.reader
                    .handle(rest.get(..need).unwrap_or_default(), out)?
            } else {
                let take = (need - self.pending.len()).min(rest.len());
                self.pending
                    .extend_from_slice(rest.get(..take).unwrap_or_default());
                pos += take;
                if self.pending.len() < need {
                    break;
                }
                let emitted = self.reader.handle(&self.pending, out)?;
                self.pending.clear();
                emitted
            };
            if emitted {
                break;
            }
        }
        Ok(pos)
    }

    fn finish(&mut self, _out: &mut Vec<u8>) -> Result<bool> {
        if self.reader.state == State::Magic && self.pending.is_empty() && self.reader.frames > 0 {
            Ok(true)
        } else {
            Err(unexpected_eof())
        }
    }
}
