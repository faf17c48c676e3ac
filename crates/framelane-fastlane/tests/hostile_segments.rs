//! Hostile and broken segment files against the reader: a real writer's segment, mutated at
//! random (header fields set to edge values, bytes flipped, the file cut short, MOSAIC's magic
//! put in front) a few thousand times. Opening and reading never panic and never read outside
//! the file; every refusal is an error that names the file (and the header field, when one is
//! out of range).

use std::panic::{catch_unwind, AssertUnwindSafe};

use framelane_fastlane::{FastLaneReader, FastLaneWriter, HudValues, PixelFormat, WriterConfig};

/// xorshift64*: repeatable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn valid_segment() -> Vec<u8> {
    let run = format!("fuzz-{}", std::process::id());
    let mut config = WriterConfig::new(32, 24, PixelFormat::Rgb8);
    config.cleanup_on_signal = false;
    let mut writer = FastLaneWriter::create(&run, config).expect("writer");
    let pixels = vec![7u8; 32 * 24 * 3];
    for step in 0..3 {
        writer
            .publish(
                &pixels,
                &HudValues {
                    step,
                    ..HudValues::default()
                },
            )
            .expect("publish");
    }
    let bytes = std::fs::read(writer.path()).expect("segment bytes");
    drop(writer);
    bytes
}

#[test]
fn mutated_segments_are_refused_or_read_without_a_panic() {
    let base = valid_segment();
    let dir = std::env::temp_dir().join(format!("framelane-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let path = dir.join("segment");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let edges = [
        0u64,
        1,
        2,
        3,
        255,
        256,
        65_535,
        u32::MAX as u64,
        u32::MAX as u64 - 1,
        1 << 31,
    ];
    let (mut opened, mut refused, mut field_named) = (0, 0, 0);
    for round in 0..3000 {
        let mut bytes = base.clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(5) {
                // A 4-byte header field set to an edge or random value.
                0 | 1 => {
                    let at = (rng.below(256 / 4) * 4) as usize;
                    let value = if rng.below(2) == 0 {
                        edges[rng.below(edges.len() as u64) as usize] as u32
                    } else {
                        rng.next() as u32
                    };
                    if at + 4 <= bytes.len() {
                        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
                    }
                }
                // Random bytes anywhere.
                2 => {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = rng.next() as u8;
                }
                // Cut short.
                3 => {
                    let len = rng.below(bytes.len() as u64) as usize;
                    bytes.truncate(len);
                }
                // MOSAIC's magic in front of our layout.
                _ => {
                    if bytes.len() >= 4 {
                        bytes[..4].copy_from_slice(b"FLAN");
                    }
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        std::fs::write(&path, &bytes).expect("write");
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            match FastLaneReader::open(&path) {
                Ok(mut reader) => {
                    let geometry = reader.geometry();
                    // Every size the reader accepted is bounded by the file.
                    assert!(
                        geometry.frame_bytes() <= bytes.len(),
                        "round {round}: a {}-byte frame accepted from a {}-byte file",
                        geometry.frame_bytes(),
                        bytes.len()
                    );
                    let mut dst = vec![0u8; geometry.frame_bytes()];
                    let _ = reader.read_newest(&mut dst, geometry.row_bytes());
                    let _ = reader.peek_newest();
                    let _ = reader.writer_status();
                    Ok(())
                }
                Err(err) => Err(err.to_string()),
            }
        }));
        match outcome {
            Ok(Ok(())) => opened += 1,
            Ok(Err(message)) => {
                refused += 1;
                assert!(
                    message.contains(&path.display().to_string()) || message.contains("segment"),
                    "round {round}: the error does not say which file: {message}"
                );
                if message.contains("header field") {
                    field_named += 1;
                }
            }
            Err(_) => panic!("round {round}: the reader panicked on a mutated segment"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{opened} opened, {refused} refused ({field_named} naming a header field)");
    assert!(refused > 100 && field_named > 20, "the mutations reached the checks: {opened} opened, {refused} refused ({field_named} naming a field)");
}
