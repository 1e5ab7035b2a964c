//! A small pool of worker threads that run boxed jobs in the order they were
//! queued, shared by every gzip encoder of the process (see the parent module).
//!
//! Jobs never block and never wait on one another, so a thread that is waiting
//! for a job's result may run queued jobs itself ([`Pool::run_one`]): a pool
//! whose threads could not be started (the system refused) still completes every
//! job, run by the threads waiting for them, instead of hanging.

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

/// A unit of work. Jobs report their own results (through a channel), catch
/// their own panics, and must not block.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Worker threads and their queue. Dropping the pool lets its threads finish the
/// queued jobs and exit.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: usize,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

struct State {
    jobs: VecDeque<Job>,
    closed: bool,
}

impl Shared {
    /// The queue, even if a thread panicked while holding the lock: the queue
    /// itself is always consistent (jobs run outside the lock).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Pool {
    /// A pool of `threads` worker threads (at least one is attempted; threads
    /// the system refuses to start are skipped: see [`Pool::threads`]).
    pub(crate) fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let threads = threads.max(1);
        let mut started = 0;
        for i in 0..threads {
            let shared = Arc::clone(&shared);
            let spawned = thread::Builder::new()
                .name(format!("gpubox-gzip-{i}"))
                .spawn(move || worker(&shared));
            if spawned.is_ok() {
                started += 1;
            }
        }
        Pool {
            shared,
            threads: started,
        }
    }

    /// A pool whose threads "could not be started": only waiting callers run
    /// its jobs.
    #[cfg(test)]
    pub(crate) fn without_threads() -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    closed: false,
                }),
                ready: Condvar::new(),
            }),
            threads: 0,
        }
    }

    /// The process-wide pool: one thread per available core, started on first use.
    pub(crate) fn global() -> &'static Pool {
        static GLOBAL: OnceLock<Pool> = OnceLock::new();
        GLOBAL.get_or_init(|| Pool::new(default_threads()))
    }

    /// How many threads run jobs; 0 when none could be started, and then
    /// whoever waits for a job must run it with [`Pool::run_one`].
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `job` for the next free thread.
    pub(crate) fn submit(&self, job: Job) {
        self.shared.lock().jobs.push_back(job);
        self.shared.ready.notify_one();
    }

    /// Runs the oldest queued job on the calling thread, if there is one.
    /// Returns whether a job ran.
    pub(crate) fn run_one(&self) -> bool {
        let job = self.shared.lock().jobs.pop_front();
        match job {
            Some(job) => {
                run(job);
                true
            }
            None => false,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

/// The number of threads compression uses by default: the cores this process
/// may run on, at least one.
pub(crate) fn default_threads() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

fn worker(shared: &Shared) {
    loop {
        let job = {
            let mut state = shared.lock();
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    break job;
                }
                if state.closed {
                    return;
                }
                state = shared.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        run(job);
    }
}

/// Runs a job; a panic that escapes it (jobs catch their own) does not take the
/// thread down.
fn run(job: Job) {
    let _ = panic::catch_unwind(AssertUnwindSafe(job));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_every_job_and_survives_a_panicking_one() {
        let pool = Pool::new(3);
        let (tx, rx) = mpsc::channel();
        pool.submit(Box::new(|| panic!("a job that panics")));
        for i in 0..100u32 {
            let tx = tx.clone();
            pool.submit(Box::new(move || {
                let _ = tx.send(i);
            }));
        }
        drop(tx);
        let mut got: Vec<u32> = rx.iter().collect();
        got.sort_unstable();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn callers_can_run_queued_jobs() {
        let pool = Pool::without_threads();
        let (tx, rx) = mpsc::channel();
        pool.submit(Box::new(move || {
            let _ = tx.send(7);
        }));
        assert!(pool.run_one());
        assert!(!pool.run_one());
        assert_eq!(rx.try_recv(), Ok(7));
    }
}
