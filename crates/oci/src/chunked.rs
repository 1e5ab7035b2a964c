//! `zstd:chunked` layers: zstd blobs that engines with partial pulls (podman,
//! CRI-O: containers/storage) fetch file by file with HTTP range requests, and
//! that every other engine reads as an ordinary `tar+zstd` layer.
//!
//! # The format
//!
//! The blob is a sequence of zstd frames whose decompressed bytes, concatenated,
//! are exactly the layer's tar (so its diff_id is the plain tar's):
//!
//! ```text
//! [frame: tar headers (and the previous file's padding)] [frame: file 1's content]
//! [frame: padding + next headers]  [frame: file 2's content] ...
//! [frame: last padding + the two zero blocks that end the tar]
//! [skippable frame: the TOC, JSON compressed as one zstd frame]
//! [skippable frame: the tar-split, JSON lines compressed as one zstd frame]
//! [skippable frame: the 64-byte footer]
//! ```
//!
//! Every regular file with content has its bytes, and nothing else, in one frame
//! of its own, so `bytes=offset-endOffset` of the blob decompresses to the file.
//! Headers, PAX records and padding sit in the frames between. Skippable frames
//! (magic `0x184D2A50`) are ignored by every zstd decoder, which is what keeps the
//! blob plain zstd for engines that know nothing of this.
//!
//! The TOC (containers/storage calls it the manifest) is `{"version":1,
//! "entries":[...],"tarSplitDigest":"sha256:..."}`, one entry per tar entry in tar
//! order: `type` (`reg`, `dir`, `symlink`, `hardlink`, `char`, `block`, `fifo`),
//! `name` (as in the tar, folders with their trailing `/`), `linkName`, `mode`
//! (permission bits), `size`, `uid`, `gid`, `modtime` (RFC 3339), and for files
//! with content `digest` (sha256 of the content), `offset` and `endOffset` (the
//! content frame's place in the blob). Zero values are left out, as Go's
//! `omitempty` does. Big files are not split into chunks: one frame per file is
//! what every reader accepts, and the TOC's optional `chunk*` fields only add
//! dedup inside a changed big file.
//!
//! The tar-split (vbatts/tar-split's format) holds every tar byte that is not file
//! content, in `{"type":2,"payload":BASE64}` segments, and for each tar entry a
//! `{"type":1,"name":...,"size":...,"payload":CRC-64/ISO}` line: with the files it
//! rebuilds the exact tar. `tarSplitDigest` is the sha256 of its compressed bytes.
//! A layer with a name that is not UTF-8 gets no tar-split (JSON cannot carry the
//! name, so the TOC and the tar-split could not agree).
//!
//! The footer holds, as little-endian u64: the TOC's offset (past its skippable
//! frame's 8-byte header), compressed and uncompressed lengths, type 1; the
//! tar-split's offset, compressed and uncompressed lengths; then the magic
//! `GNUlInUx`. The layer descriptor carries the same facts as annotations:
//! `…zstd-chunked.manifest-checksum` (sha256 of the compressed TOC bytes),
//! `…zstd-chunked.manifest-position` (`offset:length:uncompressed:1`),
//! `…tarsplit-position` (`offset:length:uncompressed`) and `…tarsplit-checksum`.
//!
//! # Which version, and which podman reads it
//!
//! The layout is containers/storage's current one (1.51 and later); the
//! annotations and TOC keys are written so that every version since 1.43 finds
//! what it reads, and every version reads the annotations rather than the footer
//! when they are there:
//!
//! - podman 4.3 (containers/storage 1.43, Debian 12's podman): reads the
//!   `io.containers.zstd-chunked.*` annotations and entry keys `UID`, `GID`,
//!   `ModTime` (its TOC parser misses the lower-case keys its own writer emits,
//!   so without these a partial pull gives every file uid 0 and the pull time as
//!   mtime); it ignores the tar-split. Partial pulls work: the e2e test
//!   (`crates/gpubox/tests/e2e/chunked.rs`) checks it with this podman.
//! - podman 4.4 to 5.3 (storage 1.44 to 1.56): read the renamed
//!   `io.github.containers.zstd-chunked.*` annotations and the lower-case keys;
//!   from 1.47 on they also take the tar-split (checked against the
//!   `tarsplit-checksum` annotation) to rebuild the tar on export. Both annotation
//!   sets and both key spellings are written (newer parsers fold case and keep
//!   the last value, which is the same).
//! - podman 5.4 and later (storage 1.57+) need the tar-split to pull partially:
//!   they check the TOC against its headers, and compute the diff_id from it and
//!   the fetched files. Without one they would fall back to a full pull.
//!
//! Only podman 4.3 is run against these blobs here; for the later versions the
//! unit tests check the tar-split the way their reader uses it (the segments
//! start with whole headers past the previous file's padding, the CRCs are Go's,
//! and segments plus files give back the tar byte for byte).
//!
//! # Determinism
//!
//! The bytes depend only on the tar: zstd level 3 ([`ZSTD_LEVEL`]), one
//! single-threaded context, frame checksums on, no pledged sizes; the TOC is
//! serialised with a fixed key order and no whitespace, and times come from the
//! tar's own mtime. Frame boundaries follow tar entry boundaries, which the
//! deterministic tar writer fixes.
//!
//! # Trust
//!
//! podman 4.3 checks the compressed TOC against the checksum annotation (which the
//! manifest's digest covers) and every file it fetches against the TOC's sha256;
//! it does not check the layer's diff_id on a partial pull, so what it extracts is
//! only as good as the TOC. Ours is written from the same tar stream, so the files
//! are the tar's files. Storage 1.57+ closes that gap: the TOC's `tarSplitDigest`
//! covers the tar-split, whose headers must match the TOC, and the tar rebuilt
//! from it and the fetched files must have the config's diff_id.
//!
//! # Why not eStargz too
//!
//! eStargz is the gzip-compatible equivalent (containerd's stargz snapshotter,
//! and podman reads it as well). It is not offered: a gzip stream of one member per
//! file compresses worse than zstd, gzip decompression is several times slower
//! than zstd's on a full pull, Docker and plain containerd do not pull it lazily
//! (they need the stargz snapshotter installed and configured, and then they
//! mount it through FUSE rather than storing it), and podman, the engine that
//! pulls partially here, already reads zstd:chunked. Engines that cannot read zstd
//! at all (Docker before 23) are served by `compression = "gzip"`. Should the
//! stargz snapshotter matter, eStargz can be written from the same entry
//! boundaries this module finds.

