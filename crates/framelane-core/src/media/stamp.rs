//! Numbers written into a picture's pixels as a row of black and white blocks (bottom-left
//! corner, most significant bit first), and read back. Synthetic sources stamp their frame
//! number (and camera id) so a test or benchmark can tell exactly which frame reached a file or
//! the screen, through lossy encoding.

/// Bits per stamped number.
pub const STAMP_BITS: u32 = 16;
/// Side of one block in pixels.
pub const STAMP_BLOCK: u32 = 16;

/// Writes `value` (its low `STAMP_BITS` bits) as stamp row `row` (0: the bottom block row,
/// 1: the one above, ...) into packed RGB. Pictures too small for it are left as they are.
pub fn stamp(value: u64, row: u32, rgb: &mut [u8], width: u32, height: u32) {
    let (w, h) = (width as usize, height as usize);
    let block = STAMP_BLOCK as usize;
    let top = match h.checked_sub((row as usize + 1) * block) {
        Some(top) if w >= block * STAMP_BITS as usize && rgb.len() >= w * h * 3 => top,
        _ => return,
    };
    for bit in 0..STAMP_BITS as usize {
        let on = (value >> (STAMP_BITS as usize - 1 - bit)) & 1 == 1;
        let v = if on { 255 } else { 0 };
        for y in top..top + block {
            let start = (y * w + bit * block) * 3;
            rgb[start..start + block * 3].fill(v);
        }
    }
}

/// Reads stamp row `row` from packed pixels of `channels` bytes each (3 or 4), sampling each
/// block's centre; None when the picture is too small.
pub fn read_stamp(
    pixels: &[u8],
    width: u32,
    height: u32,
    channels: usize,
    row: u32,
) -> Option<u64> {
    let (w, h) = (width as usize, height as usize);
    let block = STAMP_BLOCK as usize;
    let top = h.checked_sub((row as usize + 1) * block)?;
    if w < block * STAMP_BITS as usize || channels < 3 {
        return None;
    }
    let y = top + block / 2;
    let mut n = 0u64;
    for bit in 0..STAMP_BITS as usize {
        let x = bit * block + block / 2;
        let i = (y * w + x) * channels;
        let v = pixels.get(i..i + 3)?;
        let luma = (u32::from(v[0]) + u32::from(v[1]) + u32::from(v[2])) / 3;
        n = (n << 1) | u64::from(luma > 128);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_rows_round_trip_and_small_pictures_are_left_alone() {
        let (w, h) = (320u32, 64u32);
        let mut rgb = vec![90u8; (w * h * 3) as usize];
        stamp(0xBEEF, 0, &mut rgb, w, h);
        stamp(7, 1, &mut rgb, w, h);
        assert_eq!(read_stamp(&rgb, w, h, 3, 0), Some(0xBEEF));
        assert_eq!(read_stamp(&rgb, w, h, 3, 1), Some(7));
        let mut small = vec![1u8; 100 * 10 * 3];
        stamp(5, 0, &mut small, 100, 10);
        assert!(small.iter().all(|&v| v == 1));
        assert_eq!(read_stamp(&small, 100, 10, 3, 0), None);
    }
}
