//! Blob bytes checked as they stream: [`IncomingBlob`] writes a blob arriving
//! from a registry into a [`BlobStore`] only once its size and digest are
//! right, [`VerifyingReader`] fails a read whose bytes are not the digest they
//! should be, and [`Tee`] copies what is read.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use super::error::ReadError;
use crate::blob::BlobStore;
use crate::digest::Digest;

/// A blob arriving from elsewhere (a registry), written into a [`BlobStore`]
/// as its bytes come: counted and hashed on the way into a pending file,
/// and moved under `blobs/` by [`IncomingBlob::finish`] only when its size and
/// digest are the ones expected. Dropped unfinished, it leaves nothing.
pub struct IncomingBlob<'s> {
    store: &'s BlobStore,
    temp: gpubox_atomic::PendingFile,
    hasher: Sha256,
    written: u64,
    expected: Digest,
    size: u64,
    origin: String,
}

impl<'s> IncomingBlob<'s> {
    /// Starts a blob of `size` bytes with digest `expected`; `origin` (where
    /// it comes from) is named in errors.
    pub fn new(
        store: &'s BlobStore,
        expected: Digest,
        size: u64,
        origin: &str,
    ) -> Result<IncomingBlob<'s>, ReadError> {
        Ok(IncomingBlob {
            temp: store.temp_file()?,
            store,
            hasher: Sha256::new(),
            written: 0,
            expected,
            size,
            origin: origin.to_owned(),
        })
    }

    /// Appends the next bytes; more than the expected size is an error.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ReadError> {
        self.written += bytes.len() as u64;
        if self.written > self.size {
            return Err(self.mismatch(format!("it is longer than {} bytes", self.size)));
        }
        self.hasher.update(bytes);
        self.temp
            .file()
            .write_all(bytes)
            .map_err(|source| ReadError::BlobWrite {
                digest: self.expected.clone(),
                path: self.temp.path().to_owned(),
                source,
            })
    }

    /// Checks the size and digest and moves the blob into the store.
    pub fn finish(self) -> Result<(), ReadError> {
        if self.written != self.size {
            return Err(self.mismatch(format!("it is {} bytes, not {}", self.written, self.size)));
        }
        let actual = hex::encode(self.hasher.clone().finalize());
        if actual != self.expected.hex() {
            return Err(self.mismatch(format!("its content has digest sha256:{actual}")));
        }
        self.store.persist(self.temp, &self.expected)?;
        Ok(())
    }

    fn mismatch(&self, detail: String) -> ReadError {
        ReadError::BlobMismatch {
            digest: self.expected.clone(),
            origin: self.origin.clone(),
            detail,
        }
    }
}

/// Passes reads on and writes a copy of every byte read to `copy`.
pub(super) struct Tee<R, W> {
    pub(super) inner: R,
    pub(super) copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Passes on exactly `size` bytes of `inner`, hashing them, and fails the read
/// that ends the stream when the digest is not the expected one; a stream that
/// ends early fails too. The error messages start with `label`.
pub(crate) struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    remaining: u64,
    expected: Digest,
    label: String,
}

impl<R: Read> VerifyingReader<R> {
    pub(crate) fn new(inner: R, size: u64, expected: Digest, label: String) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            remaining: size,
            expected,
            label,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} ends {} bytes early", self.label, self.remaining),
            ));
        }
        self.hasher.update(&buf[..n]);
        self.remaining -= n as u64;
        if self.remaining == 0 {
            let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
            if actual != self.expected.hex() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} has digest sha256:{actual}, not {}: it is damaged",
                        self.label, self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_blobs_are_stored_only_when_complete_and_right() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let bytes = b"a blob from far away";
        let digest = Digest::of(bytes);

        let mut short =
            IncomingBlob::new(&store, digest.clone(), bytes.len() as u64, "here").unwrap();
        short.write(&bytes[..5]).unwrap();
        assert!(matches!(
            short.finish(),
            Err(ReadError::BlobMismatch { .. })
        ));
        let mut long = IncomingBlob::new(&store, digest.clone(), 3, "here").unwrap();
        assert!(matches!(
            long.write(bytes),
            Err(ReadError::BlobMismatch { .. })
        ));
        drop(long);
        let wrong = Digest::of(b"something else");
        let mut other =
            IncomingBlob::new(&store, wrong.clone(), bytes.len() as u64, "here").unwrap();
        other.write(bytes).unwrap();
        let error = other.finish().unwrap_err().to_string();
        assert!(
            error.contains("here") && error.contains(&digest.to_string()),
            "{error}"
        );
        assert!(!store.contains(&digest) && !store.contains(&wrong));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );

        let mut good =
            IncomingBlob::new(&store, digest.clone(), bytes.len() as u64, "here").unwrap();
        good.write(&bytes[..4]).unwrap();
        good.write(&bytes[4..]).unwrap();
        good.finish().unwrap();
        assert_eq!(std::fs::read(store.path(&digest)).unwrap(), bytes);
    }
}
