//! Services' output: every line a service writes to stdout or stderr goes to the
//! init's stdout or stderr prefixed `[NAME] `, and unprefixed to its log file when it
//! has one. One reader thread per pipe, so a service that writes a lot, or a terminal
//! that reads slowly, never holds up the init's signal handling.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::spawn::cloexec_pipe;

/// A longer line is passed on in pieces of this size, so a service writing without
/// newlines cannot make the init buffer without bound.
const MAX_LINE: u64 = 16 * 1024;
/// The reader threads only hold a small buffer each.
const READER_STACK: usize = 64 * 1024;

/// Opens (creating it and its folder when missing) a log file to append to.
pub fn open_log(path: &Path) -> io::Result<Arc<File>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .map(Arc::new)
}

/// The reader threads started so far.
#[derive(Default)]
pub struct Output {
    readers: Vec<JoinHandle<()>>,
}

impl Output {
    /// Pipes for a service's stdout and stderr, with a reader thread on each; returns
    /// the ends the service writes to.
    pub fn connect(&mut self, name: &str, log: Option<&Arc<File>>) -> io::Result<[OwnedFd; 2]> {
        self.readers.retain(|reader| !reader.is_finished());
        let (stdout_read, stdout_write) = cloexec_pipe()?;
        let (stderr_read, stderr_write) = cloexec_pipe()?;
        for (read, to_stderr) in [(stdout_read, false), (stderr_read, true)] {
            let prefix = format!("[{name}] ");
            let log = log.cloned();
            let reader = std::thread::Builder::new()
                .name(format!("{name} output"))
                .stack_size(READER_STACK)
                .spawn(move || copy_lines(File::from(read), &prefix, to_stderr, log.as_deref()))?;
            self.readers.push(reader);
        }
        Ok([stdout_write, stderr_write])
    }

    /// Waits, at most `timeout`, until every reader has passed on what is left in its
    /// pipe, so the last lines of stopped services are not lost when the init exits.
    pub fn finish(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.readers.iter().any(|reader| !reader.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Copies lines from `source` until it is closed. Write errors are dropped: a closed
/// terminal or a full disk must not stop the service or the init.
fn copy_lines(source: File, prefix: &str, to_stderr: bool, log: Option<&File>) {
    let mut reader = BufReader::new(source);
    let mut line = Vec::new();
    loop {
        line.clear();
        line.extend_from_slice(prefix.as_bytes());
        match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        let _ = if to_stderr {
            io::stderr().lock().write_all(&line)
        } else {
            io::stdout().lock().write_all(&line)
        };
        if let Some(mut log) = log {
            let _ = log.write_all(&line[prefix.len()..]);
        }
    }
}
