//! The Nix database an image carries with `nix.enable`: `/nix/var/nix/db` registering
//! exactly the image's closure, so `nix` works inside the container.
//!
//! Nix writes it (`nix-store --dump-db` from the build machine's store, then
//! `--load-db` into a temporary store state folder), so the schema is the one that
//! Nix version reads; gpubox then fixes every registration time to the image's
//! `created` time and rewrites the file with a bundled SQLite (`VACUUM INTO`, rollback
//! journal), so two builds of the same closure give the same bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gpubox_nix::{Closure, Nix, NixError, StorePath};
use gpubox_oci::Entry;

use crate::tree::{Origin, Tree};
use crate::{image_path, RootfsError};

/// The database files, ready for the top layer.
#[derive(Debug, Clone)]
pub struct NixDb {
    /// `nix/var/nix/db/db.sqlite`.
    pub sqlite: Arc<[u8]>,
    /// `nix/var/nix/db/schema`: the schema version Nix wrote.
    pub schema: Arc<[u8]>,
}

/// Why the Nix database could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NixDbError {
    #[error("nix.enable: cannot register the closure in a Nix database: {0}")]
    Nix(#[from] NixError),
    #[error("nix.enable: {action} {}: {source}; check that the temporary folder is writable (TMPDIR)", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("nix.enable: cannot rewrite the Nix database {}: {source}; check that `nix-store --version` is 2.8 or newer", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// Registers every path of `closure` in a new Nix database, with `created` (Unix
/// seconds) as every path's registration time.
pub fn nix_db(nix: &Nix, closure: &Closure, created: i64) -> Result<NixDb, NixDbError> {
    let work = tempfile::tempdir().map_err(|source| NixDbError::Io {
        action: "cannot create a temporary folder in",
        path: std::env::temp_dir(),
        source,
    })?;
    // Sorted already: a closure iterates by store path.
    let paths: Vec<StorePath> = closure.paths().map(|info| info.path.clone()).collect();
    let registration = nix.registration(&paths)?;
    let root = work.path().join("root");
    nix.load_registration(&root, &registration)?;
    let db_dir = root.join("nix/var/nix/db");
    let loaded = db_dir.join("db.sqlite");
    let fixed = work.path().join("db.sqlite");
    normalise(&loaded, &fixed, created).map_err(|source| NixDbError::Sqlite {
        path: loaded.clone(),
        source,
    })?;
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| NixDbError::Io {
            action: "cannot read",
            path: path.to_owned(),
            source,
        })
    };
    Ok(NixDb {
        sqlite: read(&fixed)?.into(),
        schema: read(&db_dir.join("schema"))?.into(),
    })
}

/// Copies the database at `from` to `to` with fixed registration times, in a
/// freshly laid-out file without a write-ahead log.
fn normalise(from: &Path, to: &Path, created: i64) -> Result<(), rusqlite::Error> {
    let db = rusqlite::Connection::open(from)?;
    db.execute("UPDATE ValidPaths SET registrationTime = ?1", [created])?;
    db.pragma_update(None, "journal_mode", "DELETE")?;
    db.execute("VACUUM INTO ?1", [to.to_string_lossy()])?;
    Ok(())
}

/// Puts the database into the image's `/nix/var/nix`, with the folders Nix expects.
pub(crate) fn add_nix_db(tree: &mut Tree, db: &NixDb) -> Result<(), RootfsError> {
    let path = |raw: &str| image_path(raw, &Origin::Generated);
    for dir in [
        "nix/var/nix/db",
        "nix/var/nix/gcroots",
        "nix/var/nix/profiles",
    ] {
        tree.insert_default(Entry::directory(path(dir)?, 0o755));
    }
    tree.insert_default(Entry::bytes(
        path("nix/var/nix/db/db.sqlite")?,
        0o644,
        db.sqlite.clone(),
    ));
    tree.insert_default(Entry::bytes(
        path("nix/var/nix/db/schema")?,
        0o644,
        db.schema.clone(),
    ));
    Ok(())
}