use std::collections::BTreeMap;
use std::io::{self, Write};

use sha2::{Digest as _, Sha256};
use zstd::zstd_safe::{self, zstd_sys::ZSTD_EndDirective, CCtx, CParameter, InBuffer, OutBuffer};

use crate::compress::ZSTD_LEVEL;
use crate::digest::Digest;
use crate::tar::read::{apply_pax, parse_number, until_nul, Overrides};

/// The annotations of podman 4.4 and later.
pub const MANIFEST_CHECKSUM_KEY: &str = "io.github.containers.zstd-chunked.manifest-checksum";
pub const MANIFEST_POSITION_KEY: &str = "io.github.containers.zstd-chunked.manifest-position";
/// The same, as podman 4.3 (containers/storage 1.43) names them.
pub const LEGACY_MANIFEST_CHECKSUM_KEY: &str = "io.containers.zstd-chunked.manifest-checksum";
pub const LEGACY_MANIFEST_POSITION_KEY: &str = "io.containers.zstd-chunked.manifest-position";

/// Where the tar-split is, and its sha256 (podman 4.6 to 5.3 check this one;
/// later ones the TOC's `tarSplitDigest`).
pub const TARSPLIT_POSITION_KEY: &str = "io.github.containers.zstd-chunked.tarsplit-position";
pub const TARSPLIT_CHECKSUM_KEY: &str = "io.github.containers.zstd-chunked.tarsplit-checksum";

/// The zstd skippable frame magic that readers skip, little-endian.
const SKIPPABLE_MAGIC: [u8; 4] = [0x50, 0x2a, 0x4d, 0x18];
/// What ends the footer: `GNUlInUx`.
pub const FOOTER_MAGIC: [u8; 8] = *b"GNUlInUx";
/// Bytes of footer data (in its own skippable frame).
pub const FOOTER_SIZE: usize = 64;
/// The TOC format: CRFS-compatible JSON.
const MANIFEST_TYPE_CRFS: u64 = 1;

const BLOCK: usize = 512;
/// Compressed bytes gathered before they are passed on.
const OUT_BUFFER: usize = 128 * 1024;

/// Where the tar parser is.
enum State {
    /// Collecting a 512-byte header; `filled` bytes so far.
    Header { filled: usize },
    /// A PAX extended header's records: `remaining` bytes of data, then padding.
    /// A global header's (`global`) are passed through and not read.
    Pax {
        remaining: u64,
        padding: u64,
        global: bool,
    },
    /// A regular file's content.
    Content { remaining: u64, padding: u64 },
    /// Zero bytes after a file's content, up to the block boundary.
    Padding { remaining: u64 },
    /// After the first zero block: the rest of the archive's end.
    Trailer,
}

/// One TOC entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TocEntry {
    pub kind: &'static str,
    pub name: Vec<u8>,
    pub link_name: Vec<u8>,
    pub mode: u64,
    pub size: u64,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// sha256 of the content, files with content only.
    pub digest: Option<Digest>,
    /// The content frame's start and end in the blob.
    pub offset: u64,
    pub end_offset: u64,
}

/// What a finished blob adds to its layer descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedInfo {
    pub annotations: BTreeMap<String, String>,
    pub entries: Vec<TocEntry>,
}

/// Takes a tar stream (as [`crate::tar::TarWriter`] writes it) and writes the
/// zstd:chunked blob of it to `W`, finding entry boundaries by reading the tar
/// headers as they pass. Call [`ChunkedWriter::finish`] once the tar is complete.
pub struct ChunkedWriter<W: Write> {
    out: W,
    /// Bytes written to `out` so far.
    written: u64,
    cctx: CCtx<'static>,
    zbuf: Vec<u8>,
    /// Whether the current frame has had input.
    frame_open: bool,
    state: State,
    header: Box<[u8; BLOCK]>,
    pax: Vec<u8>,
    /// Overrides from the last PAX header, for the next entry.
    pax_values: Overrides,
    content_hash: Sha256,
    entries: Vec<TocEntry>,
    split: TarSplit,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)))
}

impl<W: Write> ChunkedWriter<W> {
    pub fn new(out: W) -> io::Result<ChunkedWriter<W>> {
        Ok(ChunkedWriter {
            out,
            written: 0,
            cctx: new_cctx()?,
            zbuf: Vec::with_capacity(OUT_BUFFER),
            frame_open: false,
            state: State::Header { filled: 0 },
            header: Box::new([0; BLOCK]),
            pax: Vec::new(),
            pax_values: Overrides::default(),
            content_hash: Sha256::new(),
            entries: Vec::new(),
            split: TarSplit::new()?,
        })
    }

