//! What the user sees while gpubox works: a byte progress bar when stderr is
//! a terminal, one plain line per step otherwise (logs, CI), nothing with
//! `-q`. It is the engine's [`Reporter`].

use std::io::IsTerminal;
use std::time::Duration;

use gpubox_build::Reporter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub enum Progress {
    Quiet,
    Lines,
    Bar(ProgressBar),
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Bar(ProgressBar::hidden())
        } else {
            Progress::Lines
        }
    }
}

impl Reporter for Progress {
    fn step(&self, message: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Lines => eprintln!("gpubox: {message}"),
            Progress::Bar(bar) => bar.println(format!("gpubox: {message}")),
        }
    }

    fn start_bytes(&self, total: u64, what: &str) {
        if let Progress::Bar(bar) = self {
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

    fn add_bytes(&self, n: u64) {
        if let Progress::Bar(bar) = self {
            bar.inc(n);
        }
    }

    fn finish_bytes(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
