//! The one path model every [`Storage`](super::Storage) follows.
//!
//! A path names an entry under the storage root: components separated by `/`, each non-empty
//! and neither `.` nor `..`, with no leading `/`. The empty path names the root itself and is
//! accepted only where a directory is meant (listing, syncing, `exists`). Anything else is
//! refused with `InvalidInput` before any implementation touches its tree, so a path built
//! wrongly (an absolute path joined onto the data directory, a `..` that escapes it) fails
//! loudly in unit tests, in the simulator and on a real disk alike, instead of landing
//! somewhere each implementation interprets differently.

use std::io;

/// Whether the root itself (the empty path) is acceptable for an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    Allowed,
    Refused,
}

/// Checks `path` against the model; the error names the path and what is wrong with it.
pub fn check(path: &str, root: Root) -> io::Result<()> {
    let refuse = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidInput, format!("storage path {path:?}: {why}")));
    if path.is_empty() {
        return match root {
            Root::Allowed => Ok(()),
            Root::Refused => refuse("the storage root is not a file"),
        };
    }
    if path.starts_with('/') {
        return refuse("absolute paths are refused; paths are relative to the storage root");
    }
    if path.contains('\0') {
        return refuse("contains a NUL byte");
    }
    for component in path.split('/') {
        match component {
            "" => return refuse("empty path component"),
            "." | ".." => return refuse("'.' and '..' components are refused"),
            _ => {}
        }
    }
    Ok(())
}

/// `dir/name`, or `name` when `dir` is the root. Use this, never `format!("{dir}/{name}")`,
/// when `dir` may be the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory holding `path` (the root for a top-level entry).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_relative_paths() {
        for path in ["a", "a/b", "t-0/00000000000000000000.log", "__headwater/metadata.json", "x.tmp"] {
            check(path, Root::Refused).unwrap();
        }
        check("", Root::Allowed).unwrap();
    }

    #[test]
    fn refuses_the_forms_outside_the_model() {
        for path in ["/abs", "/recovery-point-offset-checkpoint", "a//b", "a/", "./a", "a/..", "../x", "a/./b", "a\0b"]
        {
            let error = check(path, Root::Allowed).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{path:?}");
            assert!(error.to_string().contains("storage path"), "{error}");
        }
        assert!(check("", Root::Refused).is_err());
    }

    #[test]
    fn join_at_the_root_stays_relative() {
        assert_eq!(join("", "recovery-point-offset-checkpoint"), "recovery-point-offset-checkpoint");
        assert_eq!(join("t-0", "leader-epoch-checkpoint"), "t-0/leader-epoch-checkpoint");
        assert_eq!(parent("t-0/a.log"), "t-0");
        assert_eq!(parent("a"), "");
    }
}
