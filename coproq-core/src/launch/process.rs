//! The parent's hold on a worker process: its pid, waiting with a deadline, kill, reap.

use std::process::{Child, ExitStatus};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::sys;

#[derive(Debug)]
pub(crate) struct WorkerProcess {
    child: Mutex<Child>,
    pid: u32,
}

impl WorkerProcess {
    pub(crate) fn new(child: Child) -> Self {
        let pid = child.id();
        Self {
            child: Mutex::new(child),
            pid,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the worker has exited (reaping it).
    pub(crate) fn try_status(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_wait()
            .ok()
            .flatten()
    }

    /// Waits up to `timeout` for the worker to exit.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(50);
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // Sleeps until the exit where the OS can say when it happens; polls otherwise.
            if !sys::wait_exit(self.pid, deadline - now) {
                std::thread::sleep(pause.min(deadline - now));
                pause = (pause * 2).min(Duration::from_millis(10));
            }
        }
    }

    /// Kills the worker (SIGKILL) and reaps it.
    pub(crate) fn kill(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
        child.wait().ok()
    }
}
