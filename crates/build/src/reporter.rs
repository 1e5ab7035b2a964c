//! How the engine says what it is doing without printing: every step goes to
//! a [`Reporter`] the caller supplies (the CLI draws lines or a progress bar;
//! a test or another front end may collect or drop them).

use std::fmt;

/// Receives the engine's progress. Layers are built on several threads, so
/// a reporter is shared between them.
pub trait Reporter: Sync {
    /// A step worth a line of its own.
    fn step(&self, message: &str);

    /// `total` bytes of layer content are about to be written.
    fn start_bytes(&self, _total: u64, _what: &str) {}

    /// `n` more bytes of layer content written; called from worker threads.
    fn add_bytes(&self, _n: u64) {}

    /// The byte count is over.
    fn finish_bytes(&self) {}
}

/// A reporter that drops everything.
pub struct Silent;

impl Reporter for Silent {
    fn step(&self, _message: &str) {}
}

/// A size in the units people read: `512 B`, `1.50 MiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 8] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
        // `pad`, so tables can give the size a width.
        if self.0 < 1024 {
            return f.pad(&format!("{} B", self.0));
        }
        // Precision beyond two decimals is not wanted, so f64 is enough.
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        f.pad(&format!("{value:.2} {}", UNITS[unit]))
    }
}

/// A count and its noun, as people write them: `1 layer`, `2 layers`, `1 entry`,
/// `3 entries`, `1 store path`. The noun is the singular.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count<'a>(pub usize, pub &'a str);

impl fmt::Display for Count<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Count(count, noun) = *self;
        if count == 1 {
            return write!(f, "1 {noun}");
        }
        match noun.strip_suffix('y') {
            Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => write!(f, "{count} {stem}ies"),
            _ => write!(f, "{count} {noun}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_naturally() {
        assert_eq!(Count(1, "layer").to_string(), "1 layer");
        assert_eq!(Count(0, "layer").to_string(), "0 layers");
        assert_eq!(Count(3, "entry").to_string(), "3 entries");
        assert_eq!(Count(2, "key").to_string(), "2 keys");
        assert_eq!(Count(1, "store path").to_string(), "1 store path");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(Bytes(0).to_string(), "0 B");
        assert_eq!(Bytes(1023).to_string(), "1023 B");
        assert_eq!(Bytes(1024).to_string(), "1.00 KiB");
        assert_eq!(Bytes(1536 * 1024).to_string(), "1.50 MiB");
        assert_eq!(Bytes(5 << 30).to_string(), "5.00 GiB");
        assert_eq!(format!("{:>10}", Bytes(1024)), "  1.00 KiB");
    }
}
