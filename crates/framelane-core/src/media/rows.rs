//! Copying a tightly packed frame into a buffer whose rows are `stride` bytes apart (a QImage,
//! a texture staging buffer). Frames come from other processes and other machines, so every
//! geometry field is checked before a byte moves; nothing here can panic.

/// Why a frame could not be copied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowCopyError {
    #[error("frame has no pixels ({width}x{height})")]
    Empty { width: u32, height: u32 },
    #[error("{width}x{height} at {bytes_per_pixel} bytes per pixel does not fit in memory")]
    TooLarge {
        width: u32,
        height: u32,
        bytes_per_pixel: usize,
    },
    #[error("frame holds {actual} bytes, {width}x{height} needs {expected}")]
    SourceLength {
        width: u32,
        height: u32,
        expected: usize,
        actual: usize,
    },
    #[error("destination stride {stride} is shorter than a row of {row} bytes")]
    Stride { stride: usize, row: usize },
    #[error(
        "destination holds {actual} bytes, {height} rows {stride} bytes apart need {expected}"
    )]
    DestinationLength {
        height: u32,
        stride: usize,
        expected: usize,
        actual: usize,
    },
}

/// Copies `src` (`height` rows of `width * bytes_per_pixel` bytes, no padding) into `dst`,
/// row `y` at `y * stride`. Checks width and height (not 0), the source length, the stride and
/// the destination length first; returns the error instead of touching `dst` when any is off.
pub fn copy_rows(
    src: &[u8],
    width: u32,
    height: u32,
    bytes_per_pixel: usize,
    dst: &mut [u8],
    stride: usize,
) -> Result<(), RowCopyError> {
    if width == 0 || height == 0 || bytes_per_pixel == 0 {
        return Err(RowCopyError::Empty { width, height });
    }
    let too_large = RowCopyError::TooLarge {
        width,
        height,
        bytes_per_pixel,
    };
    let row = (width as usize)
        .checked_mul(bytes_per_pixel)
        .ok_or(too_large.clone())?;
    let expected = row.checked_mul(height as usize).ok_or(too_large.clone())?;
    if src.len() != expected {
        return Err(RowCopyError::SourceLength {
            width,
            height,
            expected,
            actual: src.len(),
        });
    }
    if stride < row {
        return Err(RowCopyError::Stride { stride, row });
    }
    let needed = stride
        .checked_mul(height as usize - 1)
        .and_then(|n| n.checked_add(row))
        .ok_or(too_large)?;
    if dst.len() < needed {
        return Err(RowCopyError::DestinationLength {
            height,
            stride,
            expected: needed,
            actual: dst.len(),
        });
    }
    if stride == row {
        dst[..expected].copy_from_slice(src);
    } else {
        for (src_row, dst_row) in src.chunks_exact(row).zip(dst.chunks_mut(stride)) {
            dst_row[..row].copy_from_slice(src_row);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_land_at_their_stride_and_padding_is_untouched() {
        let src: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        let mut dst = vec![0xEE; 3 * 10];
        copy_rows(&src, 2, 3, 4, &mut dst, 10).unwrap();
        for y in 0..3 {
            assert_eq!(&dst[y * 10..y * 10 + 8], &src[y * 8..y * 8 + 8]);
            assert_eq!(&dst[y * 10 + 8..y * 10 + 10], &[0xEE, 0xEE]);
        }
    }

    #[test]
    fn last_row_needs_no_padding_after_it() {
        let src = vec![7u8; 2 * 2 * 4];
        let mut dst = vec![0u8; 12 + 8];
        copy_rows(&src, 2, 2, 4, &mut dst, 12).unwrap();
        assert_eq!(&dst[12..20], &[7; 8]);
    }

    #[test]
    fn every_bad_geometry_is_an_error_and_leaves_the_destination_alone() {
        let src = vec![1u8; 16];
        let cases: Vec<(u32, u32, usize, usize, usize, RowCopyError)> = vec![
            (
                0,
                2,
                4,
                64,
                8,
                RowCopyError::Empty {
                    width: 0,
                    height: 2,
                },
            ),
            (
                2,
                0,
                4,
                64,
                8,
                RowCopyError::Empty {
                    width: 2,
                    height: 0,
                },
            ),
            (
                3,
                2,
                4,
                64,
                12,
                RowCopyError::SourceLength {
                    width: 3,
                    height: 2,
                    expected: 24,
                    actual: 16,
                },
            ),
            (2, 2, 4, 64, 7, RowCopyError::Stride { stride: 7, row: 8 }),
            (
                2,
                2,
                4,
                15,
                8,
                RowCopyError::DestinationLength {
                    height: 2,
                    stride: 8,
                    expected: 16,
                    actual: 15,
                },
            ),
            (
                u32::MAX,
                u32::MAX,
                usize::MAX / 2,
                64,
                8,
                RowCopyError::TooLarge {
                    width: u32::MAX,
                    height: u32::MAX,
                    bytes_per_pixel: usize::MAX / 2,
                },
            ),
        ];
        for (width, height, bpp, dst_len, stride, expected) in cases {
            let mut dst = vec![0u8; dst_len];
            let err = copy_rows(&src, width, height, bpp, &mut dst, stride).unwrap_err();
            assert_eq!(err, expected, "{width}x{height} stride {stride}");
            assert!(
                dst.iter().all(|&b| b == 0),
                "destination written for {expected}"
            );
        }
    }
}
