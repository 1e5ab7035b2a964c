//! Deterministic tar: a writer whose every header byte is chosen by us, a lazy
//! walk of a folder on disk into [`Entry`](crate::Entry) values, and a reader that
//! lists what a tar holds (for `gpubox inspect` and for tests).
//!
//! The format is ustar, with PAX extended headers only where ustar cannot say
//! something (names and link targets over 100 bytes, numbers too large for their
//! octal field). The ustar `prefix` field is never used, so there is one rule for
//! long names. The archive ends with two zero blocks and is not padded to a 10 KiB
//! record: OCI layers are streams, and Docker, containerd and GNU tar all read them.

mod header;
pub(crate) mod read;
mod walk;
mod writer;

pub use read::{read_entries, TarEntries, TarEntryInfo, TarEntryKind, TarReadError};
pub use walk::{walk, Modes, Walk, WalkError, WalkOptions};
pub use writer::{TarError, TarWriter};

/// Size of the buffers used to read files and write tar bytes: large enough that
/// system calls and compressor calls are a small part of the cost.
pub(crate) const IO_BUFFER_SIZE: usize = 256 * 1024;
