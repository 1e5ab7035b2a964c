//! Lists what a tar holds, without extracting it: ustar, PAX and GNU long names,
//! so it reads layers from any registry as well as our own.

use std::io::{self, Read};

use crate::digest::{Digest, HashingWriter};

use super::header::{
    checksum, BLOCK, CHECKSUM, GID, LINKNAME, MAGIC, MODE, MTIME, NAME, PREFIX, SIZE, TYPEFLAG,
    TYPE_DIRECTORY, TYPE_FILE, TYPE_HARD_LINK, TYPE_PAX, TYPE_SYMLINK, UID, USTAR_MAGIC,
};

/// What kind of thing a tar entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarEntryKind {
    Directory,
    File,
    Symlink,
    HardLink,
    /// Any other type flag (devices, FIFOs, vendor extensions).
    Other(u8),
}

/// One entry of a tar as its headers describe it, PAX and GNU extensions applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarEntryInfo {
    /// Without a leading `./` or `/` and without a trailing `/`; empty for the
    /// archive's root folder (`./`).
    pub path: Vec<u8>,
    pub kind: TarEntryKind,
    /// Bytes of content; 0 for kinds that have none (folders, links, devices).
    pub size: u64,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// The link text of a symbolic link, or the path (normalised like `path`) a
    /// hard link names.
    pub link: Option<Vec<u8>>,
}

/// A tar stream that cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum TarReadError {
    #[error(
        "the tar stream ends inside the entry whose header is at byte {offset}; \
         the file is truncated"
    )]
    Truncated { offset: u64 },

    #[error(
        "the tar header at byte {offset} is not valid: {reason}; \
         the data is not a tar or is damaged"
    )]
    BadHeader { offset: u64, reason: String },

    #[error("cannot read the tar stream at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

/// The entries of the tar `reader` holds, read lazily; content is skipped.
pub fn read_entries<R: Read>(reader: R) -> TarEntries<R> {
    TarEntries {
        reader,
        offset: 0,
        done: false,
    }
}

/// The iterator [`read_entries`] returns; it ends after the first error.
pub struct TarEntries<R> {
    reader: R,
    offset: u64,
    done: bool,
}

/// Values that PAX or GNU headers give for the entry that follows them.
#[derive(Default)]
pub(crate) struct Overrides {
    pub(crate) path: Option<Vec<u8>>,
    pub(crate) link: Option<Vec<u8>>,
    pub(crate) size: Option<u64>,
    pub(crate) uid: Option<u64>,
    pub(crate) gid: Option<u64>,
    pub(crate) mtime: Option<u64>,
}

/// Extended headers are small; a larger one means the stream is not what it says.
const MAX_EXTENSION_SIZE: u64 = 1024 * 1024;

const TYPE_GNU_LONG_NAME: u8 = b'L';
const TYPE_GNU_LONG_LINK: u8 = b'K';
const TYPE_PAX_GLOBAL: u8 = b'g';

impl<R: Read> Iterator for TarEntries<R> {
    type Item = Result<TarEntryInfo, TarReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.advance(&mut io::sink())
    }
}

impl<R: Read> TarEntries<R> {
    /// The next entry and the sha256 of its content, hashed as the content streams
    /// past, so nothing is held in memory. Like `next`, it ends after an error.
    pub fn next_with_digest(&mut self) -> Option<Result<(TarEntryInfo, Digest), TarReadError>> {
        let mut hashing = HashingWriter::new(io::sink());
        let entry = self.advance(&mut hashing)?;
        Some(entry.map(|info| (info, hashing.finish().1)))
    }

    /// The next entry, its content written to `content` as it streams past. Like
    /// `next`, it ends after an error.
    pub fn next_with_content(
        &mut self,
        content: &mut dyn io::Write,
    ) -> Option<Result<TarEntryInfo, TarReadError>> {
        self.advance(content)
    }

