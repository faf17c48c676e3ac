//! File names for recordings derived from what workers send.

/// Longest readable part of a run's folder name, in bytes (the hash follows it).
const READABLE_BYTES: usize = 64;

/// The folder a run's recordings go in: the run id made safe (no separators, no dot-dot,
/// ASCII only, at most 64 bytes) and a hash of the exact id, so distinct runs never share a
/// folder ("a/b", "a b" and "a_b" read alike but differ) and ids longer than a file name allows
/// still work.
pub fn run_folder_name(run_id: &str) -> String {
    let mut readable = safe_component(run_id);
    readable.truncate(READABLE_BYTES);
    format!("{readable}-{:016x}", fnv1a64(run_id.as_bytes()))
}

/// What a file of one worker's agent adds to its name: "-" and the agent's id made safe with
/// its hash, as for run folders, then "-by-" and the worker's id the same way; each part is
/// left out when its id is '' (runs without agent or worker ids keep the plain names).
pub fn owner_suffix(worker_id: &str, agent_id: &str) -> String {
    let mut suffix = String::new();
    if !agent_id.is_empty() {
        suffix.push('-');
        suffix.push_str(&run_folder_name(agent_id));
    }
    if !worker_id.is_empty() {
        suffix.push_str("-by-");
        suffix.push_str(&run_folder_name(worker_id));
    }
    suffix
}

/// FNV-1a, 64 bits: stable across builds and platforms (the names end up on disk).
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A path component made safe from a run id (no separators, no dot-dot).
pub fn safe_component(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        format!("_{cleaned}")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_cannot_escape_the_recordings_folder() {
        assert_eq!(safe_component("../../etc"), ".._.._etc");
        assert_eq!(safe_component(".."), "_..");
        assert_eq!(safe_component("team/run 1"), "team_run_1");
        assert!(!run_folder_name("../..").contains('/'));
        assert!(!run_folder_name("..").starts_with(".."));
    }

    #[test]
    fn runs_that_read_alike_get_their_own_folders() {
        let names: Vec<String> = ["a/b", "a b", "a_b", "ä", "ö", "日本", "中国"]
            .iter()
            .map(|id| run_folder_name(id))
            .collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(names[0].starts_with("a_b-"), "readable: {}", names[0]);
        assert_eq!(run_folder_name("a/b"), names[0], "stable");
    }

    #[test]
    fn owners_that_read_alike_get_their_own_file_names() {
        // (worker, agent) pairs whose parts would read alike without the markers and hashes.
        let owners = [
            ("", ""),
            ("a", ""),
            ("", "a"),
            ("a", "a"),
            ("", "by-a"),
            ("b", "a"),
            ("a", "b"),
            ("a/b", ""),
            ("a_b", ""),
        ];
        let names: Vec<String> = owners.iter().map(|(w, a)| owner_suffix(w, a)).collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                assert_ne!(a, b, "{owners:?}");
            }
        }
        assert_eq!(names[0], "", "no ids: the plain name");
        assert!(names.iter().all(|n| !n.contains('/')));
        // A file name stays short enough with the longest ids.
        let long = "x".repeat(5000);
        assert!(owner_suffix(&long, &long).len() < 200);
    }

    #[test]
    fn ids_longer_than_a_file_name_still_get_a_short_folder() {
        let long = "r".repeat(5000);
        let name = run_folder_name(&long);
        assert!(name.len() <= 64 + 17, "{} bytes", name.len());
        assert_ne!(name, run_folder_name(&"r".repeat(4999)));
    }
}
