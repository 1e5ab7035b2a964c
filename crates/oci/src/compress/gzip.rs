//! gzip on several threads with the same bytes out whatever their number (the
//! scheme pigz made common, implemented here from the formats' specifications).
//!
//! The input is cut into blocks of [`BLOCK_SIZE`] bytes, a constant. Each block is
//! compressed on its own by a new raw deflate compressor (zlib-rs, level
//! [`GZIP_LEVEL`]) whose window is first filled with the [`DICT_SIZE`] bytes of
//! input just before the block, so matches still reach back across block
//! boundaries. Every block but the last ends with a sync flush (an empty stored
//! block that ends on a byte boundary), the last with the final block, so the
//! blocks laid end to end are one valid deflate stream. A block's bytes depend
//! only on its input and the input before it, never on which thread compressed
//! it, what that thread compressed before, or how the input was cut into `write`
//! calls; hence the same output for any thread count. The CRC-32 of each block is
//! computed beside it and the CRCs are combined in order for the trailer.
//!
//! At most [`PENDING_PER_THREAD`] blocks per pool thread ([`MAX_PENDING`] in all)
//! are in flight per encoder; their compressed bytes are written out in input
//! order by the thread that writes.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;

use flate2::{Compress, Crc, FlushCompress, Status};

use super::pool::Pool;
use super::GZIP_LEVEL;

/// Bytes of input per block. A constant of the format: changing it changes the
/// output (and so every layer digest).
pub(crate) const BLOCK_SIZE: usize = 128 * 1024;

/// Bytes of preceding input each block's compressor is primed with: deflate's
/// whole window.
pub(crate) const DICT_SIZE: usize = 32 * 1024;

/// The gzip header: magic, deflate, no flags (no name, no comment), mtime 0,
/// extra flags 0 (what zlib writes for level 6), OS 255 ("unknown", the same on
/// every machine).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// Blocks in flight per encoder for each thread that compresses: enough to keep
/// every thread busy while the writer waits for the oldest block.
const PENDING_PER_THREAD: usize = 4;

/// The most blocks in flight per encoder whatever the thread count, which bounds
/// an encoder's memory to about `2 × MAX_PENDING × BLOCK_SIZE` (16 MiB).
const MAX_PENDING: usize = 64;

/// Where an encoder's blocks are compressed.
pub(crate) enum Threads {
    /// On the thread that writes: no pool at all.
    Caller,
    /// The process-wide pool, shared by every encoder.
    Global,
    /// A pool of this encoder's own (explicit thread counts, for tests and
    /// benchmarks).
    Own(Arc<Pool>),
}

impl Threads {
    /// `threads` threads: 1 is the calling thread alone, more a pool of their own.
    pub(crate) fn count(threads: usize) -> Threads {
        if threads <= 1 {
            Threads::Caller
        } else {
            Threads::Own(Arc::new(Pool::new(threads)))
        }
    }

    /// The default: the process-wide pool, or the calling thread alone on a
    /// machine with one core.
    pub(crate) fn default_pool() -> Threads {
        if super::pool::default_threads() <= 1 {
            Threads::Caller
        } else {
            Threads::Global
        }
    }

    fn pool(&self) -> Option<&Pool> {
        match self {
            Threads::Caller => None,
            Threads::Global => Some(Pool::global()),
            Threads::Own(pool) => Some(pool),
        }
    }
}

/// One compressed block and the CRC-32 of its input.
struct Block {
    deflate: Vec<u8>,
    crc: Crc,
}

/// A gzip encoder that compresses blocks in parallel. Call [`Encoder::finish`]
/// to end the stream.
pub struct Encoder<W: Write> {
    inner: W,
    threads: Threads,
    max_pending: usize,
    /// Input of the block being filled; it is compressed once full and more
    /// input arrives (or at `finish`, as the last block).
    block: Vec<u8>,
    /// The last [`DICT_SIZE`] bytes of the previous block.
    dict: Option<Arc<[u8]>>,
    pending: VecDeque<Receiver<io::Result<Block>>>,
    crc: Crc,
    /// Set by the first error: the stream is broken from there on.
    failed: bool,
}

