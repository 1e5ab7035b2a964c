//! Compresses stdin to stdout with gpubox's layer encoder, for `bench/compress`.
//!
//! Usage: compress gzip|zstd [THREADS|auto]
//!
//! `auto` (the default) is what `gpubox build` does: gzip on the process-wide
//! pool, zstd on one libzstd worker per core. A number gives the encoder
//! that many threads of its own; the output is the same bytes either way.

use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;

use gpubox_oci::Compression;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("compress: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let (compression, threads) = match args {
        [c] => (c.parse::<Compression>()?, None),
        [c, t] if t == "auto" => (c.parse::<Compression>()?, None),
        [c, t] => (c.parse::<Compression>()?, Some(t.parse::<usize>()?)),
        _ => return Err("usage: compress gzip|zstd [THREADS|auto]".into()),
    };
    let out = BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    let mut encoder = match threads {
        Some(n) => compression.encoder_with_threads(out, n)?,
        None => compression.encoder(out)?,
    };
    let mut input = io::stdin().lock();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        encoder.write_all(&buf[..n])?;
    }
    encoder.finish()?.flush()?;
    Ok(())
}