    /// Ends the last frame, appends the TOC, the tar-split and the footer, and
    /// returns the writer with the descriptor annotations and the TOC entries.
    pub fn finish(mut self) -> io::Result<(W, ChunkedInfo)> {
        if !matches!(self.state, State::Trailer) {
            return Err(invalid(
                "the layer tar ended before its end-of-archive blocks".to_owned(),
            ));
        }
        self.end_frame()?;
        self.split.segment()?;
        let split = self.split.finish()?;
        let split_digest = split.as_ref().map(|(data, _)| Digest::of(data));
        let toc = toc_json(&self.entries, split_digest.as_ref());
        let mut compressed = Vec::new();
        let mut cctx = new_cctx()?;
        compress_frame(&mut cctx, &toc, &mut compressed)?;
        let toc_offset = self.written + 8;
        self.write_skippable(&compressed)?;
        let (split_offset, split_length, split_uncompressed) = match &split {
            Some((data, uncompressed)) => {
                let offset = self.written + 8;
                self.write_skippable(data)?;
                (offset, data.len() as u64, *uncompressed)
            }
            None => (0, 0, 0),
        };
        let mut footer = Vec::with_capacity(FOOTER_SIZE);
        for n in [
            toc_offset,
            compressed.len() as u64,
            toc.len() as u64,
            MANIFEST_TYPE_CRFS,
            split_offset,
            split_length,
            split_uncompressed,
        ] {
            footer.extend_from_slice(&n.to_le_bytes());
        }
        footer.extend_from_slice(&FOOTER_MAGIC);
        self.write_skippable(&footer)?;
        self.out.flush()?;
        let checksum = Digest::of(&compressed).to_string();
        let position = format!(
            "{toc_offset}:{}:{}:{MANIFEST_TYPE_CRFS}",
            compressed.len(),
            toc.len()
        );
        let mut annotations = BTreeMap::new();
        for (key, value) in [
            (MANIFEST_CHECKSUM_KEY, &checksum),
            (MANIFEST_POSITION_KEY, &position),
            (LEGACY_MANIFEST_CHECKSUM_KEY, &checksum),
            (LEGACY_MANIFEST_POSITION_KEY, &position),
        ] {
            annotations.insert(key.to_owned(), value.clone());
        }
        if let Some(digest) = split_digest {
            annotations.insert(
                TARSPLIT_POSITION_KEY.to_owned(),
                format!("{split_offset}:{split_length}:{split_uncompressed}"),
            );
            annotations.insert(TARSPLIT_CHECKSUM_KEY.to_owned(), digest.to_string());
        }
        let info = ChunkedInfo {
            annotations,
            entries: self.entries,
        };
        Ok((self.out, info))
    }

    fn write_skippable(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(&SKIPPABLE_MAGIC)?;
        self.out.write_all(&(data.len() as u32).to_le_bytes())?;
        self.out.write_all(data)?;
        self.written += 8 + data.len() as u64;
        Ok(())
    }

