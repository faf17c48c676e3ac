//! Synthetic frames that carry their own frame number, for round-trip tests and benchmarks:
//! a moving gradient (so the encoder has real motion to code) under a band of 16 black/white
//! bars spelling the number in binary, which survives lossy coding.

/// Bits of the number spelled by the bars.
pub const BITS: u32 = 16;

/// Fills `rgb` (tightly packed RGB24, `width` x `height`) with frame `number`.
pub fn numbered_frame(number: u64, width: u32, height: u32, rgb: &mut [u8]) {
    let (w, h) = (width as usize, height as usize);
    let band = h / 4;
    let bar = (w / BITS as usize).max(1);
    let shift = (number * 3) as usize;
    for y in 0..h {
        let row = &mut rgb[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            let px = &mut row[x * 3..x * 3 + 3];
            if y < band {
                let bit = (x / bar).min(BITS as usize - 1) as u32;
                let on = (number >> (BITS - 1 - bit)) & 1 == 1;
                let v = if on { 235 } else { 16 };
                px.copy_from_slice(&[v, v, v]);
            } else {
                px[0] = ((x + shift) * 255 / (w + 1)) as u8;
                px[1] = ((y * 255) / h.max(1)) as u8;
                px[2] = (((x + y + shift) / 2) % 256) as u8;
            }
        }
    }
}

/// Adds camera-like sensor noise (uniform, +-`amplitude`) to an RGB picture, deterministic in
/// `seed`. Real camera and render frames are noisy; flat synthetic ones flatter PNG.
pub fn add_sensor_noise(rgb: &mut [u8], amplitude: u8, seed: u64) {
    let mut state = seed | 1;
    let span = 2 * amplitude as u64 + 1;
    for v in rgb.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % span) as i32 - amplitude as i32;
        *v = (*v as i32 + noise).clamp(0, 255) as u8;
    }
}

/// Reads the number back from an RGBA picture of a numbered frame.
pub fn read_number(rgba: &[u8], width: u32, height: u32) -> u64 {
    let (w, h) = (width as usize, height as usize);
    let band = h / 4;
    let bar = (w / BITS as usize).max(1);
    let mut number = 0u64;
    for bit in 0..BITS as usize {
        let (x0, x1) = (bit * bar + bar / 4, bit * bar + bar * 3 / 4);
        let (y0, y1) = (band / 4, band * 3 / 4);
        let mut sum = 0u64;
        let mut n = 0u64;
        for y in y0..y1.max(y0 + 1) {
            for x in x0..x1.max(x0 + 1) {
                let p = &rgba[(y * w + x) * 4..(y * w + x) * 4 + 3];
                sum += (p[0] as u64 + p[1] as u64 + p[2] as u64) / 3;
                n += 1;
            }
        }
        number = (number << 1) | u64::from(sum / n.max(1) > 128);
    }
    number
}

/// Peak signal-to-noise ratio in dB between an RGB24 original and an RGBA picture.
pub fn psnr_rgb_rgba(original: &[u8], rgba: &[u8]) -> f64 {
    let mut squared = 0f64;
    let mut n = 0f64;
    for (o, d) in original.chunks_exact(3).zip(rgba.chunks_exact(4)) {
        for c in 0..3 {
            let e = o[c] as f64 - d[c] as f64;
            squared += e * e;
            n += 1.0;
        }
    }
    if squared == 0.0 {
        return 99.0;
    }
    10.0 * (255.0f64 * 255.0 / (squared / n)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back_from_the_frames_that_carry_them() {
        let (w, h) = (320u32, 240u32);
        let mut rgb = vec![0; (w * h * 3) as usize];
        for number in [0u64, 1, 2, 255, 1000, 65535] {
            numbered_frame(number, w, h, &mut rgb);
            let rgba = framelane_core::media::raw_to_rgba(
                framelane_core::media::RawPixelFormat::Rgb8,
                &rgb,
            );
            assert_eq!(read_number(&rgba, w, h), number);
            assert_eq!(psnr_rgb_rgba(&rgb, &rgba), 99.0);
        }
    }
}
