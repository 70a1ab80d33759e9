//! Kafka's plain-text checkpoint files, so that operators who know Kafka can read them:
//!
//! ```text
//! 0            <- format version
//! 2            <- number of entries
//! a b          <- one entry per line, fields separated by a space
//! c d
//! ```
//!
//! Used for `recovery-point-offset-checkpoint` (`topic partition offset`) and each partition's
//! `leader-epoch-checkpoint` (`epoch start_offset`).

use std::io;

use crate::storage::{read_file, write_file_atomic, Storage};

/// Serialises entries (each a list of fields) in checkpoint format.
pub fn encode(entries: &[Vec<String>]) -> Vec<u8> {
    let mut text = format!("0\n{}\n", entries.len());
    for entry in entries {
        text.push_str(&entry.join(" "));
        text.push('\n');
    }
    text.into_bytes()
}

/// Parses checkpoint text, requiring `fields` fields per entry. A malformed file is an error
/// that names what is wrong; callers treat it as absent and recover from the log instead.
pub fn decode(bytes: &[u8], fields: usize) -> Result<Vec<Vec<String>>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    match lines.next() {
        Some("0") => {}
        other => return Err(format!("unknown checkpoint version {other:?}")),
    }
    let count: usize =
        lines.next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| "missing entry count".to_string())?;
    let mut entries = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let line = lines.next().ok_or_else(|| "fewer entries than the count says".to_string())?;
        let entry: Vec<String> = line.split(' ').map(str::to_string).collect();
        if entry.len() != fields {
            return Err(format!("entry {line:?} does not have {fields} fields"));
        }
        entries.push(entry);
    }
    Ok(entries)
}

pub fn write(storage: &dyn Storage, dir: &str, name: &str, entries: &[Vec<String>]) -> io::Result<()> {
    write_file_atomic(storage, dir, name, &encode(entries))
}

/// Reads a checkpoint; a missing file is an empty list, a malformed one an error.
pub fn read(storage: &dyn Storage, path: &str, fields: usize) -> io::Result<Vec<Vec<String>>> {
    match read_file(storage, path)? {
        None => Ok(Vec::new()),
        Some(bytes) => {
            decode(&bytes, fields).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let entries = vec![vec!["t".to_string(), "0".to_string(), "42".to_string()]];
        let bytes = encode(&entries);
        assert_eq!(bytes, b"0\n1\nt 0 42\n");
        assert_eq!(decode(&bytes, 3).unwrap(), entries);
    }

    #[test]
    fn malformed_is_error() {
        assert!(decode(b"1\n0\n", 2).is_err());
        assert!(decode(b"0\n2\na b\n", 2).is_err());
        assert!(decode(b"0\n1\na\n", 2).is_err());
    }
}