    /// Reads the next entry, passing its content to `content`.
    fn advance(
        &mut self,
        content: &mut dyn io::Write,
    ) -> Option<Result<TarEntryInfo, TarReadError>> {
        if self.done {
            return None;
        }
        let result = self.read_entry(content).transpose();
        if !matches!(result, Some(Ok(_))) {
            self.done = true;
        }
        result
    }

    fn read_entry(
        &mut self,
        mut content: &mut dyn io::Write,
    ) -> Result<Option<TarEntryInfo>, TarReadError> {
        let mut overrides = Overrides::default();
        loop {
            let offset = self.offset;
            let bad = |reason: String| TarReadError::BadHeader { offset, reason };
            let Some(block) = self.read_block()? else {
                return Ok(None);
            };
            if block.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            let stored = parse_number(&block[CHECKSUM]).map_err(&bad)?;
            let signed: i64 = block
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if CHECKSUM.contains(&i) {
                        32
                    } else {
                        i64::from(b as i8)
                    }
                })
                .sum();
            if stored != u64::from(checksum(&block)) && Ok(stored) != u64::try_from(signed) {
                return Err(bad("its checksum does not match".into()));
            }
            let typeflag = block[TYPEFLAG];
            let header_size = parse_number(&block[SIZE]).map_err(&bad)?;
            match typeflag {
                TYPE_PAX | TYPE_GNU_LONG_NAME | TYPE_GNU_LONG_LINK => {
                    let data = self.read_extension(header_size, offset)?;
                    match typeflag {
                        TYPE_PAX => apply_pax(&data, &mut overrides).map_err(&bad)?,
                        TYPE_GNU_LONG_NAME => overrides.path = Some(until_nul(&data).to_vec()),
                        _ => overrides.link = Some(until_nul(&data).to_vec()),
                    }
                    continue;
                }
                TYPE_PAX_GLOBAL => {
                    self.skip(header_size, offset)?;
                    continue;
                }
                _ => {}
            }
            let kind = match typeflag {
                TYPE_FILE | 0 | b'7' => TarEntryKind::File,
                TYPE_DIRECTORY => TarEntryKind::Directory,
                TYPE_SYMLINK => TarEntryKind::Symlink,
                TYPE_HARD_LINK => TarEntryKind::HardLink,
                other => TarEntryKind::Other(other),
            };
            // Like Go's archive/tar (what Docker and containerd use): these kinds
            // carry no data whatever the size field says.
            let size = if matches!(typeflag, b'1'..=b'6') {
                0
            } else {
                overrides.size.unwrap_or(header_size)
            };
            let path = overrides.path.take().unwrap_or_else(|| ustar_name(&block));
            let link = match kind {
                TarEntryKind::Symlink => Some(
                    overrides
                        .link
                        .take()
                        .unwrap_or_else(|| until_nul(&block[LINKNAME]).to_vec()),
                ),
                TarEntryKind::HardLink => Some(normalise(
                    overrides
                        .link
                        .as_deref()
                        .unwrap_or(until_nul(&block[LINKNAME])),
                )),
                _ => None,
            };
            let number = |field: &[u8], over: Option<u64>| match over {
                Some(value) => Ok(value),
                None => parse_number(field).map_err(&bad),
            };
            let info = TarEntryInfo {
                path: normalise(&path),
                kind,
                size,
                mode: (parse_number(&block[MODE]).map_err(&bad)? & 0o7777) as u32,
                uid: number(&block[UID], overrides.uid)?,
                gid: number(&block[GID], overrides.gid)?,
                mtime: number(&block[MTIME], overrides.mtime)?,
                link,
            };
            self.copy_exactly(size, &mut content, offset)?;
            self.skip_padding(size, offset)?;
            return Ok(Some(info));
        }
    }

    /// The next 512-byte block, or `None` at a clean end of the stream.
    fn read_block(&mut self) -> Result<Option<[u8; BLOCK]>, TarReadError> {
        let mut block = [0u8; BLOCK];
        let mut got = 0;
        while got < BLOCK {
            match self.reader.read(&mut block[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => {
                    return Err(TarReadError::Truncated {
                        offset: self.offset,
                    })
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(TarReadError::Io {
                        offset: self.offset,
                        source,
                    })
                }
            }
        }
        self.offset += BLOCK as u64;
        Ok(Some(block))
    }

    fn read_extension(&mut self, size: u64, offset: u64) -> Result<Vec<u8>, TarReadError> {
        if size > MAX_EXTENSION_SIZE {
            return Err(TarReadError::BadHeader {
                offset,
                reason: format!("its extended header claims {size} bytes"),
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        self.copy_exactly(size, &mut data, offset)?;
        self.skip_padding(size, offset)?;
        Ok(data)
    }

    /// Skips `size` bytes of content and the padding after them.
    fn skip(&mut self, size: u64, offset: u64) -> Result<(), TarReadError> {
        self.copy_exactly(size, &mut io::sink(), offset)?;
        self.skip_padding(size, offset)
    }

    fn skip_padding(&mut self, size: u64, offset: u64) -> Result<(), TarReadError> {
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.copy_exactly(padding, &mut io::sink(), offset)
    }

    /// Moves the next `n` bytes of the stream to `to`; `offset` is the header the
    /// bytes belong to, named when the stream ends early.
    fn copy_exactly(
        &mut self,
        n: u64,
        to: &mut impl io::Write,
        offset: u64,
    ) -> Result<(), TarReadError> {
        let copied =
            io::copy(&mut (&mut self.reader).take(n), to).map_err(|source| TarReadError::Io {
                offset: self.offset,
                source,
            })?;
        self.offset += copied;
        if copied != n {
            return Err(TarReadError::Truncated { offset });
        }
        Ok(())
    }
}

/// The name field, with the ustar prefix in front when the header is POSIX ustar
/// (GNU headers use that area for other things).
fn ustar_name(block: &[u8; BLOCK]) -> Vec<u8> {
    let name = until_nul(&block[NAME]);
    let prefix = until_nul(&block[PREFIX]);
    if &block[MAGIC] == USTAR_MAGIC && !prefix.is_empty() {
        [prefix, b"/", name].concat()
    } else {
        name.to_vec()
    }
}

pub(crate) fn until_nul(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|&b| b == 0)
        .map_or(field, |end| &field[..end])
}

/// Drops leading `./` and `/` and trailing `/`.
fn normalise(mut path: &[u8]) -> Vec<u8> {
    loop {
        if let Some(rest) = path.strip_prefix(b"./") {
            path = rest;
        } else if let Some(rest) = path.strip_prefix(b"/") {
            path = rest;
        } else {
            break;
        }
    }
    while let Some(rest) = path.strip_suffix(b"/") {
        path = rest;
    }
    if path == b"." {
        path = b"";
    }
    path.to_vec()
}

/// An octal field (space or NUL padded) or a GNU base-256 one (high bit set).
pub(crate) fn parse_number(field: &[u8]) -> Result<u64, String> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err("it holds a negative number".into());
        }
        let mut value: u64 = u64::from(field[0] & 0x3f);
        for &b in &field[1..] {
            value = value
                .checked_mul(256)
                .map(|v| v + u64::from(b))
                .ok_or_else(|| "it holds a number larger than 64 bits".to_string())?;
        }
        return Ok(value);
    }
    let digits = field
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|&&b| b != b' ' && b != 0);
    let mut value: u64 = 0;
    for &b in digits {
        if !(b'0'..=b'7').contains(&b) {
            return Err(format!(
                "`{}` is not an octal number",
                String::from_utf8_lossy(field)
            ));
        }
        value = value
            .checked_mul(8)
            .map(|v| v + u64::from(b - b'0'))
            .ok_or_else(|| "it holds a number larger than 64 bits".to_string())?;
    }
    Ok(value)
}

