//! Teardown handed to a thread. While a [`Reaper`] lives, a container
//! dropped after its PID 1 was reaped leaves the removal of its temp dir
//! and cgroup to the reaper's thread instead of doing it on the dropping
//! thread's path; dropping the last `Reaper` waits until everything handed
//! over is gone. Work moved, not skipped: the `start/sustained` bench times
//! starts back to back until nothing of them is left.
//!
//! Opt-in, for callers that start containers in a row and outlive them (the
//! benches): a process that exits without dropping its `Reaper` (a
//! `process::exit`, a signal) leaves what was still queued for
//! `isocheck cleanup`.

use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;

/// Something whose drop is the work (a temp dir, a cgroup).
type Job = Box<dyn Send>;

struct Worker {
    jobs: Sender<Job>,
    thread: JoinHandle<()>,
    /// Live `Reaper`s; the worker ends with the last.
    users: usize,
}

static WORKER: Mutex<Option<Worker>> = Mutex::new(None);

/// See the module docs.
#[derive(Debug)]
#[must_use = "teardown is handed over only while the Reaper lives"]
pub struct Reaper {
    _private: (),
}

impl Reaper {
    /// Starts the reaper thread (or joins the one running).
    pub fn start() -> std::io::Result<Reaper> {
        let mut worker = lock();
        match worker.as_mut() {
            Some(w) => w.users += 1,
            None => {
                let (jobs, queue) = mpsc::channel::<Job>();
                let thread = std::thread::Builder::new()
                    .name("isocheck-reaper".into())
                    .spawn(move || queue.into_iter().for_each(drop))?;
                *worker = Some(Worker {
                    jobs,
                    thread,
                    users: 1,
                });
            }
        }
        Ok(Reaper { _private: () })
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        let last = {
            let mut worker = lock();
            match worker.as_mut() {
                Some(w) if w.users > 1 => {
                    w.users -= 1;
                    None
                }
                _ => worker.take(),
            }
        };
        // Outside the lock: the queue's last jobs may run a while.
        if let Some(Worker { jobs, thread, .. }) = last {
            drop(jobs);
            if thread.join().is_err() {
                tracing::warn!(
                    "the reaper thread panicked; `isocheck cleanup` removes what it left"
                );
            }
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Worker>> {
    WORKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands `job` to the reaper's thread, or gives it back when no `Reaper`
/// lives (the caller then drops it itself).
pub(crate) fn defer(job: Job) -> Result<(), Job> {
    match lock().as_ref() {
        Some(w) => w.jobs.send(job).map_err(|e| e.0),
        None => Err(job),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            std::thread::sleep(std::time::Duration::from_millis(5));
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn without_a_reaper_the_job_comes_back_and_with_one_its_drop_waits_for_all() {
        let done = Arc::new(AtomicUsize::new(0));
        // Serialised with any other test of this module by the one static.
        let back = defer(Box::new(Counted(done.clone())));
        if let Err(job) = back {
            drop(job);
        }
        assert_eq!(done.load(Ordering::SeqCst), 1);

        let outer = Reaper::start().expect("thread");
        let inner = Reaper::start().expect("nested");
        for _ in 0..5 {
            assert!(defer(Box::new(Counted(done.clone()))).is_ok());
        }
        drop(inner);
        drop(outer);
        assert_eq!(
            done.load(Ordering::SeqCst),
            6,
            "the last drop waits for the queue"
        );
        assert!(
            defer(Box::new(())).is_err(),
            "no reaper once the last is gone"
        );
    }
}
