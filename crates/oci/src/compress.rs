//! Layer compression: gzip (the default), zstd, or none, with the settings pinned so
//! the same tar always compresses to the same bytes on every machine, whatever its
//! number of cores.
//!
//! One store path is one layer, and GPU closures are dominated by a few store paths
//! of gigabytes, so one layer is compressed on all cores. What is deterministic,
//! and why:
//!
//! - gzip (level 6, zlib-rs: pure Rust, same output on every CPU, pinned through
//!   `Cargo.lock`) is written block by block, the scheme pigz made common: the tar
//!   is cut into blocks of 128 KiB of input (a constant, never derived from the
//!   thread count), and each block is compressed on its own as raw deflate by a
//!   new compressor primed with the 32 KiB of input before it
//!   (`Compress::set_dictionary`), so matches still reach across blocks. Every
//!   block but the last ends with a sync flush, which ends it on a byte boundary,
//!   so the blocks laid end to end are one deflate stream. A block's bytes are a
//!   function of its input and the 32 KiB before it only: not of the thread that
//!   compressed it, of what that thread compressed before (a reset zlib-rs
//!   compressor keeps stale window data that changes its matches, hence a new one
//!   per block), of how the input was cut into writes, or of flushes. The header
//!   is fixed (mtime 0, no name, extra flags 0, OS 255), and the trailer is the
//!   CRC-32 of the input (per-block CRCs combined in order) and its size.
//! - zstd (level 3, with a checksum, one frame per layer) always runs libzstd's
//!   multi-threaded mode, with one worker or more: its output is the same for any
//!   number of workers (jobs are cut at sizes set by the level, not by the worker
//!   count), but differs from the single-threaded mode's, which is never used.
//!   [`Encoder`]'s `flush` does not flush the zstd stream (that would end a job
//!   wherever it was called).
//!
//! Threads: gzip blocks run on a process-wide pool of one thread per available
//! core, started on first use and shared by every encoder, so layers compressed
//! in parallel (the build compresses several at once) and the blocks within each
//! share the cores instead of multiplying threads. Each encoder keeps at most 4
//! blocks per pool thread (64 at most) in flight, writes them out in input order,
//! and turns a failed or panicking block into an `io::Error`. zstd encoders share
//! one libzstd worker per core between them ([`WorkerLease`]: the first takes
//! every free one, each at least one), so a big layer alone gets all cores and
//! parallel layers do not multiply threads. [`Compression::encoder_with_threads`] picks a thread
//! count for tests and benchmarks; the bytes are the same.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

mod gzip;
mod pool;

pub use gzip::Encoder as GzipEncoder;

/// How layer tars are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
    /// zstd:chunked: zstd whose files sit in frames of their own with a table of
    /// contents, for partial pulls (see [`crate::chunked`]). Written by
    /// [`crate::blob::BlobStore::write_layer`]; [`Compression::encoder`] gives
    /// plain zstd for it.
    ZstdChunked,
}

