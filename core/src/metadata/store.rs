//! The persisted metadata document, `<data>/__headwater/metadata.json`:
//! cluster id, topics (name, id, partition count, config overrides), and the end of the
//! reserved producer-id block. Every change is written atomically (temp file, fsync, rename,
//! fsync dir) before the request that made it is answered.

use std::collections::BTreeMap;
use std::io;

use serde::{Deserialize, Serialize};

use crate::storage::{read_file, write_file_atomic, Storage};

pub const METADATA_DIR: &str = "__headwater";
pub const METADATA_FILE: &str = "metadata.json";
/// The metadata document, relative to the data directory.
pub const METADATA_PATH: &str = "__headwater/metadata.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: i32,
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataDocument {
    pub version: u32,
    pub cluster_id: String,
    /// Producer ids below this may have been handed out; a restart continues from here.
    pub producer_id_block_end: i64,
    /// How many times the broker has started on this data; seeds each start's id generator.
    #[serde(default)]
    pub incarnation: u64,
    pub topics: Vec<TopicRecord>,
}

#[derive(Debug)]
pub struct MetadataStore {
    pub document: MetadataDocument,
}

impl MetadataStore {
    /// Loads the document, or starts a new one with `cluster_id` if none exists.
    pub fn load_or_create(storage: &dyn Storage, cluster_id: String) -> io::Result<(MetadataStore, bool)> {
        storage.create_dir_all(METADATA_DIR)?;
        let path = format!("{METADATA_DIR}/{METADATA_FILE}");
        match read_file(storage, &path)? {
            Some(bytes) => {
                let document: MetadataDocument = serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))?;
                if document.version != 1 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{path}: unknown version {}", document.version),
                    ));
                }
                Ok((MetadataStore { document }, false))
            }
            None => {
                let store = MetadataStore {
                    document: MetadataDocument {
                        version: 1,
                        cluster_id,
                        producer_id_block_end: 0,
                        incarnation: 0,
                        topics: Vec::new(),
                    },
                };
                store.persist(storage)?;
                Ok((store, true))
            }
        }
    }

    pub fn persist(&self, storage: &dyn Storage) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.document).map_err(io::Error::other)?;
        write_file_atomic(storage, METADATA_DIR, METADATA_FILE, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn persists_and_reloads() {
        let storage = MemStorage::new();
        let (mut store, created) = MetadataStore::load_or_create(&storage, "c1".into()).unwrap();
        assert!(created);
        store.document.topics.push(TopicRecord {
            name: "t".into(),
            id: uuid::Uuid::from_u128(5),
            partitions: 3,
            configs: BTreeMap::new(),
        });
        store.persist(&storage).unwrap();
        let (again, created) = MetadataStore::load_or_create(&storage, "other".into()).unwrap();
        assert!(!created);
        assert_eq!(again.document, store.document);
    }
}