    /// Compresses `data` into the current frame.
    fn compress(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.frame_open = true;
        let mut input = InBuffer::around(data);
        while input.pos < data.len() {
            let pos = self.zbuf.len();
            let mut output = OutBuffer::around_pos(&mut self.zbuf, pos);
            self.cctx
                .compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_continue)
                .map_err(zstd_error)?;
            if self.zbuf.len() == self.zbuf.capacity() {
                self.flush_zbuf()?;
            }
        }
        Ok(())
    }

    /// Ends the current frame, if it has had input, and passes its bytes on, so
    /// that `written` is where the next frame starts.
    fn end_frame(&mut self) -> io::Result<()> {
        if !self.frame_open {
            return Ok(());
        }
        loop {
            if self.zbuf.len() == self.zbuf.capacity() {
                self.flush_zbuf()?;
            }
            let pos = self.zbuf.len();
            let mut output = OutBuffer::around_pos(&mut self.zbuf, pos);
            let left = self
                .cctx
                .compress_stream2(
                    &mut output,
                    &mut InBuffer::around(&[]),
                    ZSTD_EndDirective::ZSTD_e_end,
                )
                .map_err(zstd_error)?;
            if left == 0 {
                break;
            }
        }
        self.flush_zbuf()?;
        self.frame_open = false;
        Ok(())
    }

    fn flush_zbuf(&mut self) -> io::Result<()> {
        self.out.write_all(&self.zbuf)?;
        self.written += self.zbuf.len() as u64;
        self.zbuf.clear();
        Ok(())
    }

    /// A complete header block is in `self.header`.
    fn on_header(&mut self) -> io::Result<()> {
        let h = &*self.header;
        if h.iter().all(|&b| b == 0) {
            self.state = State::Trailer;
            return Ok(());
        }
        let typeflag = h[156];
        let pax = std::mem::take(&mut self.pax_values);
        let size = match pax.size {
            Some(size) => size,
            None => header_number(&h[124..136])?,
        };
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        if typeflag == b'x' || typeflag == b'g' {
            self.pax.clear();
            self.state = if size == 0 {
                State::Header { filled: 0 }
            } else {
                State::Pax {
                    remaining: size,
                    padding,
                    global: typeflag == b'g',
                }
            };
            // A PAX header applies to the next entry only; `pax` is dropped.
            if typeflag == b'g' {
                self.pax_values = pax;
            }
            return Ok(());
        }
        let kind = match typeflag {
            b'0' | 0 => "reg",
            b'1' => "hardlink",
            b'2' => "symlink",
            b'3' => "char",
            b'4' => "block",
            b'5' => "dir",
            b'6' => "fifo",
            other => {
                return Err(invalid(format!(
                    "zstd:chunked cannot describe tar entries of type {:?}",
                    other as char
                )))
            }
        };
        let name = match pax.path {
            Some(path) => path,
            None => {
                let mut name = Vec::new();
                if &h[257..263] == b"ustar\0" && h[345] != 0 {
                    name.extend_from_slice(until_nul(&h[345..500]));
                    name.push(b'/');
                }
                name.extend_from_slice(until_nul(&h[0..100]));
                name
            }
        };
        let link_name = pax.link.unwrap_or_else(|| until_nul(&h[157..257]).to_vec());
        let entry = TocEntry {
            kind,
            name,
            link_name,
            mode: header_number(&h[100..108])?,
            size: if kind == "reg" { size } else { 0 },
            uid: match pax.uid {
                Some(uid) => uid,
                None => header_number(&h[108..116])?,
            },
            gid: match pax.gid {
                Some(gid) => gid,
                None => header_number(&h[116..124])?,
            },
            mtime: match pax.mtime {
                Some(mtime) => mtime,
                None => header_number(&h[136..148])?,
            },
            digest: None,
            offset: 0,
            end_offset: 0,
        };
        let has_content = kind == "reg" && size > 0;
        self.split.segment()?;
        if !has_content {
            self.split.file(&entry.name, 0, None)?;
        }
        self.split.check_names(&entry);
        self.entries.push(entry);
        self.state = if has_content {
            // The content gets a frame of its own.
            self.end_frame()?;
            self.entries.last_mut().expect("just pushed").offset = self.written;
            self.content_hash = Sha256::new();
            self.split.crc = !0;
            State::Content {
                remaining: size,
                padding,
            }
        } else if size > 0 {
            // Data after a non-file header (hard links may carry some): kept in
            // the metadata frame like padding.
            State::Padding {
                remaining: size + padding,
            }
        } else {
            State::Header { filled: 0 }
        };
        Ok(())
    }

    fn on_pax_done(&mut self) -> io::Result<()> {
        let records = std::mem::take(&mut self.pax);
        let mut values = Overrides::default();
        apply_pax(&records, &mut values).map_err(|e| invalid(format!("a PAX header: {e}")))?;
        self.pax_values = values;
        Ok(())
    }

    fn on_content_done(&mut self, padding: u64) -> io::Result<()> {
        self.end_frame()?;
        let hash = std::mem::replace(&mut self.content_hash, Sha256::new());
        let entry = self.entries.last_mut().expect("a file entry");
        let crc = !self.split.crc;
        self.split.file(&entry.name, entry.size, Some(crc))?;
        entry.end_offset = self.written;
        entry.digest = Some(
            format!("sha256:{}", hex::encode(hash.finalize()))
                .parse()
                .expect("a sha256 digest"),
        );
        self.state = if padding > 0 {
            State::Padding { remaining: padding }
        } else {
            State::Header { filled: 0 }
        };
        Ok(())
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut data = buf;
        while !data.is_empty() {
            match self.state {
                State::Header { filled } => {
                    let n = (BLOCK - filled).min(data.len());
                    self.header[filled..filled + n].copy_from_slice(&data[..n]);
                    self.compress(&data[..n])?;
                    self.split.raw.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if filled + n == BLOCK {
                        self.on_header()?;
                    } else {
                        self.state = State::Header { filled: filled + n };
                    }
                }
                State::Pax {
                    remaining,
                    padding,
                    global,
                } => {
                    let n = remaining.min(data.len() as u64) as usize;
                    if !global {
                        self.pax.extend_from_slice(&data[..n]);
                    }
                    self.compress(&data[..n])?;
                    self.split.raw.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    let remaining = remaining - n as u64;
                    if remaining == 0 {
                        if !global {
                            self.on_pax_done()?;
                        }
                        self.state = if padding > 0 {
                            State::Padding { remaining: padding }
                        } else {
                            State::Header { filled: 0 }
                        };
                    } else {
                        self.state = State::Pax {
                            remaining,
                            padding,
                            global,
                        };
                    }
                }
                State::Content { remaining, padding } => {
                    let n = remaining.min(data.len() as u64) as usize;
                    self.content_hash.update(&data[..n]);
                    self.compress(&data[..n])?;
                    self.split.crc = crc64_update(self.split.crc, &data[..n]);
                    data = &data[n..];
                    let remaining = remaining - n as u64;
                    if remaining == 0 {
                        self.on_content_done(padding)?;
                    } else {
                        self.state = State::Content { remaining, padding };
                    }
                }
                State::Padding { remaining } => {
                    let n = remaining.min(data.len() as u64) as usize;
                    self.compress(&data[..n])?;
                    self.split.raw.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::Header { filled: 0 }
                    } else {
                        State::Padding { remaining }
                    };
                }
                State::Trailer => {
                    self.compress(data)?;
                    self.split.raw.extend_from_slice(data);
                    data = &[];
                }
            }
        }
        Ok(buf.len())
    }

    /// Compressed bytes are passed on at frame ends and when the buffer fills;
    /// flushing mid-frame would change the blob's bytes, so it only flushes `W`.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The tar-split (vbatts/tar-split's JSON lines, as containers/storage reads
