//! headwater-server: the tokio driver around `headwater-core`, real files, configuration and
//! the `headwater` command line.

pub mod config;
pub mod connection;
pub mod driver;
#[cfg(not(madsim))]
pub mod embedded;
pub mod fs_storage;
pub mod peers;
pub mod server;