/// Applies the records of a PAX extended header (`"<len> <key>=<value>\n"`).
pub(crate) fn apply_pax(mut data: &[u8], overrides: &mut Overrides) -> Result<(), String> {
    let malformed = || "its PAX records are malformed".to_string();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or_else(malformed)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&len| len > space + 1 && len <= data.len())
            .ok_or_else(malformed)?;
        let record = &data[space + 1..len];
        data = &data[len..];
        let record = record.strip_suffix(b"\n").ok_or_else(malformed)?;
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(malformed)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        let number = || -> Result<u64, String> {
            // mtime may have a fraction; only whole seconds matter here.
            let whole = value.split(|&b| b == b'.').next().unwrap_or(value);
            std::str::from_utf8(whole)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    format!(
                        "its PAX record `{}` is not a number",
                        String::from_utf8_lossy(record)
                    )
                })
        };
        match key {
            b"path" => overrides.path = Some(value.to_vec()),
            b"linkpath" => overrides.link = Some(value.to_vec()),
            b"size" => overrides.size = Some(number()?),
            b"uid" => overrides.uid = Some(number()?),
            b"gid" => overrides.gid = Some(number()?),
            b"mtime" => overrides.mtime = Some(number()?),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_octal_and_base_256() {
        assert_eq!(parse_number(b"0000755\0"), Ok(0o755));
        assert_eq!(parse_number(b"   755 \0"), Ok(0o755));
        assert_eq!(parse_number(&[0x80, 0, 0, 0, 0, 0, 1, 0]), Ok(256));
        assert!(parse_number(b"0000798\0").is_err());
    }

    #[test]
    fn normalise_strips_dot_slash_and_trailing_slash() {
        assert_eq!(normalise(b"./a/b/"), b"a/b");
        assert_eq!(normalise(b"/a"), b"a");
        assert_eq!(normalise(b"./"), b"");
    }

    #[test]
    fn pax_records_override_and_reject_garbage() {
        let mut o = Overrides::default();
        apply_pax(b"12 path=abc\n14 mtime=12.5\n", &mut o).unwrap();
        assert_eq!(o.path.as_deref(), Some(&b"abc"[..]));
        assert_eq!(o.mtime, Some(12));
        assert!(apply_pax(b"99 path=abc\n", &mut Overrides::default()).is_err());
    }

    #[test]
    fn digests_cover_exactly_each_entrys_content() {
        let mut w = super::super::TarWriter::new(Vec::new(), 0);
        let content = vec![3u8; 1300];
        for entry in [
            crate::Entry::bytes(crate::ImagePath::new("a").unwrap(), 0o644, content.clone()),
            crate::Entry::directory(crate::ImagePath::new("d").unwrap(), 0o755),
        ] {
            w.append(&entry).unwrap();
        }
        let tar = w.finish().unwrap();
        let mut entries = read_entries(&tar[..]);
        let (file, file_digest) = entries.next_with_digest().unwrap().unwrap();
        assert_eq!((file.path.as_slice(), file.size), (&b"a"[..], 1300));
        assert_eq!(file_digest, Digest::of(&content));
        let (dir, dir_digest) = entries.next_with_digest().unwrap().unwrap();
        assert_eq!(dir.path, b"d");
        assert_eq!(dir_digest, Digest::of(b""));
        assert!(entries.next_with_digest().is_none());
    }

    #[test]
    fn truncated_stream_is_reported() {
        let mut w = super::super::TarWriter::new(Vec::new(), 0);
        let entry = crate::Entry::bytes(crate::ImagePath::new("f").unwrap(), 0o644, vec![7; 2000]);
        w.append(&entry).unwrap();
        let tar = w.finish().unwrap();
        let err = read_entries(&tar[..1000]).next().unwrap().unwrap_err();
        assert!(
            matches!(err, TarReadError::Truncated { offset: 0 }),
            "{err}"
        );
    }
}