/// them): the tar's bytes other than file contents in `type: 2` segments, and a
/// `type: 1` entry per tar entry with its name, size and the CRC-64 (ISO) of its
/// content. With the files it gives back the exact tar, which is how podman 5.4+
/// computes the diff_id of a partial pull. Kept zstd-compressed as it is written.
struct TarSplit {
    json: zstd::stream::write::Encoder<'static, Vec<u8>>,
    uncompressed: u64,
    position: u64,
    /// Header, padding and trailer bytes since the last entry.
    raw: Vec<u8>,
    /// The running CRC-64 of the current file (before the final inversion).
    crc: u64,
    /// False once a name cannot be written in it as it is (not UTF-8): then
    /// there is no tar-split, and newer podman pulls the layer whole.
    names_ok: bool,
}

impl TarSplit {
    fn new() -> io::Result<TarSplit> {
        let mut json = zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)?;
        json.include_checksum(true)?;
        Ok(TarSplit {
            json,
            uncompressed: 0,
            position: 0,
            raw: Vec::new(),
            crc: !0,
            names_ok: true,
        })
    }

    fn line(&mut self, line: &str) -> io::Result<()> {
        self.json.write_all(line.as_bytes())?;
        self.uncompressed += line.len() as u64;
        self.position += 1;
        Ok(())
    }

    /// Writes the pending raw bytes, if any, as a segment.
    fn segment(&mut self) -> io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        let line = format!(
            "{{\"type\":2,\"payload\":\"{}\",\"position\":{}}}\n",
            base64(&self.raw),
            self.position
        );
        self.raw.clear();
        self.line(&line)
    }

    /// The entry for one tar entry; `crc` for files with content.
    fn file(&mut self, name: &[u8], size: u64, crc: Option<u64>) -> io::Result<()> {
        let mut line = format!("{{\"type\":1,\"name\":{}", json_string(name));
        if size > 0 {
            line.push_str(&format!(",\"size\":{size}"));
        }
        match crc {
            Some(crc) => line.push_str(&format!(",\"payload\":\"{}\"", base64(&crc.to_be_bytes()))),
            None => line.push_str(",\"payload\":null"),
        }
        line.push_str(&format!(",\"position\":{}}}\n", self.position));
        self.line(&line)
    }

    fn check_names(&mut self, entry: &TocEntry) {
        if std::str::from_utf8(&entry.name).is_err()
            || std::str::from_utf8(&entry.link_name).is_err()
        {
            self.names_ok = false;
        }
    }

    /// The compressed tar-split and its uncompressed size, or `None` when a name
    /// ruled it out.
    fn finish(&mut self) -> io::Result<Option<(Vec<u8>, u64)>> {
        self.json.do_finish()?;
        let data = std::mem::take(self.json.get_mut());
        Ok(self.names_ok.then_some((data, self.uncompressed)))
    }
}

/// CRC-64 with the ISO polynomial, as Go's `hash/crc64` computes it (reflected);
/// `crc` is the running value, started at `!0` and inverted at the end.
fn crc64_update(mut crc: u64, data: &[u8]) -> u64 {
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u64; 256];
        for (i, slot) in table.iter_mut().enumerate() {
            let mut crc = i as u64;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xD800_0000_0000_0000
                } else {
                    crc >> 1
                };
            }
            *slot = crc;
        }
        table
    });
    for &b in data {
        crc = table[((crc as u8) ^ b) as usize] ^ (crc >> 8);
    }
    crc
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn new_cctx() -> io::Result<CCtx<'static>> {
    let mut cctx = CCtx::try_create().ok_or_else(|| io::Error::other("zstd: out of memory"))?;
    for parameter in [
        CParameter::CompressionLevel(ZSTD_LEVEL),
        CParameter::ChecksumFlag(true),
        CParameter::NbWorkers(0),
    ] {
        cctx.set_parameter(parameter).map_err(zstd_error)?;
    }
    Ok(cctx)
}

/// `data` as one complete zstd frame appended to `out`.
fn compress_frame(cctx: &mut CCtx<'static>, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let mut input = InBuffer::around(data);
    loop {
        out.reserve(OUT_BUFFER);
        let pos = out.len();
        let mut output = OutBuffer::around_pos(out, pos);
        let left = cctx
            .compress_stream2(&mut output, &mut input, ZSTD_EndDirective::ZSTD_e_end)
            .map_err(zstd_error)?;
        if left == 0 && input.pos == data.len() {
            return Ok(());
        }
    }
}

/// A NUL-terminated header field's bytes.
/// A header number field (octal, or GNU base-256).
fn header_number(field: &[u8]) -> io::Result<u64> {
    parse_number(field).map_err(|e| invalid(format!("a tar header number: {e}")))
}

/// The TOC's JSON: fixed key order, no whitespace, zero values left out.
fn toc_json(entries: &[TocEntry], tar_split: Option<&Digest>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * 160);
    out.extend_from_slice(b"{\"version\":1,\"entries\":[");
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let mut fields: Vec<(&str, String)> = vec![
            ("type", json_string(e.kind.as_bytes())),
            ("name", json_string(&e.name)),
        ];
        // Numbers are left out where zero, as Go's `omitempty` does.
        let numbers = |fields: &mut Vec<(&str, String)>, numbers: [(&'static str, u64); 2]| {
            for (key, value) in numbers {
                if value != 0 {
                    fields.push((key, value.to_string()));
                }
            }
        };
        if !e.link_name.is_empty() {
            fields.push(("linkName", json_string(&e.link_name)));
        }
        numbers(&mut fields, [("mode", e.mode), ("size", e.size)]);
        numbers(&mut fields, [("uid", e.uid), ("gid", e.gid)]);
        let modtime = rfc3339(e.mtime);
        if let Some(modtime) = &modtime {
            fields.push(("modtime", modtime.clone()));
        }
        if let Some(digest) = &e.digest {
            fields.push(("digest", json_string(digest.to_string().as_bytes())));
        }
        numbers(
            &mut fields,
            [("offset", e.offset), ("endOffset", e.end_offset)],
        );
        // containers/storage 1.43 (podman 4.3) reads only these spellings.
        numbers(&mut fields, [("UID", e.uid), ("GID", e.gid)]);
        if let Some(modtime) = modtime {
            fields.push(("ModTime", modtime));
        }
        out.push(b'{');
        for (j, (key, value)) in fields.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'}');
    }
    out.push(b']');
    if let Some(digest) = tar_split {
        out.extend_from_slice(format!(",\"tarSplitDigest\":\"{digest}\"").as_bytes());
    }
    out.push(b'}');
    out
}

