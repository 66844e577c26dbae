//! The parent's hold on a worker process: its pid, waiting with a deadline, kill, reap.

use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::sys::{self, ChildStdio, Reaped};

#[derive(Debug)]
pub(crate) struct WorkerProcess {
    pid: u32,
    reaped: Mutex<Reaping>,
    /// The parent's ends of the worker's piped stdio, until the user takes them.
    stdio: Mutex<ChildStdio>,
    /// coproq sent it SIGKILL.
    killed: AtomicBool,
}

/// Whether the worker has been reaped, and how it ended.
#[derive(Debug, Clone, Copy)]
enum Reaping {
    Running,
    /// Reaped; the status if it could be learned.
    Reaped(Option<ExitStatus>),
}

impl WorkerProcess {
    pub(crate) fn new(pid: u32, stdio: ChildStdio) -> Self {
        Self {
            pid,
            reaped: Mutex::new(Reaping::Running),
            stdio: Mutex::new(stdio),
            killed: AtomicBool::new(false),
        }
    }

    /// The worker's piped stdio, for the user to take its parts.
    pub(crate) fn stdio(&self) -> std::sync::MutexGuard<'_, ChildStdio> {
        self.stdio.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether coproq killed the worker (rather than it dying of its own accord, or of a
    /// signal from someone else).
    pub(crate) fn killed_by_coproq(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Reaps the worker if it has exited; `kill_first` sends SIGKILL and waits for it.
    fn reap(&self, kill_first: bool) -> Reaping {
        let mut state = self.reaped.lock().unwrap_or_else(PoisonError::into_inner);
        if let Reaping::Running = *state {
            if kill_first {
                // Not reaped yet (and we hold the lock), so the pid is still this
                // worker's, not a stranger's that reused it.
                self.killed.store(true, Ordering::Release);
                sys::kill(self.pid);
            }
            *state = match sys::reap(self.pid, kill_first) {
                Reaped::Running => Reaping::Running,
                Reaped::Exited(status) => Reaping::Reaped(Some(status)),
                Reaped::Gone => Reaping::Reaped(None),
            };
        }
        *state
    }

    /// The exit status if the worker has exited (reaping it).
    pub(crate) fn try_status(&self) -> Option<ExitStatus> {
        match self.reap(false) {
            Reaping::Reaped(status) => status,
            Reaping::Running => None,
        }
    }

    /// Waits up to `timeout` for the worker to exit.
    pub(crate) fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        // A timeout too long to add (`Duration::MAX`) waits a year at a time.
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_hours(8760));
        let mut pause = Duration::from_micros(50);
        loop {
            if let Reaping::Reaped(status) = self.reap(false) {
                return status;
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

    /// Waits for the process to exit, however long it takes; its status.
    pub(crate) fn wait(&self) -> Option<ExitStatus> {
        loop {
            if let Some(status) = self.wait_timeout(Duration::from_hours(1)) {
                return Some(status);
            }
            if let Reaping::Reaped(status) = self.reap(false) {
                return status;
            }
        }
    }

    /// Kills the process (SIGKILL) and reaps it; its status.
    pub(crate) fn kill(&self) -> Option<ExitStatus> {
        match self.reap(true) {
            Reaping::Reaped(status) => status,
            Reaping::Running => None,
        }
    }
}
