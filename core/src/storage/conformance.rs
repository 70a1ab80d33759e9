//! The behaviour every [`Storage`] must have. Each implementation's tests call [`run`] on a
//! fresh, empty instance (openraft's log-store suite is the model): `MemStorage` here,
//! `FsStorage` in the server, `SimDisk` in the simulator. Built for this crate's tests and for
//! crates that enable the `conformance` feature.

use std::io;

use super::*;

/// Runs every check. `crash`, where the implementation can simulate a power loss, is called by
/// the checks of what a crash keeps; real files pass `None` and skip them.
pub fn run(storage: &dyn Storage, crash: Option<&dyn Fn()>) {
    write_then_read_back(storage);
    read_past_end_is_short(storage);
    truncate_shrinks_and_extends(storage);
    directories_list_sorted(storage);
    rename_replaces(storage);
    rename_moves_directories(storage);
    rename_needs_the_target_parent(storage);
    atomic_write_round_trips(storage);
    atomic_write_at_the_root_stays_in_the_root(storage);
    remove_file_and_directories(storage);
    open_missing(storage);
    sync_files_and_directories(storage);
    refuses_paths_outside_the_model(storage);
    if let Some(crash) = crash {
        crash_keeps_synced_bytes_only(storage, crash);
        crash_keeps_an_atomic_replace(storage, crash);
    }
}

fn write_then_read_back(storage: &dyn Storage) {
    storage.create_dir_all("c1").unwrap();
    let file = storage.open("c1/a.log", true).unwrap();
    file.write_at(0, b"hello").unwrap();
    file.write_at(5, b" world").unwrap();
    file.sync().unwrap();
    assert_eq!(file.len().unwrap(), 11);
    assert_eq!(file.read_at(0, 11).unwrap(), b"hello world");
    assert_eq!(file.read_at(6, 5).unwrap(), b"world");
    let again = storage.open("c1/a.log", false).unwrap();
    assert_eq!(again.read_at(0, 5).unwrap(), b"hello");
    // Opening with `create` keeps what is there.
    let created_again = storage.open("c1/a.log", true).unwrap();
    assert_eq!(created_again.len().unwrap(), 11);
}

fn read_past_end_is_short(storage: &dyn Storage) {
    storage.create_dir_all("c2").unwrap();
    let file = storage.open("c2/a", true).unwrap();
    file.write_at(0, b"abc").unwrap();
    assert_eq!(file.read_at(1, 100).unwrap(), b"bc");
    assert!(file.read_at(10, 5).unwrap().is_empty());
}

fn truncate_shrinks_and_extends(storage: &dyn Storage) {
    storage.create_dir_all("c3").unwrap();
    let file = storage.open("c3/a", true).unwrap();
    file.write_at(0, b"abcdef").unwrap();
    file.truncate(2).unwrap();
    assert_eq!(file.len().unwrap(), 2);
    file.write_at(2, b"Z").unwrap();
    assert_eq!(file.read_at(0, 10).unwrap(), b"abZ");
    file.truncate(5).unwrap();
    assert_eq!(file.read_at(0, 10).unwrap(), b"abZ\0\0");
    file.write_at(7, b"!").unwrap();
    assert_eq!(file.read_at(0, 10).unwrap(), b"abZ\0\0\0\0!", "a write past the end fills the gap with zeros");
}

fn directories_list_sorted(storage: &dyn Storage) {
    storage.create_dir_all("c4/sub").unwrap();
    storage.create_dir_all("c4/sub").unwrap();
    storage.open("c4/b", true).unwrap();
    storage.open("c4/a", true).unwrap();
    assert_eq!(storage.list_dir("c4").unwrap(), vec!["a", "b", "sub"]);
    assert!(storage.list_dir("c4/sub").unwrap().is_empty());
    assert!(storage.exists("c4/sub").unwrap());
    assert!(storage.exists("c4/a").unwrap());
    assert!(!storage.exists("c4/zz").unwrap());
    assert!(storage.exists("").unwrap(), "the root exists");
    assert!(storage.list_dir("").unwrap().contains(&"c4".to_string()));
    assert_eq!(storage.list_dir("c4/none").unwrap_err().kind(), io::ErrorKind::NotFound);
}

fn rename_replaces(storage: &dyn Storage) {
    storage.create_dir_all("c5").unwrap();
    storage.open("c5/old", true).unwrap().write_at(0, b"new").unwrap();
    storage.open("c5/target", true).unwrap().write_at(0, b"previous").unwrap();
    storage.rename("c5/old", "c5/target").unwrap();
    assert!(!storage.exists("c5/old").unwrap());
    let file = storage.open("c5/target", false).unwrap();
    assert_eq!(file.read_at(0, 100).unwrap(), b"new");
    assert_eq!(storage.rename("c5/old", "c5/again").unwrap_err().kind(), io::ErrorKind::NotFound);
}

fn rename_moves_directories(storage: &dyn Storage) {
    storage.create_dir_all("c9/inner").unwrap();
    storage.open("c9/inner/x", true).unwrap().write_at(0, b"data").unwrap();
    storage.rename("c9/inner", "c9/moved").unwrap();
    assert!(!storage.exists("c9/inner").unwrap());
    assert!(!storage.exists("c9/inner/x").unwrap());
    assert_eq!(storage.list_dir("c9").unwrap(), vec!["moved"]);
    assert_eq!(storage.open("c9/moved/x", false).unwrap().read_at(0, 10).unwrap(), b"data");
}

