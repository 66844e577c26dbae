//! Fork workers: the current executable started again, running a given function.
//!
//! Functions travel as offsets from [`anchor`], which are the same in every run of the
//! same executable whatever address-space randomisation does. They are sent in the
//! parent's `Hello`, not in the environment, so a process started by hand with the marker
//! runs nothing it was not sent by a parent that holds its pipes. Two travel: the user's
//! entry, and the monomorphic `run` function that decodes the entry's data (for
//! `fork_with`) and calls it.
//!
//! This holds only for functions of the executable itself: an entry inside a shared
//! library loaded at a different place in the worker is not supported (`fork`'s docs say
//! so).
//!
//! When the entry returns, the worker reports it as the reply to the reserved call id
//! `ENTRY_ID` (a value, or a failure if it panicked or its data did not decode); the
//! parent's `fork` waits for it, so a worker whose entry fails never looks started.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bytes::ByteBuf;
use crate::coprocess::Coprocess;
use crate::options::Options;
use crate::sys;
use crate::wire::{ForkEntry, codec};

/// What the worker calls: decodes the data and runs the entry at the given address.
type Run = fn(&Coprocess, usize, &[u8]) -> Result<(), String>;

/// The fixed point that offsets are measured from.
#[inline(never)]
fn anchor() {}

fn offset(function: *const ()) -> u64 {
    (function as usize).wrapping_sub(anchor as *const () as usize) as u64
}

fn address(offset: u64) -> usize {
    (anchor as *const () as usize).wrapping_add(offset as usize)
}

/// The entry of a plain `fork`.
pub(crate) fn plain_entry(entry: fn(&Coprocess)) -> ForkEntry {
    ForkEntry {
        run: offset(run_plain as Run as *const ()),
        function: offset(entry as *const ()),
        data: ByteBuf::default(),
    }
}

/// The entry of `fork_with`: `data` travels encoded with its shape.
pub(crate) fn entry_with<D: Serialize + DeserializeOwned>(
    data: &D,
    entry: fn(&Coprocess, D),
) -> Result<ForkEntry, String> {
    let mut bytes = Vec::new();
    codec::encode_shaped(data, &mut bytes).map_err(|e| e.to_string())?;
    Ok(ForkEntry {
        run: offset(run_with::<D> as Run as *const ()),
        function: offset(entry as *const ()),
        data: ByteBuf(bytes),
    })
}

#[allow(
    clippy::unnecessary_wraps,
    reason = "every entry runner has the `Run` signature"
)]
fn run_plain(coproc: &Coprocess, function: usize, _: &[u8]) -> Result<(), String> {
    // SAFETY: `function` is the address, in this same executable, of the `fn(&Coprocess)`
    // whose offset the parent's `plain_entry` took (the parent sent `run_plain` with it).
    let entry = unsafe { std::mem::transmute::<usize, fn(&Coprocess)>(function) };
    entry(coproc);
    Ok(())
}

fn run_with<D: DeserializeOwned>(
    coproc: &Coprocess,
    function: usize,
    data: &[u8],
) -> Result<(), String> {
    let data: D =
        codec::decode_shaped(data).map_err(|e| format!("could not decode its data: {e}"))?;
    // SAFETY: `function` is the address, in this same executable, of the
    // `fn(&Coprocess, D)` whose offset the parent's `entry_with::<D>` took; that call also
    // sent this very `run_with::<D>`, so `D` is the same type.
    let entry = unsafe { std::mem::transmute::<usize, fn(&Coprocess, D)>(function) };
    entry(coproc, data);
    Ok(())
}

/// Runs a fork worker: connect, run the entry, report, serve, exit. Called before `main`.
pub(crate) fn run_worker(fds: super::ParentFds, max_frame: u32) -> ! {
    let mut options = Options::default();
    options.link.max_frame = max_frame;
    let (coproc, hello) = match super::connect_to_parent(fds, &options, Arc::default()) {
        Ok(connected) => connected,
        Err(e) => super::worker_exit_with(&format!("cannot connect to the parent: {e}")),
    };
    exit_when_orphaned();
    run_entry(&coproc, hello)
}

/// A fork worker started through a command prefix (`Builder::via`), whose link is its
/// stdin and stdout.
pub(crate) fn run_remote_worker(max_frame: u32) -> ! {
    let mut options = Options::default();
    options.link.max_frame = max_frame;
    let (coproc, hello) = match super::stdio::connect_with_hello(&options, Arc::default()) {
        Ok(connected) => connected,
        Err(e) => super::worker_exit_with(&format!("cannot connect to the parent: {e}")),
    };
    run_entry(&coproc, hello)
}

/// Runs the entry the parent's `Hello` names, reports it, then serves until the parent
/// goes away.
fn run_entry(coproc: &Coprocess, hello: crate::wire::Hello) -> ! {
    let Some(entry) = hello.entry else {
        super::worker_exit_with("the parent sent no entry function");
    };
    // SAFETY: this process is an exec of the parent's own executable, and the parent
    // computed `entry.run` from a real `Run` function of it (`plain_entry`, `entry_with`),
    // which is therefore at this offset from `anchor` here. On Linux the exec goes through
    // `/proc/self/exe`, the very file the parent runs even if it was replaced since; on
    // other Unixes it goes by path, so replacing the executable while a parent runs (a
    // rebuild) can start a different one: `fork`'s docs say so. Functions of shared
    // libraries are not supported (their offsets differ between processes), as the docs
    // say too.
    let run = unsafe { std::mem::transmute::<usize, Run>(address(entry.run)) };
    let function = address(entry.function);
    let failure = match catch_unwind(AssertUnwindSafe(|| run(coproc, function, &entry.data.0))) {
        Ok(Ok(())) => None,
        Ok(Err(reason)) => Some(reason),
        Err(panic) => Some(crate::error::panicked(&*panic)),
    };
    let failed = failure.is_some();
    coproc.report_entry(failure);
    if failed {
        coproc.drain_output();
        // The parent's `fork` fails with the message; the exit status says the same.
        std::process::exit(101);
    }
    coproc.serve();
    // Threads the user started may still run; like returning from `main`, this ends them.
    std::process::exit(0)
}

/// A worker whose parent died must not outlive it, even while a handler is stuck and
/// nothing reads the link. Where the kernel's parent-death signal does this (Linux),
/// nothing more is needed, and an idle worker uses no CPU at all; elsewhere a thread
/// looks every 100 ms whether this process was handed to a new parent, and exits then.
fn exit_when_orphaned() {
    if sys::parent_death_signalled() {
        return;
    }
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
