//! Messages on stderr, prefixed `gpubox-init: `. Quiet by default: only errors and the
//! grace-period kill notice; `GPUBOX_INIT_DEBUG=1` adds what the init is doing.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

pub fn enable_debug() {
    DEBUG.store(true, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes one line; a closed or broken stderr must never bring down PID 1, so write
/// errors are dropped.
pub fn write_line(message: fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "gpubox-init: {message}");
}

/// Always shown: errors and notices the user must see.
macro_rules! notice {
    ($($arg:tt)*) => {
        $crate::log::write_line(format_args!($($arg)*))
    };
}

/// Shown only with `GPUBOX_INIT_DEBUG=1`.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::write_line(format_args!($($arg)*))
        }
    };
}