fn rename_needs_the_target_parent(storage: &dyn Storage) {
    storage.create_dir_all("c10").unwrap();
    storage.open("c10/x", true).unwrap();
    assert_eq!(storage.rename("c10/x", "c10/none/x").unwrap_err().kind(), io::ErrorKind::NotFound);
    assert!(storage.exists("c10/x").unwrap(), "a failed rename leaves the source");
}

fn atomic_write_round_trips(storage: &dyn Storage) {
    storage.create_dir_all("c6").unwrap();
    write_file_atomic(storage, "c6", "meta", b"first version, long").unwrap();
    write_file_atomic(storage, "c6", "meta", b"second").unwrap();
    assert_eq!(read_file(storage, "c6/meta").unwrap().unwrap(), b"second");
    assert_eq!(read_file(storage, "c6/none").unwrap(), None);
    assert_eq!(storage.list_dir("c6").unwrap(), vec!["meta"], "no temporary file is left");
}

/// The checkpoints at the data directory's root once landed in the filesystem root, because a
/// root-level atomic write built `/name`. This is the check that would have caught it.
fn atomic_write_at_the_root_stays_in_the_root(storage: &dyn Storage) {
    write_file_atomic(storage, "", "c-root-checkpoint", b"0\n0\n").unwrap();
    assert!(storage.list_dir("").unwrap().contains(&"c-root-checkpoint".to_string()));
    assert_eq!(read_file(storage, "c-root-checkpoint").unwrap().unwrap(), b"0\n0\n");
    assert!(!storage.exists("c-root-checkpoint.tmp").unwrap());
}

fn remove_file_and_directories(storage: &dyn Storage) {
    storage.create_dir_all("c7/inner").unwrap();
    storage.open("c7/inner/x", true).unwrap();
    storage.open("c7/y", true).unwrap();
    storage.remove_file("c7/y").unwrap();
    assert!(!storage.exists("c7/y").unwrap());
    assert_eq!(storage.remove_file("c7/y").unwrap_err().kind(), io::ErrorKind::NotFound);
    storage.remove_dir_all("c7").unwrap();
    assert!(!storage.exists("c7/inner/x").unwrap());
    assert!(!storage.exists("c7").unwrap());
    storage.remove_dir_all("c7").unwrap();
}

fn open_missing(storage: &dyn Storage) {
    assert_eq!(storage.open("c8/none", false).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(
        storage.open("c8/none", true).unwrap_err().kind(),
        io::ErrorKind::NotFound,
        "creating a file needs its directory"
    );
}

fn sync_files_and_directories(storage: &dyn Storage) {
    storage.create_dir_all("c11/sub").unwrap();
    let file = storage.open("c11/sub/f", true).unwrap();
    file.write_at(0, b"x").unwrap();
    file.sync().unwrap();
    storage.sync_dir("c11/sub").unwrap();
    storage.sync_dir("c11").unwrap();
    storage.sync_dir("").unwrap();
    assert_eq!(storage.sync_dir("c11/none").unwrap_err().kind(), io::ErrorKind::NotFound);
}

fn refuses_paths_outside_the_model(storage: &dyn Storage) {
    let invalid = |result: io::Result<()>, what: &str| {
        let error = result.expect_err(what);
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{what}: {error}");
    };
    storage.create_dir_all("c12").unwrap();
    storage.open("c12/f", true).unwrap();
    for path in ["/c12/f", "/tmp/headwater-conformance-escape", "c12//f", "c12/", "./c12/f", "c12/../c12/f", "../x"] {
        invalid(storage.open(path, true).map(drop), &format!("open {path:?}"));
        invalid(storage.exists(path).map(drop), &format!("exists {path:?}"));
        invalid(storage.create_dir_all(path), &format!("create_dir_all {path:?}"));
        invalid(storage.list_dir(path).map(drop), &format!("list_dir {path:?}"));
        invalid(storage.remove_file(path), &format!("remove_file {path:?}"));
        invalid(storage.remove_dir_all(path), &format!("remove_dir_all {path:?}"));
        invalid(storage.rename("c12/f", path), &format!("rename to {path:?}"));
        invalid(storage.rename(path, "c12/g"), &format!("rename from {path:?}"));
        invalid(storage.sync_dir(path), &format!("sync_dir {path:?}"));
    }
    // The root is a directory, never a file.
    invalid(storage.open("", true).map(drop), "open the root");
    invalid(storage.remove_file(""), "remove_file the root");
    invalid(storage.remove_dir_all(""), "remove_dir_all the root");
    invalid(storage.rename("", "c12/g"), "rename the root");
    assert!(storage.exists("c12/f").unwrap(), "refused calls change nothing");
    assert!(!storage.exists("c12/g").unwrap());
}

fn crash_keeps_synced_bytes_only(storage: &dyn Storage, crash: &dyn Fn()) {
    storage.create_dir_all("c13").unwrap();
    let file = storage.open("c13/f", true).unwrap();
    file.write_at(0, b"durable").unwrap();
    file.sync().unwrap();
    file.write_at(7, b" lost").unwrap();
    let never_synced = storage.open("c13/g", true).unwrap();
    never_synced.write_at(0, b"gone").unwrap();
    crash();
    assert_eq!(storage.open("c13/f", false).unwrap().read_at(0, 100).unwrap(), b"durable");
    assert!(storage.open("c13/g", false).unwrap().read_at(0, 100).unwrap().is_empty());
}

fn crash_keeps_an_atomic_replace(storage: &dyn Storage, crash: &dyn Fn()) {
    storage.create_dir_all("c14").unwrap();
    write_file_atomic(storage, "c14", "meta", b"old").unwrap();
    write_file_atomic(storage, "c14", "meta", b"new").unwrap();
    crash();
    assert_eq!(read_file(storage, "c14/meta").unwrap().unwrap(), b"new");
}