/// gzip level: zlib's default, the balance every registry client expects.
pub const GZIP_LEVEL: u32 = 6;
/// zstd level: the library default, faster than gzip 6 and smaller.
pub const ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd | Compression::ZstdChunked => {
                "application/vnd.oci.image.layer.v1.tar+zstd"
            }
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
        }
    }

    /// The compression a layer media type says its blob has, OCI or Docker.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Some(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Some(Compression::Zstd),
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
            _ => None,
        }
    }

    /// Recognises the compression of a blob from its first bytes (for Docker
    /// archives, whose manifest does not say).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Wraps `inner` in an encoder that compresses on every core (gzip on the
    /// process-wide pool, zstd on libzstd's workers); call [`Encoder::finish`] to
    /// end the stream. The output is the same as [`Compression::encoder_with_threads`]'s
    /// for any thread count.
    pub fn encoder<W: Write>(self, inner: W) -> io::Result<Encoder<W>> {
        match self {
            Compression::Zstd | Compression::ZstdChunked => {
                let lease = WorkerLease::claim(pool::default_threads());
                let encoder = zstd_encoder(inner, lease.workers)?;
                Ok(Encoder::Zstd(encoder, Some(lease)))
            }
            _ => self.encoder_on(
                inner,
                gzip::Threads::default_pool(),
                pool::default_threads(),
            ),
        }
    }

    /// Wraps `inner` in an encoder that compresses on `threads` threads of its own
    /// (1: the calling thread alone for gzip, one libzstd worker for zstd). The
    /// bytes written do not depend on `threads`; this is for tests and benchmarks.
    pub fn encoder_with_threads<W: Write>(
        self,
        inner: W,
        threads: usize,
    ) -> io::Result<Encoder<W>> {
        let gzip_threads = match self {
            Compression::Gzip => gzip::Threads::count(threads),
            _ => gzip::Threads::Caller,
        };
        self.encoder_on(inner, gzip_threads, threads)
    }

    fn encoder_on<W: Write>(
        self,
        inner: W,
        gzip_threads: gzip::Threads,
        zstd_workers: usize,
    ) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::Gzip => Encoder::Gzip(gzip::Encoder::new(inner, gzip_threads)?),
            Compression::Zstd | Compression::ZstdChunked => {
                Encoder::Zstd(zstd_encoder(inner, zstd_workers)?, None)
            }
            Compression::None => Encoder::None(inner),
        })
    }

    /// Wraps `inner` in a decoder for this compression.
    pub fn decoder<'a, R: BufRead + 'a>(self, inner: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(inner)),
            Compression::Zstd | Compression::ZstdChunked => {
                Box::new(zstd::stream::read::Decoder::with_buffer(inner)?)
            }
            Compression::None => Box::new(inner),
        })
    }
}

/// A zstd encoder at [`ZSTD_LEVEL`] with a checksum, on `workers` libzstd worker
/// threads. Never 0: libzstd's single-threaded mode frames its output
/// differently, while every count from 1 up gives the same bytes.
fn zstd_encoder<W: Write>(
    inner: W,
    workers: usize,
) -> io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut enc = zstd::stream::write::Encoder::new(inner, ZSTD_LEVEL)?;
    enc.include_checksum(true)?;
    enc.multithread(u32::try_from(workers.max(1)).unwrap_or(u32::MAX))?;
    Ok(enc)
}

/// libzstd workers held by encoders from [`Compression::encoder`], process-wide.
static ZSTD_WORKERS_IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Some of the process's libzstd workers, held by one encoder until it is
/// finished or dropped. Encoders from [`Compression::encoder`] share one worker
/// per core (each gets at least one), so layers compressed in parallel do not
/// start cores × cores threads and their buffers; the bytes do not depend on how
/// many an encoder got.
pub struct WorkerLease {
    workers: usize,
    in_use: &'static AtomicUsize,
}

impl WorkerLease {
    /// The workers of `cores` no encoder holds, at least one.
    fn claim(cores: usize) -> WorkerLease {
        WorkerLease::claim_from(&ZSTD_WORKERS_IN_USE, cores)
    }

    fn claim_from(in_use: &'static AtomicUsize, cores: usize) -> WorkerLease {
        let mut workers = 1;
        let _ = in_use.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            workers = cores.saturating_sub(used).max(1);
            Some(used + workers)
        });
        WorkerLease { workers, in_use }
    }
}

impl Drop for WorkerLease {
    fn drop(&mut self) {
        self.in_use.fetch_sub(self.workers, Ordering::AcqRel);
    }
}

/// A compressing writer. Dropping it without [`Encoder::finish`] leaves a truncated
/// stream, so callers always finish.
pub enum Encoder<W: Write> {
    Gzip(gzip::Encoder<W>),
    /// With the workers it holds, when they come from the shared budget.
    Zstd(
        zstd::stream::write::Encoder<'static, W>,
        Option<WorkerLease>,
    ),
    None(W),
}

impl<W: Write> Encoder<W> {
    /// Ends the compressed stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e, _lease) => e.finish(),
            Encoder::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e, _) => e.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            // Not the zstd stream's own flush, which ends a block (with several
            // workers, a job) wherever it is called: the bytes would depend on
            // where flushes happen.
            Encoder::Zstd(e, _) => e.get_mut().flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// A compression name that gpubox does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown compression `{0}`: use `gzip`, `zstd`, `zstd:chunked` or `none`")]
pub struct UnknownCompression(pub String);