impl<W: Write> Encoder<W> {
    /// Writes the gzip header to `inner` and returns an encoder compressing on
    /// `threads`.
    pub(crate) fn new(mut inner: W, threads: Threads) -> io::Result<Encoder<W>> {
        inner.write_all(&HEADER)?;
        let max_pending = match threads.pool() {
            None => 0,
            Some(pool) => (pool.threads() * PENDING_PER_THREAD).clamp(4, MAX_PENDING),
        };
        Ok(Encoder {
            inner,
            threads,
            max_pending,
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: None,
            pending: VecDeque::new(),
            crc: Crc::new(),
            failed: false,
        })
    }

    /// Compresses what is left as the last block, writes every block and the
    /// trailer, and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.check()?;
        let result = self.finish_blocks();
        self.fail_on(result)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.inner.write_all(&trailer)?;
        Ok(self.inner)
    }

    fn finish_blocks(&mut self) -> io::Result<()> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            Err(io::Error::other(
                "the gzip stream is broken by an earlier error",
            ))
        } else {
            Ok(())
        }
    }

    fn fail_on<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.failed = true;
            self.pending.clear();
        }
        result
    }

    /// Sends the block being filled off to be compressed (on the pool, or right
    /// here), waiting first for the oldest block when too many are in flight.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        let next_dict = match (last, data.len().checked_sub(DICT_SIZE)) {
            (false, Some(start)) => Some(Arc::from(&data[start..])),
            _ => None,
        };
        let dict = mem::replace(&mut self.dict, next_dict);
        let Some(pool) = self.threads.pool() else {
            let block = compress_caught(&data, dict.as_deref(), last)?;
            return self.write_block(block);
        };
        let (tx, rx) = mpsc::sync_channel(1);
        pool.submit(Box::new(move || {
            let _ = tx.send(compress_caught(&data, dict.as_deref(), last));
        }));
        self.pending.push_back(rx);
        while self.pending.len() > self.max_pending {
            self.write_oldest()?;
        }
        // Write whatever is done already, in order, without waiting.
        while let Some(block) = self.pending.front().and_then(|rx| match rx.try_recv() {
            Err(TryRecvError::Empty) => None,
            done => Some(done),
        }) {
            self.pending.pop_front();
            self.write_block(received(block)?)?;
        }
        Ok(())
    }

    /// Waits for the oldest block in flight and writes it.
    ///
    /// The writing thread does not compress blocks itself while the pool has
    /// threads: the pool has one per core, and a writer busy compressing is a
    /// writer not feeding them (bench/compress on 2 cores: about 1.45x one
    /// thread's throughput with the writer helping, 1.86x without). Only a pool
    /// whose threads could not be started has its jobs run here.
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.pending.pop_front() else {
            return Ok(());
        };
        let pool = self.threads.pool().filter(|pool| pool.threads() == 0);
        let block = loop {
            match rx.try_recv() {
                Err(TryRecvError::Empty) => {}
                done => break done,
            }
            if pool.is_some_and(Pool::run_one) {
                continue;
            }
            // Nothing queued: the block is being compressed by another thread,
            // which always sends a result (or drops the sender).
            break rx.recv().map_err(|_| TryRecvError::Disconnected);
        };
        self.write_block(received(block)?)
    }

    fn write_block(&mut self, block: Block) -> io::Result<()> {
        self.inner.write_all(&block.deflate)?;
        self.crc.combine(&block.crc);
        Ok(())
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let mut rest = buf;
        while !rest.is_empty() {
            if self.block.len() == BLOCK_SIZE {
                let result = self.dispatch(false);
                self.fail_on(result)?;
            }
            let take = rest.len().min(BLOCK_SIZE - self.block.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        Ok(buf.len())
    }

    /// Writes every block in flight and flushes the inner writer. The block
    /// being filled stays here: ending it early would make the output depend on
    /// where flushes happen.
    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        while !self.pending.is_empty() {
            let result = self.write_oldest();
            self.fail_on(result)?;
        }
        self.inner.flush()
    }
}

