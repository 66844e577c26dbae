//! Fork workers: the current executable started again, running a given function.
//!
//! The function travels as its offset from [`anchor`], which is the same in every run of
//! the same executable whatever address-space randomisation does. It is sent in the
//! parent's `Hello`, not in the environment, so a process started by hand with the
//! marker runs nothing it was not sent by a parent that holds its pipes.

use super::{Mode, sys};
use crate::coprocess::{Coprocess, Options};

/// The fixed point that entry offsets are measured from.
#[inline(never)]
fn anchor() {}

pub(crate) fn entry_offset(entry: fn(&Coprocess)) -> u64 {
    (entry as *const () as usize).wrapping_sub(anchor as *const () as usize) as u64
}

/// Runs a fork worker: connect, run the entry, serve, exit. Called before `main`.
pub(crate) fn run_worker(read: i32, write: i32) -> ! {
    let options = Options::default();
    let (coproc, entry) = match super::connect_to_parent(
        read,
        write,
        Mode::Fork,
        &options,
        std::sync::Arc::default(),
    ) {
        Ok(connected) => connected,
        Err(e) => super::worker_exit_with(&format!("cannot connect to the parent: {e}")),
    };
    exit_soon_if_abandoned(&coproc);
    let Some(offset) = entry else {
        super::worker_exit_with("the parent sent no entry function");
    };
    let address = (anchor as *const () as usize).wrapping_add(offset as usize);
    // SAFETY: this process is an exec of the parent's own executable (see `self_exe`),
    // so the offset, computed by the parent from a real `fn(&Coprocess)`, points at that
    // same function here.
    let entry: fn(&Coprocess) = unsafe { std::mem::transmute::<usize, fn(&Coprocess)>(address) };
    if std::panic::catch_unwind(|| entry(&coproc)).is_err() {
        // The panic hook has printed the message; the parent sees the exit status.
        std::process::exit(101);
    }
    coproc.serve();
    if coproc.abandoned() {
        // The parent died: stop now, whatever other threads are doing.
        std::process::exit(0);
    }
    // Threads the user started may still run; like returning from `main`, this ends them.
    std::process::exit(0)
}

/// A worker whose parent died must not outlive it, even while a handler is stuck and
/// nothing reads the link (Linux's parent-death signal covers that there; this covers
/// every Unix): when this process is handed to a new parent, it exits.
fn exit_soon_if_abandoned(_coproc: &Coprocess) {
    let parent = sys::parent_pid();
    let _ = std::thread::Builder::new()
        .name("coproq-watchdog".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if sys::parent_pid() != parent {
                    std::process::exit(0);
                }
            }
        });
}
