//! Ctrl-C, `kill` or a closed terminal during a build: remove this process's
//! unfinished files (see `gpubox_atomic::partial`) and exit 128+signal, so an
//! interrupted build leaves no partial output and no half-written cache entry.

use std::path::PathBuf;

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread, and so in every thread it
/// starts afterwards (children get a clean mask from `std::process::Command`),
/// and starts a thread that waits for them. Call before starting other threads.
pub fn remove_partials_on_signal(folders: Vec<PathBuf>) -> std::io::Result<()> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset before use; the
    // calls only change this process's signal mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("gpubox-interrupt".to_owned())
        .spawn(move || {
            let mut signal: libc::c_int = 0;
            // SAFETY: `set` and `signal` outlive the call.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                return;
            }
            for folder in &folders {
                gpubox_atomic::partial::remove_own(folder);
            }
            eprintln!("gpubox: interrupted; unfinished files removed, nothing was written");
            std::process::exit(128 + signal);
        })?;
    Ok(())
}
