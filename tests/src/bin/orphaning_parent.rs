//! A parent that dies without closing its worker, for the "no orphans" tests. It forks a
//! worker, prints the worker's pid on stdout, then, as `argv[1]` says:
//!
//! - `idle`: waits to be killed.
//! - `busy`: waits to be killed while the worker is stuck in a handler that never returns.
//! - `exit`: exits normally without closing the worker.

use std::io::Write;
use std::time::Duration;

fn main() {
    let worker = coproq::fork(|parent| {
        parent.handle("spin", |(): ()| -> () {
            loop {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    })
    .expect("fork");
    let mode = std::env::args().nth(1).unwrap_or_default();
    if mode == "busy" {
        let pending = worker.call_async::<()>("spin", ());
        std::mem::forget(pending);
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("{}", worker.pid().expect("a worker pid"));
    std::io::stdout().flush().unwrap();
    if mode == "exit" {
        // Leave without closing: `process::exit` runs no destructors.
        std::process::exit(0);
    }
    std::thread::sleep(Duration::from_mins(2));
}
