//! What the user sees while a build runs: a byte progress bar when stderr is a
//! terminal, one plain line per step otherwise (logs, CI), nothing with `-q`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    display: Display,
}

enum Display {
    Quiet,
    Lines,
    Bar(ProgressBar),
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let display = if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            Display::Bar(ProgressBar::hidden())
        } else {
            Display::Lines
        };
        Progress { display }
    }

    /// A step worth a line of its own.
    pub fn step(&self, message: impl AsRef<str>) {
        match &self.display {
            Display::Quiet => {}
            Display::Lines => eprintln!("gpubox: {}", message.as_ref()),
            Display::Bar(bar) => bar.println(format!("gpubox: {}", message.as_ref())),
        }
    }

    /// Starts counting `total` bytes of layer content.
    pub fn start_bytes(&self, total: u64, what: &str) {
        if let Display::Bar(bar) = &self.display {
            bar.set_length(total);
            bar.set_position(0);
            bar.set_message(what.to_owned());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.enable_steady_tick(Duration::from_millis(120));
        }
    }

    /// `n` more bytes of layer content written. Called from worker threads.
    pub fn add_bytes(&self, n: u64) {
        if let Display::Bar(bar) = &self.display {
            bar.inc(n);
        }
    }

    /// Ends the byte count.
    pub fn finish_bytes(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}

/// Bytes in the units people read (`1.5 MiB`).
pub fn bytes(n: u64) -> String {
    HumanBytes(n).to_string()
}
