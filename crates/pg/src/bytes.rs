//! Little-endian field access over byte slices that never panics.
//!
//! Contract: readers return `None` when the field does not fit in the slice; writers silently do
//! nothing in that case (callers size their buffers from the same layout table, so a write that
//! does not fit is a table bug caught by the round-trip tests, not an input error).

pub(crate) fn u16_at(bytes: &[u8], off: usize) -> Option<u16> {
    let b = bytes.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(b.try_into().ok()?))
}

pub(crate) fn u32_at(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

pub(crate) fn i32_at(bytes: &[u8], off: usize) -> Option<i32> {
    let b = bytes.get(off..off.checked_add(4)?)?;
    Some(i32::from_le_bytes(b.try_into().ok()?))
}

pub(crate) fn u64_at(bytes: &[u8], off: usize) -> Option<u64> {
    let b = bytes.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

pub(crate) fn i64_at(bytes: &[u8], off: usize) -> Option<i64> {
    let b = bytes.get(off..off.checked_add(8)?)?;
    Some(i64::from_le_bytes(b.try_into().ok()?))
}

/// Copies `src` to `buf[off..]` when it fits.
pub(crate) fn put(buf: &mut [u8], off: usize, src: &[u8]) {
    if let Some(end) = off.checked_add(src.len())
        && let Some(dst) = buf.get_mut(off..end)
    {
        dst.copy_from_slice(src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_bounded() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u16_at(&b, 0), Some(0x0201));
        assert_eq!(u32_at(&b, 4), Some(0x0807_0605));
        assert_eq!(u64_at(&b, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(u32_at(&b, 5), None);
        assert_eq!(u64_at(&b, 1), None);
        assert_eq!(i64_at(&b, usize::MAX), None);
        assert_eq!(i32_at(&b, 6), None);
        let mut buf = [0u8; 4];
        put(&mut buf, 2, &[9, 9, 9]);
        assert_eq!(buf, [0; 4]);
        put(&mut buf, 2, &[9, 9]);
        assert_eq!(buf, [0, 0, 9, 9]);
    }
}