/// `"..."` with JSON escapes; bytes that are not UTF-8 become U+FFFD, as Go's
/// encoder writes them (such names cannot be fetched lazily, nor by Go's tar).
fn json_string(bytes: &[u8]) -> String {
    serde_json::to_string(&String::from_utf8_lossy(bytes)).expect("a string serialises")
}

/// `"1970-01-01T00:00:00Z"`, or `None` past what RFC 3339 can write.
fn rfc3339(seconds: u64) -> Option<String> {
    let seconds = i64::try_from(seconds).ok()?;
    let t = jiff::Timestamp::from_second(seconds).ok()?;
    Some(format!("\"{}\"", t.strftime("%Y-%m-%dT%H:%M:%SZ")))
}

/// The zstd:chunked annotations among a layer descriptor's `annotations`: those
/// that describe the blob's bytes and must travel with it.
pub fn blob_annotations(annotations: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    annotations
        .iter()
        .filter(|(key, _)| is_blob_annotation(key))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Whether a descriptor with `annotations` names a zstd:chunked table of contents.
pub fn is_chunked(annotations: &BTreeMap<String, String>) -> bool {
    [MANIFEST_POSITION_KEY, LEGACY_MANIFEST_POSITION_KEY]
        .iter()
        .any(|key| annotations.contains_key(*key))
}

/// Whether `key` is one of the annotations a zstd:chunked blob carries.
fn is_blob_annotation(key: &str) -> bool {
    key.starts_with("io.github.containers.zstd-chunked.")
        || key.starts_with("io.containers.zstd-chunked.")
}

/// Reads the TOC back out of a blob (for tests and `inspect`): the JSON bytes,
/// found through the footer.
pub fn read_toc(blob: &[u8]) -> io::Result<Vec<u8>> {
    let footer_frame = 8 + FOOTER_SIZE;
    if blob.len() < footer_frame {
        return Err(invalid("the blob is too small for a footer".to_owned()));
    }
    let footer = &blob[blob.len() - FOOTER_SIZE..];
    let head = &blob[blob.len() - footer_frame..blob.len() - FOOTER_SIZE];
    if head[..4] != SKIPPABLE_MAGIC || footer[56..64] != FOOTER_MAGIC {
        return Err(invalid("no zstd:chunked footer".to_owned()));
    }
    let word = |i: usize| u64::from_le_bytes(footer[i * 8..i * 8 + 8].try_into().unwrap());
    let (offset, length) = (word(0) as usize, word(1) as usize);
    let compressed = blob
        .get(offset..offset + length)
        .ok_or_else(|| invalid("the footer points past the blob".to_owned()))?;
    zstd::stream::decode_all(compressed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Entry, EntryKind, ImagePath};
    use crate::tar::TarWriter;
    use std::io::Read;

    fn p(s: &str) -> ImagePath {
        ImagePath::new(s).unwrap()
    }

    /// Entries covering every kind: empty and big files, a hard link, a
    /// symlink, a long name (PAX), a non-root owner.
    fn entries() -> Vec<Entry> {
        let big: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let long = format!("nix/store/{}-long", "x".repeat(150));
        let mut owned = Entry::bytes(p("home/user/notes"), 0o600, &b"mine\n"[..]);
        owned.uid = 1000;
        owned.gid = 100;
        vec![
            Entry::directory(p("bin"), 0o755),
            Entry::bytes(p("bin/big"), 0o755, big),
            Entry::bytes(p("bin/empty"), 0o644, &b""[..]),
            Entry {
                path: p("bin/link"),
                kind: EntryKind::HardLink {
                    target: p("bin/big"),
                },
                mode: 0o755,
                uid: 0,
                gid: 0,
            },
            Entry::symlink(p("bin/sh"), "busybox"),
            Entry::bytes(
                p("etc"),
                0o4755,
                &b"setuid, 1 byte past a block".repeat(19)[..],
            ),
            Entry::directory(p("home"), 0o755),
            Entry::directory(p("home/user"), 0o700),
            owned,
            Entry::directory(p("nix"), 0o755),
            Entry::directory(p("nix/store"), 0o755),
            Entry::bytes(p(&long), 0o444, &b"long name\n"[..]),
        ]
    }

    fn tar_of(entries: &[Entry]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new(), 1_700_000_000);
        for e in entries {
            w.append(e).unwrap();
        }
        w.finish().unwrap()
    }

    fn chunked_of(entries: &[Entry]) -> (Vec<u8>, ChunkedInfo) {
        let mut w = TarWriter::new(ChunkedWriter::new(Vec::new()).unwrap(), 1_700_000_000);
        for e in entries {
            w.append(e).unwrap();
        }
        w.finish().unwrap().finish().unwrap()
    }

    fn content(e: &Entry) -> Option<&[u8]> {
        match &e.kind {
            EntryKind::File {
                source: crate::entry::FileSource::Bytes(b),
                ..
            } => Some(b),
            _ => None,
        }
    }

    #[test]
    fn the_blob_decompresses_to_the_plain_tar() {
        let entries = entries();
        let (blob, _) = chunked_of(&entries);
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&blob[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, tar_of(&entries));
        assert_eq!(Digest::of(&back), Digest::of(&tar_of(&entries)));
    }

    #[test]
    fn toc_offsets_point_at_frames_holding_each_file() {
        let entries = entries();
        let (blob, info) = chunked_of(&entries);
        let toc: serde_json::Value = serde_json::from_slice(&read_toc(&blob).unwrap()).unwrap();
        assert_eq!(toc["version"], 1);
        let listed = toc["entries"].as_array().unwrap();
        assert_eq!(listed.len(), entries.len());
        for (e, t) in entries.iter().zip(listed) {
            let name = t["name"].as_str().unwrap();
            assert_eq!(
                name.trim_end_matches('/'),
                String::from_utf8_lossy(e.path.as_bytes())
            );
            assert_eq!(t["mode"].as_u64().unwrap_or(0), u64::from(e.mode));
            assert_eq!(t["ModTime"], "2023-11-14T22:13:20Z");
            assert_eq!(t["modtime"], t["ModTime"]);
            match &e.kind {
                EntryKind::Directory => {
                    assert_eq!(t["type"], "dir");
                    assert!(name.ends_with('/'));
                }
                EntryKind::Symlink { .. } => {
                    assert_eq!(
                        (&t["type"], &t["linkName"]),
                        (&"symlink".into(), &"busybox".into())
                    );
                }
                EntryKind::HardLink { .. } => {
                    assert_eq!(
                        (&t["type"], &t["linkName"]),
                        (&"hardlink".into(), &"bin/big".into())
                    );
                }
                EntryKind::File { size, .. } => {
                    assert_eq!(t["type"], "reg");
                    assert_eq!(t["size"].as_u64().unwrap_or(0), *size);
                    let data = content(e).unwrap();
                    if data.is_empty() {
                        assert!(t.get("digest").is_none() && t.get("offset").is_none());
                        continue;
                    }
                    assert_eq!(t["digest"], Digest::of(data).to_string());
                    let (from, to) = (
                        t["offset"].as_u64().unwrap() as usize,
                        t["endOffset"].as_u64().unwrap() as usize,
                    );
                    // One range, decompressed on its own, is the file.
                    let got = zstd::stream::decode_all(&blob[from..to]).unwrap();
                    assert_eq!(Digest::of(&got), Digest::of(data), "{name}");
                }
            }
        }
        let owned = listed
            .iter()
            .find(|t| t["name"] == "home/user/notes")
            .unwrap();
        assert_eq!(
            (owned["uid"].as_u64(), owned["UID"].as_u64()),
            (Some(1000), Some(1000))
        );
        assert_eq!(
            (owned["gid"].as_u64(), owned["GID"].as_u64()),
            (Some(100), Some(100))
        );

        let checksum = Digest::of(&{
            let pos = &info.annotations[MANIFEST_POSITION_KEY];
            let parts: Vec<usize> = pos.split(':').map(|x| x.parse().unwrap()).collect();
            assert_eq!(parts[3], 1);
            assert_eq!(&blob[parts[0] - 8..parts[0] - 4], &SKIPPABLE_MAGIC);
            blob[parts[0]..parts[0] + parts[1]].to_vec()
        });
        assert_eq!(
            info.annotations[MANIFEST_CHECKSUM_KEY],
            checksum.to_string()
        );
        assert_eq!(
            info.annotations[LEGACY_MANIFEST_CHECKSUM_KEY],
            info.annotations[MANIFEST_CHECKSUM_KEY]
        );
        assert_eq!(
            info.annotations[LEGACY_MANIFEST_POSITION_KEY],
            info.annotations[MANIFEST_POSITION_KEY]
        );
        assert_eq!(&blob[blob.len() - 8..], b"GNUlInUx");
    }

    #[test]
    fn the_same_entries_give_the_same_bytes() {
        let (a, ia) = chunked_of(&entries());
        let (b, ib) = chunked_of(&entries());
        assert_eq!(Digest::of(&a), Digest::of(&b));
        assert_eq!(ia, ib);
    }

    #[test]
    fn any_write_sizes_give_the_same_bytes() {
        let tar = tar_of(&entries());
        let whole = {
            let mut w = ChunkedWriter::new(Vec::new()).unwrap();
            w.write_all(&tar).unwrap();
            w.finish().unwrap().0
        };
        for step in [1usize, 7, 511, 513, 100_000] {
            let mut w = ChunkedWriter::new(Vec::new()).unwrap();
            for piece in tar.chunks(step) {
                w.write_all(piece).unwrap();
            }
            assert_eq!(w.finish().unwrap().0, whole, "writes of {step} bytes");
        }
    }

    #[test]
    fn a_truncated_tar_is_refused() {
        let tar = tar_of(&entries());
        let mut w = ChunkedWriter::new(Vec::new()).unwrap();
        w.write_all(&tar[..tar.len() / 2]).unwrap();
        assert!(w.finish().is_err());
    }

    #[test]
    fn a_layer_written_through_the_blob_store_carries_the_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::blob::BlobStore::open(dir.path()).unwrap();
        let plain = store
            .write_layer(
                entries().into_iter().map(Ok),
                crate::Compression::Zstd,
                1,
                &|_| {},
            )
            .unwrap();
        let chunked = store
            .write_layer(
                entries().into_iter().map(Ok),
                crate::Compression::ZstdChunked,
                1,
                &|_| {},
            )
            .unwrap();
        assert_eq!(chunked.diff_id, plain.diff_id);
        assert_eq!(chunked.uncompressed_size, plain.uncompressed_size);
        assert_eq!(chunked.entry_count, plain.entry_count);
        assert_ne!(chunked.digest, plain.digest);
        assert!(plain.annotations.is_empty());
        assert_eq!(chunked.annotations.len(), 6);
        let blob = std::fs::read(store.path(&chunked.digest)).unwrap();
        assert_eq!(Digest::of(&blob), chunked.digest);
        assert_eq!(blob.len() as u64, chunked.size);
        let json = serde_json::to_string(&chunked).unwrap();
        assert!(json.contains("zstd:chunked") && json.contains(MANIFEST_CHECKSUM_KEY));
        let back: crate::blob::LayerBlob = serde_json::from_str(&json).unwrap();
        assert_eq!(back, chunked);
    }

    #[test]
    fn crc64_and_base64_match_go() {
        // Go: crc64.Checksum([]byte("123456789"), crc64.MakeTable(crc64.ISO)).
        assert_eq!(!crc64_update(!0, b"123456789"), 0xB909_56C7_75A4_1001);
        let split = [b"12345".as_slice(), b"6789"];
        let crc = split.iter().fold(!0, |crc, part| crc64_update(crc, part));
        assert_eq!(!crc, 0xB909_56C7_75A4_1001);
        for (raw, text) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
        ] {
            assert_eq!(base64(raw.as_bytes()), text);
        }
    }

    fn unbase64(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(4) {
            let digits: Vec<u8> = chunk
                .iter()
                .filter(|&&c| c != b'=')
                .map(|&c| value(c))
                .collect();
            let n = digits
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
            out.extend_from_slice(&n.to_be_bytes()[1..digits.len()]);
        }
        out
    }

    #[test]
    fn the_tar_split_and_the_files_give_back_the_tar() {
        let entries = entries();
        let tar = tar_of(&entries);
        let (blob, info) = chunked_of(&entries);
        let position: Vec<usize> = info.annotations[TARSPLIT_POSITION_KEY]
            .split(':')
            .map(|x| x.parse().unwrap())
            .collect();
        let compressed = &blob[position[0]..position[0] + position[1]];
        assert_eq!(&blob[position[0] - 8..position[0] - 4], &SKIPPABLE_MAGIC);
        let digest = Digest::of(compressed).to_string();
        assert_eq!(info.annotations[TARSPLIT_CHECKSUM_KEY], digest);
        let toc: serde_json::Value = serde_json::from_slice(&read_toc(&blob).unwrap()).unwrap();
        assert_eq!(toc["tarSplitDigest"], digest);
        let json = zstd::stream::decode_all(compressed).unwrap();
        assert_eq!(json.len(), position[2]);

        let by_name: std::collections::HashMap<String, &Entry> = entries
            .iter()
            .map(|e| (String::from_utf8_lossy(e.path.as_bytes()).into_owned(), e))
            .collect();
        let mut rebuilt = Vec::new();
        let mut files = 0;
        let mut pending_padding = 0usize;
        for (i, line) in json
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let item: serde_json::Value = serde_json::from_slice(line).unwrap();
            assert_eq!(item["position"], i as u64);
            match item["type"].as_u64().unwrap() {
                2 => {
                    let payload = unbase64(item["payload"].as_str().unwrap());
                    // What asm.IterateHeaders does: past the last file's padding
                    // a segment starts with whole header blocks.
                    let headers = &payload[pending_padding..];
                    assert!(headers.len() % BLOCK == 0, "segment {i}");
                    pending_padding = 0;
                    rebuilt.extend_from_slice(&payload);
                }
                1 => {
                    files += 1;
                    let name = item["name"].as_str().unwrap();
                    let entry = by_name[name.trim_end_matches('/')];
                    let size = item["size"].as_u64().unwrap_or(0);
                    match content(entry).filter(|c| !c.is_empty()) {
                        Some(data) => {
                            assert_eq!(size, data.len() as u64);
                            let crc = (!crc64_update(!0, data)).to_be_bytes();
                            assert_eq!(unbase64(item["payload"].as_str().unwrap()), crc);
                            rebuilt.extend_from_slice(data);
                            pending_padding = (BLOCK - data.len() % BLOCK) % BLOCK;
                        }
                        None => {
                            assert_eq!(size, 0);
                            assert!(item["payload"].is_null());
                        }
                    }
                }
                other => panic!("type {other}"),
            }
        }
        assert_eq!(files, entries.len());
        assert_eq!(rebuilt, tar);
    }

    #[test]
    fn a_name_that_is_not_utf8_leaves_out_the_tar_split() {
        let mut entries = entries();
        entries.push(Entry::bytes(
            ImagePath::new(b"z\xff").unwrap(),
            0o644,
            &b"x"[..],
        ));
        let (blob, info) = chunked_of(&entries);
        assert!(!info.annotations.contains_key(TARSPLIT_POSITION_KEY));
        let toc: serde_json::Value = serde_json::from_slice(&read_toc(&blob).unwrap()).unwrap();
        assert!(toc.get("tarSplitDigest").is_none());
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&blob[..])
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, tar_of(&entries));
    }
}
