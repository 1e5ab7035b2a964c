//! The tar writer: entries in, deterministic ustar bytes out.

use std::collections::HashSet;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::header::{
    octal_max, push_pax_record, Header, BLOCK, GID, LINKNAME, MTIME, NAME, SIZE, TYPE_DIRECTORY,
    TYPE_FILE, TYPE_HARD_LINK, TYPE_PAX, TYPE_SYMLINK, UID,
};
use super::IO_BUFFER_SIZE;
use crate::entry::{Entry, EntryKind, FileSource, ImagePath};

/// Why an entry could not be written. After any of these the output is incomplete:
/// drop it rather than finishing it.
#[derive(Debug, thiserror::Error)]
pub enum TarError {
    /// Entries must come in strictly increasing [`ImagePath`] order; an equal path
    /// is a duplicate.
    #[error("{}", out_of_order_message(previous, path))]
    OutOfOrder {
        previous: ImagePath,
        path: ImagePath,
    },

    #[error(
        "the hard link `{path}` points to `{target}`, which is not a regular file written \
         earlier in this layer; a hard link must come after the file it names"
    )]
    HardLinkTarget { path: ImagePath, target: ImagePath },

    #[error(
        "the symbolic link `{path}` has an empty target or one containing a NUL byte; \
         give it a target a file system can store"
    )]
    BadSymlinkTarget { path: ImagePath },

    #[error(
        "`{}` changed while the image was being built: it had {expected} bytes and now has \
         {found}; build again once nothing is writing to it",
        file.display()
    )]
    SizeChanged {
        file: PathBuf,
        expected: u64,
        found: u64,
    },

    /// The bytes given for an entry were not as many as its size says.
    #[error(
        "the data for `{path}` has {found} bytes but its entry announced {expected}; \
         the source it was read from is truncated or changed"
    )]
    WrongLength {
        path: ImagePath,
        expected: u64,
        found: u64,
    },

    #[error("cannot read the data for `{path}`: {source}")]
    ReadStream {
        path: ImagePath,
        #[source]
        source: io::Error,
    },

    /// `path` is the file being read; `None` when writing the output failed.
    #[error("{}", io_message(path.as_deref(), source))]
    Io {
        path: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
}

fn out_of_order_message(previous: &ImagePath, path: &ImagePath) -> String {
    if previous == path {
        format!("`{path}` is written twice into one layer; each path may appear once")
    } else {
        format!(
            "`{path}` comes after `{previous}`, but layer entries must be sorted by path \
             (folders before their contents); this is a bug in the code producing the entries"
        )
    }
}

fn io_message(path: Option<&std::path::Path>, source: &io::Error) -> String {
    match path {
        Some(path) => format!(
            "cannot read `{}` to put it into a layer: {source}; \
             check that it exists and is readable",
            path.display()
        ),
        None => format!("cannot write the layer: {source}; check the free space where it goes"),
    }
}

/// Where a PAX header's own name starts; the entry's base name follows, cut to fit.
const PAX_NAME_PREFIX: &[u8] = b"PaxHeaders/";

/// Writes a deterministic tar to `W`: what comes out depends only on the entries,
/// the file contents and the mtime given to [`TarWriter::new`].
///
/// Output goes through one [`IO_BUFFER_SIZE`] buffer that file contents are read
/// into directly, so `W` sees few, large writes and no byte is copied twice.
pub struct TarWriter<W: Write> {
    inner: W,
    mtime: u64,
    buf: Box<[u8]>,
    filled: usize,
    previous: Option<ImagePath>,
    /// Hashes of the regular files written so far, for checking hard-link targets.
    /// A 64-bit hash rather than the path keeps memory at a few bytes per file for
    /// layers with hundreds of thousands of them; a collision would only let a bad
    /// hard link through, never reject a good one.
    regular_files: HashSet<u64>,
    entry_count: u64,
    /// Reused for every header's name and PAX records, so writing an entry does
    /// not allocate.
    name: Vec<u8>,
    pax: Vec<u8>,
}

/// What one entry's header says, before names are fitted into ustar fields.
struct EntryHeader<'a> {
    path: &'a ImagePath,
    typeflag: u8,
    link: &'a [u8],
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
}

impl<'a> EntryHeader<'a> {
    fn of(entry: &'a Entry, typeflag: u8, link: &'a [u8], size: u64) -> EntryHeader<'a> {
        EntryHeader {
            path: &entry.path,
            typeflag,
            link,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            size,
        }
    }
}