impl FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Compression, UnknownCompression> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            "zstd:chunked" => Ok(Compression::ZstdChunked),
            "none" => Ok(Compression::None),
            _ => Err(UnknownCompression(s.to_owned())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::ZstdChunked => "zstd:chunked",
            Compression::None => "none",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut enc = c.encoder(Vec::new()).unwrap();
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let a = compress(c, &data);
            assert_eq!(a, compress(c, &data), "{c} output differs between runs");
            assert_eq!(Compression::sniff(&a), c);
            let mut back = Vec::new();
            c.decoder(&a[..]).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
    }

    /// A xorshift64 generator from `state` (not 0): the same numbers everywhere.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// Appends up to `n` bytes copied from `back` bytes before the end of `out`.
    fn repeat_back(out: &mut Vec<u8>, back: usize, n: usize) {
        let start = out.len() - back;
        for i in 0..n.min(back) {
            out.push(out[start + i]);
        }
    }

    /// Deterministic test data of `len` bytes mixing what layers hold: text,
    /// runs of zeros, incompressible bytes and repeats of earlier input (some
    /// within deflate's 32 KiB window across block boundaries, some beyond it).
    fn mixed_data(len: usize) -> Vec<u8> {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let words = [
            "lib",
            "cuda",
            "nvidia",
            "/nix/store/",
            "ELF",
            "main",
            "\n",
            "0x7f",
            "init",
            "symbol",
            "_ZN4core3fmt",
            "GLIBC_2.34",
            " ",
            "\t",
            "=",
        ];
        let mut out = Vec::with_capacity(len + 70_000);
        while out.len() < len {
            let n = (next() % 60_000) as usize + 1;
            match next() % 4 {
                0 => {
                    while out.len() < len && n > 0 {
                        out.extend_from_slice(
                            words[(next() % words.len() as u64) as usize].as_bytes(),
                        );
                        if out.len() % 7 == 0 {
                            break;
                        }
                    }
                    for _ in 0..n / 8 {
                        out.extend_from_slice(
                            words[(next() % words.len() as u64) as usize].as_bytes(),
                        );
                    }
                }
                1 => out.resize(out.len() + n, 0),
                2 => out.extend((0..n).map(|_| next() as u8)),
                _ if out.len() > 1 => {
                    let back = (next() % out.len().min(200_000) as u64) as usize + 1;
                    repeat_back(&mut out, back, n);
                }
                _ => {}
            }
        }
        out.truncate(len);
        out
    }

    /// Deterministic data shaped like a shared library: little-endian tables,
    /// zero padding, symbol names, x86-like instruction bytes and repeats. On
    /// such data a zlib-rs compressor that was reset (not new) after other input
    /// writes different bytes, so it guards against reusing deflate state.
    pub(super) fn library_like_data(seed: u64, len: usize) -> Vec<u8> {
        let mut next = xorshift(seed | 1);
        let words = [
            "_ZN4core3fmt",
            "GLIBC_2.",
            "cuda",
            "nv",
            "_init",
            "lib",
            "__",
        ];
        let code = [0x48, 0x89, 0x8b, 0xe8, 0x0f, 0x85, 0xc3, 0x00, 0xff, 0x24];
        let mut out = Vec::with_capacity(len + 4096);
        while out.len() < len {
            let n = (next() % 4000) as usize + 16;
            match next() % 5 {
                0 => out.resize(out.len() + n, 0),
                1 => {
                    let base = next() & 0xffff_f000;
                    for _ in 0..n / 8 {
                        out.extend_from_slice(&(base + next() % 4096).to_le_bytes());
                    }
                }
                2 => {
                    for _ in 0..n / 8 {
                        out.extend_from_slice(words[(next() % 7) as usize].as_bytes());
                        out.push((next() % 26) as u8 + b'a');
                        if next() % 3 == 0 {
                            out.push(0);
                        }
                    }
                }
                3 => out.extend((0..n).map(|_| code[(next() % 10) as usize])),
                _ if out.len() > 5000 => {
                    let back = (next() % out.len() as u64) as usize;
                    repeat_back(&mut out, back, n);
                }
                _ => {}
            }
        }
        out.truncate(len);
        out
    }

    /// Up to `len` bytes of real machine code and data: this test binary, whose
    /// matches behave unlike synthetic data's (an encoder that reused deflate
    /// state between blocks passed on `mixed_data` and failed here).
    fn machine_code(len: usize) -> Vec<u8> {
        let exe = std::env::current_exe().unwrap();
        let mut data = std::fs::read(exe).unwrap();
        data.truncate(len);
        data
    }

    /// Compresses `data` on `threads` threads, written in pieces of the sizes in
    /// `pieces` (cycled; empty: one write), flushing every `flush_every` pieces
    /// and before finishing as the tar writer does.
    fn compress_threads(
        c: Compression,
        data: &[u8],
        threads: Option<usize>,
        pieces: &[usize],
        flush_every: usize,
    ) -> Vec<u8> {
        let mut enc = match threads {
            Some(n) => c.encoder_with_threads(Vec::new(), n).unwrap(),
            None => c.encoder(Vec::new()).unwrap(),
        };
        if pieces.is_empty() {
            enc.write_all(data).unwrap();
        } else {
            let mut rest = data;
            for (i, size) in pieces.iter().cycle().enumerate() {
                if rest.is_empty() {
                    break;
                }
                let (piece, tail) = rest.split_at((*size).min(rest.len()));
                enc.write_all(piece).unwrap();
                rest = tail;
                if flush_every > 0 && i % flush_every == flush_every - 1 {
                    enc.flush().unwrap();
                }
            }
        }
        enc.flush().unwrap();
        enc.finish().unwrap()
    }

    fn decompress(c: Compression, compressed: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        c.decoder(compressed)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        back
    }

    /// The same bytes for 1, 2 and 8 threads and the default, however the input
    /// is cut into writes and flushed, and they decompress to the input.
    fn assert_same_for_any_threads(c: Compression, data: &[u8]) -> Vec<u8> {
        let one = compress_threads(c, data, Some(1), &[], 0);
        let runs = [
            (Some(2), &[1usize, 7, 4093, 65_537, 131_071][..], 3),
            (Some(8), &[131_072, 131_073, 3][..], 2),
            (Some(3), &[300_001][..], 1),
            (None, &[][..], 0),
        ];
        for (threads, pieces, flush_every) in runs {
            let other = compress_threads(c, data, threads, pieces, flush_every);
            assert!(
                one == other,
                "{c} of {} bytes: 1 thread and {threads:?} threads differ ({} and {} bytes)",
                data.len(),
                one.len(),
                other.len()
            );
        }
        assert!(
            decompress(c, &one) == data,
            "{c} of {} bytes does not round-trip",
            data.len()
        );
        one
    }

    #[test]
    fn gzip_is_the_same_for_any_thread_count() {
        let data = mixed_data(6 << 20);
        let gz = assert_same_for_any_threads(Compression::Gzip, &data);
        assert!(gz.len() < data.len() / 2, "{} of {}", gz.len(), data.len());
        assert_same_for_any_threads(Compression::Gzip, &machine_code(4 << 20));
        assert_same_for_any_threads(Compression::Gzip, &library_like_data(10, 4 << 20));
        let block = gzip::BLOCK_SIZE;
        for len in [
            0,
            1,
            gzip::DICT_SIZE,
            block - 1,
            block,
            block + 1,
            2 * block,
            3 * block + 5,
        ] {
            assert_same_for_any_threads(Compression::Gzip, &data[..len]);
        }
    }

    #[test]
    fn zstd_encoders_share_one_worker_per_core() {
        static IN_USE: AtomicUsize = AtomicUsize::new(0);
        let first = WorkerLease::claim_from(&IN_USE, 4);
        let second = WorkerLease::claim_from(&IN_USE, 4);
        assert_eq!((first.workers, second.workers), (4, 1));
        drop(first);
        assert_eq!(WorkerLease::claim_from(&IN_USE, 4).workers, 3);
        drop(second);
        assert_eq!(IN_USE.load(Ordering::Acquire), 0);
    }

    #[test]
    fn zstd_is_the_same_for_any_worker_count() {
        // More than one libzstd job (several MiB each at level 3).
        let data = mixed_data(20 << 20);
        assert_same_for_any_threads(Compression::Zstd, &data);
        for len in [0, 1, 131_072, 131_073] {
            assert_same_for_any_threads(Compression::Zstd, &data[..len]);
        }
    }

    #[test]
    fn gzip_blocks_are_independent_of_the_compressor_history() {
        // Two encoders on one thread interleaved: each block's compressor was
        // last used by the other stream.
        let (a, b) = (mixed_data(1 << 20), mixed_data(700_000));
        let mut ea = Compression::Gzip
            .encoder_with_threads(Vec::new(), 1)
            .unwrap();
        let mut eb = Compression::Gzip
            .encoder_with_threads(Vec::new(), 1)
            .unwrap();
        let mut pieces_b = b.chunks(90_000);
        for piece in a.chunks(100_000) {
            ea.write_all(piece).unwrap();
            eb.write_all(pieces_b.next().unwrap_or_default()).unwrap();
        }
        let gz = ea.finish().unwrap();
        assert!(gz == compress_threads(Compression::Gzip, &a, Some(2), &[], 0));
        let gz = eb.finish().unwrap();
        assert!(gz == compress_threads(Compression::Gzip, &b, Some(2), &[], 0));
    }

    #[test]
    fn gzip_output_is_read_by_multi_gz_decoder() {
        let data = mixed_data(1 << 20);
        let gz = compress_threads(Compression::Gzip, &data, Some(2), &[], 0);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
        // Trailer: CRC-32 and size of the input.
        let mut crc = flate2::Crc::new();
        crc.update(&data);
        assert_eq!(gz[gz.len() - 8..gz.len() - 4], crc.sum().to_le_bytes());
        assert_eq!(gz[gz.len() - 4..], (data.len() as u32).to_le_bytes());
    }

    /// Runs `tool args` with `input` on stdin; `None` (after saying why) when
    /// the tool is not installed, which fails under CI.
    fn run_tool(tool: &str, args: &[&str], input: &[u8]) -> Option<Vec<u8>> {
        use std::process::{Command, Stdio};
        let child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                assert!(
                    std::env::var_os("CI").is_none_or(|v| v != "true"),
                    "`{tool}` is not installed, and CI needs it for this test"
                );
                eprintln!("skipped: `{tool}` is not installed");
                return None;
            }
            Err(e) => panic!("cannot run `{tool}`: {e}"),
        };
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(
            out.status.success(),
            "`{tool} {args:?}` failed: {}",
            out.status
        );
        Some(out.stdout)
    }

    #[test]
    fn gzip_output_is_read_by_gzip_and_pigz() {
        let data = mixed_data(3 << 20);
        let gz = compress_threads(Compression::Gzip, &data, Some(2), &[], 0);
        if let Some(back) = run_tool("gzip", &["-d", "-c"], &gz) {
            assert!(back == data, "gzip -d read other bytes");
        }
        if let Ok(back) = run_tool_optional("pigz", &["-d", "-c"], &gz) {
            assert!(back == data, "pigz -d read other bytes");
        }
        // And the empty stream.
        let empty = compress_threads(Compression::Gzip, b"", Some(2), &[], 0);
        if let Some(back) = run_tool("gzip", &["-d", "-c"], &empty) {
            assert!(back.is_empty());
        }
    }

    /// pigz is checked where it is installed, CI or not.
    fn run_tool_optional(tool: &str, args: &[&str], input: &[u8]) -> Result<Vec<u8>, ()> {
        let found = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            eprintln!("skipped: `{tool}` is not installed");
            return Err(());
        }
        run_tool(tool, args, input).ok_or(())
    }

    #[test]
    fn a_failing_writer_is_an_error_not_a_hang() {
        struct FailAfter(usize);
        impl Write for FailAfter {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 < buf.len() {
                    return Err(io::Error::other("disk full"));
                }
                self.0 -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = mixed_data(2 << 20);
        for threads in [1, 2, 8] {
            let mut enc = Compression::Gzip
                .encoder_with_threads(FailAfter(100_000), threads)
                .unwrap();
            let written = data
                .chunks(50_000)
                .try_for_each(|piece| enc.write_all(piece));
            let result = written.and_then(|()| enc.finish().map(drop));
            assert!(result.is_err(), "{threads} threads");
        }
    }

    #[test]
    fn gzip_header_has_no_timestamp_or_name() {
        let gz = compress(Compression::Gzip, b"x");
        // magic, method, flags (no FNAME), mtime 0, xfl, OS 255
        assert_eq!(&gz[..4], &[0x1f, 0x8b, 8, 0]);
        assert_eq!(&gz[4..8], &[0, 0, 0, 0]);
        assert_eq!(gz[9], 255);
    }
}
