//! Helpers shared by coproq's integration tests: deadlines, process and descriptor
//! checks. Every wait here is bounded, so a hung worker fails a test instead of CI.

pub mod flood;
pub mod services;
pub mod shop;
pub mod sshd;
pub mod story;

use std::time::{Duration, Instant};

use coproq::Coprocess;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The wire protocol version that coproq speaks, for tests that speak it by hand: the
/// crate's own.
pub use coproq::PROTOCOL_VERSION;

/// A hand-built parent's `Hello` frame of protocol `version` (accepting frames up to
/// 1 GiB, no fork entry), for tests that play one end of a link without coproq.
#[must_use]
pub fn raw_hello(version: u32) -> Vec<u8> {
    let mut payload = b"\0coproq\0".to_vec();
    payload.extend_from_slice(&version.to_le_bytes());
    payload.extend_from_slice(&(1u32 << 30).to_le_bytes()); // max_frame
    payload.push(0); // entry: None
    payload.push(1); // parent: true
    payload.extend_from_slice(&0u32.to_le_bytes()); // heartbeat_ms: none
    payload.extend_from_slice(&0u32.to_le_bytes()); // spin_us: never
    payload.extend_from_slice(&(4u32 << 20).to_le_bytes()); // window
    payload.extend_from_slice(&1u32.to_le_bytes()); // concurrency: one call at a time
    payload.push(0); // report_starts: no
    payload.extend_from_slice(&0u64.to_le_bytes()); // memory_limit: none
    payload.extend_from_slice(&0u64.to_le_bytes()); // clock_us: not offered
    payload.push(0); // descriptors: no socket
    payload.extend_from_slice(&std::process::id().to_le_bytes()); // pid
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend(payload);
    frame
}

/// The longest any single call in a test may take before the test fails.
pub const CALL_LIMIT: Duration = Duration::from_secs(30);

/// `call` with a deadline: a hung peer fails the test with `Timeout` instead of hanging.
pub fn call<R: DeserializeOwned>(
    coproc: &Coprocess,
    method: &str,
    args: impl Serialize,
) -> coproq::Result<R> {
    coproc.call_async(method, args).wait_timeout(CALL_LIMIT)
}

/// Runs `body` on its own thread and fails the test if it has not finished within
/// `limit`: for tests whose waits cannot carry a deadline themselves (a blocking `emit`).
///
/// # Panics
///
/// If `body` panics or overruns `limit`: that is the test failing.
pub fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(body());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = worker.join();
            value
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("did not finish within {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // The body panicked: report its panic.
            match worker.join() {
                Err(panic) => std::panic::resume_unwind(panic),
                Ok(()) => unreachable!("the body returned without sending"),
            }
        }
    }
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether process `pid` has exited (gone, or a zombie nobody reaped yet).
pub fn process_gone(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state is the field after the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
            Err(_) => true,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(pid as libc::pid_t, 0) == -1 }
    }
}

/// Whether `pid` is a zombie of ours, or exists at all (for "reaped" checks).
pub fn process_exists(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// How many file descriptors this process has open.
pub fn open_fds() -> usize {
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

/// This process's peak resident set size in KiB (Linux), for memory bounds.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// The pids of `pid`'s children (Linux; none elsewhere).
#[must_use]
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: sending a signal to a process this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// The CPU time (user + system) this process has used so far, from `getrusage`.
#[must_use]
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &raw mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// A file path for one test, alone in a directory of its own under the system's temporary
/// directory; the directory goes, with whatever was written there, when this is dropped.
/// Derefs to the file's path.
#[derive(Debug)]
pub struct ScratchFile {
    dir: std::path::PathBuf,
    path: std::path::PathBuf,
}

impl ScratchFile {
    /// `name` in `coproq-{group}-{pid}-{name}/`, which starts empty.
    ///
    /// # Panics
    ///
    /// If the directory cannot be made.
    #[must_use]
    pub fn new(group: &str, name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("coproq-{group}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Self {
            path: dir.join(name),
            dir,
        }
    }

    /// The path as text, to hand to a worker.
    ///
    /// # Panics
    ///
    /// If the temporary directory's path is not UTF-8.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.path.to_str().expect("a UTF-8 temporary directory")
    }
}

impl std::ops::Deref for ScratchFile {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    //! `fork` from a unit test of a library crate: the libtest binary is the worker.

    #[test]
    fn fork_works_inside_a_unit_test() {
        let worker = coproq::fork(|parent| {
            parent.handle("triple", |x: i64| x * 3);
        })
        .unwrap();
        assert_eq!(super::call::<i64>(&worker, "triple", 14i64).unwrap(), 42);
        let status = worker.close().expect("the worker was reaped");
        assert!(status.success(), "{status}");
    }
}

/// A future that is ready `after` from its first poll, woken by a thread of its own: a
/// timer that needs no async runtime, for async handlers on coproq's own executor.
#[must_use]
pub fn nap(after: Duration) -> Nap {
    Nap { after, state: None }
}

/// See [`nap`].
#[derive(Debug)]
pub struct Nap {
    after: Duration,
    state: Option<std::sync::Arc<std::sync::Mutex<NapState>>>,
}

/// Whether a [`Nap`] is over, and whom to wake when it is.
type NapState = (bool, Option<std::task::Waker>);

impl std::future::Future for Nap {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let after = self.after;
        let state = self.state.get_or_insert_with(|| {
            let state =
                std::sync::Arc::new(std::sync::Mutex::new((false, None::<std::task::Waker>)));
            let timer = std::sync::Arc::clone(&state);
            std::thread::spawn(move || {
                std::thread::sleep(after);
                let mut done = timer.lock().unwrap();
                done.0 = true;
                if let Some(waker) = done.1.take() {
                    waker.wake();
                }
            });
            state
        });
        let mut done = state.lock().unwrap();
        if done.0 {
            std::task::Poll::Ready(())
        } else {
            done.1 = Some(cx.waker().clone());
            std::task::Poll::Pending
        }
    }
}