/// How copying an entry's data went wrong, before it is tied to a source.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl<W: Write> TarWriter<W> {
    /// A writer giving every entry the modification time `mtime` (seconds since
    /// the Unix epoch).
    pub fn new(inner: W, mtime: u64) -> TarWriter<W> {
        TarWriter {
            inner,
            mtime,
            buf: vec![0; IO_BUFFER_SIZE].into_boxed_slice(),
            filled: 0,
            previous: None,
            regular_files: HashSet::new(),
            entry_count: 0,
            name: Vec::new(),
            pax: Vec::new(),
        }
    }

    /// Writes `entry`: its header, a PAX header first where needed, and for files
    /// the content. A [`FileSource::Path`] is opened now and must still have the
    /// size the entry says.
    pub fn append(&mut self, entry: &Entry) -> Result<(), TarError> {
        self.check_order(&entry.path)?;
        let path = &entry.path;
        match &entry.kind {
            EntryKind::Directory => {
                self.write_header(EntryHeader::of(entry, TYPE_DIRECTORY, b"", 0))?;
            }
            EntryKind::Symlink { target } => {
                if target.is_empty() || target.contains(&0) {
                    return Err(TarError::BadSymlinkTarget { path: path.clone() });
                }
                self.write_header(EntryHeader::of(entry, TYPE_SYMLINK, target, 0))?;
            }
            EntryKind::HardLink { target } => {
                if !self.regular_files.contains(&path_hash(target)) {
                    return Err(TarError::HardLinkTarget {
                        path: path.clone(),
                        target: target.clone(),
                    });
                }
                let link = target.as_bytes();
                self.write_header(EntryHeader::of(entry, TYPE_HARD_LINK, link, 0))?;
            }
            EntryKind::File {
                source: FileSource::Bytes(bytes),
                size,
            } => {
                if bytes.len() as u64 != *size {
                    return Err(TarError::WrongLength {
                        path: path.clone(),
                        expected: *size,
                        found: bytes.len() as u64,
                    });
                }
                self.write_header(EntryHeader::of(entry, TYPE_FILE, b"", *size))?;
                self.write_buffered(bytes).map_err(write_error)?;
                self.pad(*size)?;
            }
            EntryKind::File {
                source: FileSource::Path(file),
                size,
            } => self.append_file(EntryHeader::of(entry, TYPE_FILE, b"", *size), file)?,
        }
        self.record(path, matches!(entry.kind, EntryKind::File { .. }));
        Ok(())
    }

    /// Writes a root-owned regular file whose `size` bytes come from `reader`
    /// (used to put blobs into archives). The reader must end after exactly `size`
    /// bytes.
    pub fn append_reader(
        &mut self,
        path: &ImagePath,
        mode: u32,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(), TarError> {
        self.check_order(path)?;
        self.write_header(EntryHeader {
            path,
            typeflag: TYPE_FILE,
            link: b"",
            mode,
            uid: 0,
            gid: 0,
            size,
        })?;
        let read_error = |source| TarError::ReadStream {
            path: path.clone(),
            source,
        };
        let mut found = self.copy_content(reader, size).map_err(|e| match e {
            CopyError::Read(source) => read_error(source),
            CopyError::Write(source) => write_error(source),
        })?;
        if found == size {
            // A stream has no size to check up front, so look for a byte too many.
            found += read_probe(reader).map_err(read_error)?;
        }
        if found != size {
            return Err(TarError::WrongLength {
                path: path.clone(),
                expected: size,
                found,
            });
        }
        self.pad(size)?;
        self.record(path, true);
        Ok(())
    }

    /// Entries written so far, not counting PAX headers.
    pub fn entry_count(&self) -> u64 {
        self.entry_count
    }

    /// Ends the archive with two zero blocks, flushes, and returns the writer.
    pub fn finish(mut self) -> Result<W, TarError> {
        self.write_buffered(&[0; 2 * BLOCK]).map_err(write_error)?;
        self.flush_buf().map_err(write_error)?;
        self.inner.flush().map_err(write_error)?;
        Ok(self.inner)
    }

    fn check_order(&self, path: &ImagePath) -> Result<(), TarError> {
        match &self.previous {
            Some(previous) if previous >= path => Err(TarError::OutOfOrder {
                previous: previous.clone(),
                path: path.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn record(&mut self, path: &ImagePath, regular_file: bool) {
        if regular_file {
            self.regular_files.insert(path_hash(path));
        }
        self.previous = Some(path.clone());
        self.entry_count += 1;
    }

    fn append_file(&mut self, header: EntryHeader<'_>, file: &Path) -> Result<(), TarError> {
        let size = header.size;
        let file_error = |source| TarError::Io {
            path: Some(file.to_path_buf()),
            source,
        };
        let size_changed = |found| TarError::SizeChanged {
            file: file.to_path_buf(),
            expected: size,
            found,
        };
        let mut opened = File::open(file).map_err(file_error)?;
        let found = opened.metadata().map_err(file_error)?.len();
        if found != size {
            return Err(size_changed(found));
        }
        self.write_header(header)?;
        let copied = self.copy_content(&mut opened, size).map_err(|e| match e {
            CopyError::Read(source) => file_error(source),
            CopyError::Write(source) => write_error(source),
        })?;
        if copied != size {
            return Err(size_changed(copied));
        }
        self.pad(size)
    }

    /// Writes the header of `entry.path`, preceded by a PAX header holding
    /// whatever ustar cannot: long names and link targets, numbers too large for
    /// octal.
    fn write_header(&mut self, entry: EntryHeader<'_>) -> Result<(), TarError> {
        let mut name = std::mem::take(&mut self.name);
        name.clear();
        name.extend_from_slice(entry.path.as_bytes());
        if entry.typeflag == TYPE_DIRECTORY {
            // What docker and skopeo write, and what tells old readers it is a folder.
            name.push(b'/');
        }
        let mut pax = std::mem::take(&mut self.pax);
        self.pax_records(&entry, &name, &mut pax);
        let result = self.write_pax_then_header(&entry, &name, &pax);
        self.name = name;
        self.pax = pax;
        result.map_err(write_error)
    }

    /// Fills `pax` with the records `entry` needs, in key order so that the bytes
    /// depend on nothing but the values; empty when ustar says it all. Names that
    /// are not UTF-8 go in as raw bytes, as GNU tar and Go write and read them:
    /// GNU tar warns about the `hdrcharset` record that POSIX offers instead.
    fn pax_records(&self, entry: &EntryHeader<'_>, name: &[u8], pax: &mut Vec<u8>) {
        pax.clear();
        let long_name = name.len() > NAME.len();
        let long_link = entry.link.len() > LINKNAME.len();
        if u64::from(entry.gid) > octal_max(GID.len()) {
            push_pax_record(pax, "gid", entry.gid.to_string().as_bytes());
        }
        if long_link {
            push_pax_record(pax, "linkpath", entry.link);
        }
        if self.mtime > octal_max(MTIME.len()) {
            push_pax_record(pax, "mtime", self.mtime.to_string().as_bytes());
        }
        if long_name {
            push_pax_record(pax, "path", name);
        }
        if entry.size > octal_max(SIZE.len()) {
            push_pax_record(pax, "size", entry.size.to_string().as_bytes());
        }
        if u64::from(entry.uid) > octal_max(UID.len()) {
            push_pax_record(pax, "uid", entry.uid.to_string().as_bytes());
        }
    }

    fn write_pax_then_header(
        &mut self,
        entry: &EntryHeader<'_>,
        name: &[u8],
        pax: &[u8],
    ) -> io::Result<()> {
        if !pax.is_empty() {
            let pax_name = pax_header_name(entry.path);
            let block = Header {
                name: &pax_name,
                link: b"",
                typeflag: TYPE_PAX,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: pax.len() as u64,
                mtime: self.mtime,
            }
            .encode();
            self.write_buffered(&block)?;
            self.write_buffered(pax)?;
            self.write_buffered(&ZEROS[..padding(pax.len() as u64)])?;
        }
        let block = Header {
            name,
            link: entry.link,
            typeflag: entry.typeflag,
            mode: entry.mode & 0o7777,
            uid: entry.uid,
            gid: entry.gid,
            size: entry.size,
            mtime: self.mtime,
        }
        .encode();
        self.write_buffered(&block)
    }

    /// Copies up to `size` bytes of `reader` into the archive and returns how many
    /// it got: fewer when the reader ended early, more when a read returned bytes
    /// beyond `size`. Reads go straight into the output buffer.
    fn copy_content(&mut self, reader: &mut dyn Read, size: u64) -> Result<u64, CopyError> {
        // Below this much room, flushing first beats a small read.
        const MIN_READ: usize = IO_BUFFER_SIZE / 4;
        let mut copied = 0u64;
        while copied < size {
            let free = self.buf.len() - self.filled;
            if free < MIN_READ && (free as u64) < size - copied {
                self.flush_buf().map_err(CopyError::Write)?;
            }
            let n = match reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.filled += n;
            copied += n as u64;
            if self.filled == self.buf.len() {
                self.flush_buf().map_err(CopyError::Write)?;
            }
        }
        Ok(copied)
    }

    fn pad(&mut self, size: u64) -> Result<(), TarError> {
        self.write_buffered(&ZEROS[..padding(size)])
            .map_err(write_error)
    }

    fn write_buffered(&mut self, mut data: &[u8]) -> io::Result<()> {
        if data.len() >= self.buf.len() {
            self.flush_buf()?;
            return self.inner.write_all(data);
        }
        while !data.is_empty() {
            let n = data.len().min(self.buf.len() - self.filled);
            self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == self.buf.len() {
                self.flush_buf()?;
            }
        }
        Ok(())
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.buf[..self.filled])?;
        self.filled = 0;
        Ok(())
    }
}

static ZEROS: [u8; BLOCK] = [0; BLOCK];

/// Zero bytes that follow `size` bytes of data to end on a block boundary.
fn padding(size: u64) -> usize {
    (BLOCK as u64 - size % BLOCK as u64) as usize % BLOCK
}

fn write_error(source: io::Error) -> TarError {
    TarError::Io { path: None, source }
}

fn path_hash(path: &ImagePath) -> u64 {
    let mut hasher = DefaultHasher::new();
    path.hash(&mut hasher);
    hasher.finish()
}

/// 1 when `reader` still has a byte, 0 at its end.
fn read_probe(reader: &mut dyn Read) -> io::Result<u64> {
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte) {
            Ok(n) => return Ok(n as u64),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `PaxHeaders/<base name>`, cut to the 100 bytes of the name field without
/// splitting a UTF-8 character. Readers ignore this name; it only has to be fixed.
fn pax_header_name(path: &ImagePath) -> Vec<u8> {
    let bytes = path.as_bytes();
    let base = match bytes.iter().rposition(|&b| b == b'/') {
        Some(slash) => &bytes[slash + 1..],
        None => bytes,
    };
    let mut cut = base.len().min(NAME.len() - PAX_NAME_PREFIX.len());
    while cut < base.len() && cut > 0 && base[cut] & 0xc0 == 0x80 {
        cut -= 1;
    }
    [PAX_NAME_PREFIX, &base[..cut]].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    #[test]
    fn pax_header_name_keeps_whole_utf8_characters() {
        let long = "é".repeat(60);
        let name = pax_header_name(&p(&format!("dir/{long}")));
        assert!(name.len() <= 100);
        let text = std::str::from_utf8(&name).unwrap();
        assert!(text.starts_with("PaxHeaders/é"));
        assert_eq!(pax_header_name(&p("a/b")), b"PaxHeaders/b");
    }

    #[test]
    fn short_names_get_no_pax_header_and_end_in_two_zero_blocks() {
        let mut w = TarWriter::new(Vec::new(), 1);
        w.append(&Entry::directory(p("etc"), 0o755)).unwrap();
        w.append(&Entry::bytes(
            p("etc/hosts"),
            0o644,
            &b"127.0.0.1 localhost\n"[..],
        ))
        .unwrap();
        assert_eq!(w.entry_count(), 2);
        let out = w.finish().unwrap();
        // Two headers, one data block, two zero blocks.
        assert_eq!(out.len(), 5 * BLOCK);
        assert_eq!(&out[..4], b"etc/");
        assert_eq!(&out[BLOCK..BLOCK + 9], b"etc/hosts");
        assert!(out[3 * BLOCK..].iter().all(|&b| b == 0));
    }

    #[test]
    fn bytes_entry_with_a_wrong_size_is_refused() {
        let mut entry = Entry::bytes(p("x"), 0o644, &b"abc"[..]);
        if let EntryKind::File { size, .. } = &mut entry.kind {
            *size = 4;
        }
        let err = TarWriter::new(Vec::new(), 1).append(&entry).unwrap_err();
        assert!(
            matches!(
                err,
                TarError::WrongLength {
                    expected: 4,
                    found: 3,
                    ..
                }
            ),
            "{err}"
        );
    }
}