fn received(result: Result<io::Result<Block>, TryRecvError>) -> io::Result<Block> {
    result.unwrap_or_else(|_| {
        Err(io::Error::other(
            "a gzip compression thread stopped without a result",
        ))
    })
}

/// [`compress_block`], with a panic turned into an error.
fn compress_caught(data: &[u8], dict: Option<&[u8]>, last: bool) -> io::Result<Block> {
    panic::catch_unwind(AssertUnwindSafe(|| compress_block(data, dict, last)))
        .unwrap_or_else(|_| Err(io::Error::other("gzip compression of a block panicked")))
}

/// Compresses one block: raw deflate primed with `dict`, ending with a sync flush,
/// or with the final block when `last`.
///
/// Every block gets a new compressor. A reset one is not the same: zlib-rs's
/// reset keeps the old window and hash chains, and the matcher may read past the
/// input's end into that stale window, so a block's bytes would depend on what
/// the thread compressed before. A new compressor's memory is zeroed.
fn compress_block(data: &[u8], dict: Option<&[u8]>, last: bool) -> io::Result<Block> {
    let mut crc = Crc::new();
    crc.update(data);
    let mut compress = Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    let deflate = deflate(&mut compress, data, dict, last)?;
    Ok(Block { deflate, crc })
}

fn deflate(
    compress: &mut Compress,
    data: &[u8],
    dict: Option<&[u8]>,
    last: bool,
) -> io::Result<Vec<u8>> {
    if let Some(dict) = dict {
        compress.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Room for incompressible input (stored blocks) and the flush markers, so
    // one call almost always does it.
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 64);
    let start = compress.total_in();
    loop {
        let consumed = usize::try_from(compress.total_in() - start).map_err(io::Error::other)?;
        let input = data
            .get(consumed..)
            .ok_or_else(|| io::Error::other("deflate consumed more input than it was given"))?;
        if out.len() == out.capacity() {
            out.reserve(out.capacity() / 2 + 1024);
        }
        let before = (compress.total_in(), out.len());
        let status = compress
            .compress_vec(input, &mut out, flush)
            .map_err(io::Error::other)?;
        let room_left = out.len() < out.capacity();
        let done = if last {
            status == Status::StreamEnd
        } else {
            compress.total_in() - start == data.len() as u64 && room_left
        };
        if done {
            return Ok(out);
        }
        if before == (compress.total_in(), out.len()) && room_left {
            return Err(io::Error::other("deflate made no progress"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_without_threads_is_run_by_the_writer() {
        let data = crate::compress::tests::library_like_data(3, 3 * BLOCK_SIZE + 17);
        let encode = |threads| {
            let mut enc = Encoder::new(Vec::new(), threads).unwrap();
            enc.write_all(&data).unwrap();
            enc.finish().unwrap()
        };
        let idle = encode(Threads::Own(Arc::new(Pool::without_threads())));
        assert!(idle == encode(Threads::Caller));
    }

    #[test]
    fn a_block_does_not_depend_on_the_blocks_before_it_on_the_thread() {
        // Seeds for which a reset zlib-rs compressor that last saw a block of
        // 0xff bytes writes other bytes than a new one.
        for seed in [10, 11, 50] {
            let input = crate::compress::tests::library_like_data(seed, DICT_SIZE + BLOCK_SIZE);
            let (dict, data) = input.split_at(DICT_SIZE);
            for last in [false, true] {
                let first = compress_block(data, Some(dict), last).unwrap().deflate;
                let ff = vec![0xff; BLOCK_SIZE];
                let _ = compress_block(&ff, Some(&ff[..DICT_SIZE]), false).unwrap();
                let again = compress_block(data, Some(dict), last).unwrap().deflate;
                assert!(first == again, "seed {seed}: the block changed");
            }
        }
    }
}
