//! A fork worker on another machine: `cargo run -p coproq-examples --example remote -- HOST`
//! runs it through `ssh HOST` (key-based login, `BatchMode=yes`); without a host, through
//! `sh -c` on this machine. The first run sends this executable to the far side's cache
//! (`~/.cache/coproq/`); later runs find it there and send nothing.

use std::process::Command;
use std::time::{Duration, Instant};

fn main() -> coproq::Result<()> {
    let prefix = if let Some(host) = std::env::args().nth(1) {
        let mut ssh = Command::new("ssh");
        ssh.args(["-o", "BatchMode=yes", &host]);
        ssh
    } else {
        let mut sh = Command::new("sh");
        sh.arg("-c");
        sh
    };
    let started = Instant::now();
    let worker = coproq::Coprocess::builder()
        .heartbeat(Duration::from_secs(5))
        .handle("log", |line: String| println!("worker says: {line}"))
        .via(prefix)
        .fork(|parent| {
            let back = parent.clone();
            parent.handle("where", move |()| -> coproq::Result<String> {
                let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                back.call::<()>("log", format!("running as pid {}", std::process::id()))?;
                Ok(format!(
                    "{} on {} {}",
                    host.trim(),
                    std::env::consts::OS,
                    std::env::consts::ARCH
                ))
            });
        })?;
    println!("worker started in {:.0?}", started.elapsed());
    let answer: String = worker.call("where", ())?;
    println!("the worker runs on: {answer}");
    worker.close();
    Ok(())
}
