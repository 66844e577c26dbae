//! Workers over loopback ssh, against the raw bytes through the same kind of connection
//! (`ssh host cat` as the echo): each measurement starts its own sshd on 127.0.0.1.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use coproq::Coprocess;
use coproq_tests::sshd::Sshd;

/// This binary as a worker over its stdio (`--stdio-worker`): echoes `u64`s.
pub(crate) fn stdio_worker() -> coproq::Result<()> {
    let parent = Coprocess::stdio()?;
    parent.handle("echo", |x: u64| x);
    parent.serve();
    Ok(())
}

fn sshd() -> Result<Sshd, String> {
    if !Sshd::installed() {
        return Err("sshd is not installed".to_owned());
    }
    Ok(Sshd::start("bench"))
}

fn worker(sshd: &Sshd) -> Result<Coprocess, String> {
    let mut ssh = sshd.ssh();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    ssh.arg(exe).arg("--stdio-worker");
    Coprocess::builder()
        .spawn_stdio(ssh)
        .map_err(|e| e.to_string())
}

/// `ssh host cat`, its stdin and stdout.
fn cat(sshd: &Sshd) -> Result<std::process::Child, String> {
    let mut ssh = sshd.ssh();
    ssh.arg("cat").stdin(Stdio::piped()).stdout(Stdio::piped());
    ssh.spawn().map_err(|e| e.to_string())
}

/// Mean round trip of `n` sequential 8-byte echoes through `ssh host cat`.
pub(crate) fn raw_latency(n: u32) -> Result<Duration, String> {
    let sshd = sshd()?;
    let mut child = cat(&sshd)?;
    let (mut input, mut output) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let mut buf = [0u8; 8];
    let mut round = |i: u64| -> std::io::Result<()> {
        input.write_all(&i.to_le_bytes())?;
        output.read_exact(&mut buf)
    };
    for i in 0..100 {
        round(i).map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    for i in 0..u64::from(n) {
        round(i).map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    drop(input);
    let _ = child.wait();
    Ok(elapsed / n)
}

/// Mean round trip of `n` sequential calls to a worker over ssh.
pub(crate) fn latency(n: u32) -> Result<Duration, String> {
    let sshd = sshd()?;
    let w = worker(&sshd)?;
    for i in 0..100u64 {
        w.call::<u64>("echo", i).map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    for i in 0..u64::from(n) {
        w.call::<u64>("echo", i).map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    w.close();
    Ok(elapsed / n)
}

/// 8-byte messages per second through `ssh host cat`, written by one thread and read back
/// by another.
pub(crate) fn raw_pipelined(n: u32) -> Result<f64, String> {
    let sshd = sshd()?;
    let mut child = cat(&sshd)?;
    let (mut input, mut output) = (child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        let batch: Vec<u8> = (0..1024u64).flat_map(u64::to_le_bytes).collect();
        for _ in 0..n / 1024 {
            input.write_all(&batch)?;
        }
        Ok::<_, std::io::Error>(input)
    });
    let mut back = vec![0u8; (n / 1024 * 1024) as usize * 8];
    output.read_exact(&mut back).map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    drop(
        writer
            .join()
            .map_err(|_| "writer panicked")?
            .map_err(|e| e.to_string())?,
    );
    let _ = child.wait();
    Ok(f64::from(n / 1024 * 1024) / elapsed.as_secs_f64())
}

/// Pipelined calls per second to a worker over ssh.
pub(crate) fn pipelined(n: u32) -> Result<f64, String> {
    let sshd = sshd()?;
    let w = worker(&sshd)?;
    let start = Instant::now();
    let pending: Vec<_> = (0..u64::from(n))
        .map(|i| w.call_async::<u64>("echo", i))
        .collect();
    for p in pending {
        p.wait().map_err(|e| e.to_string())?;
    }
    let elapsed = start.elapsed();
    w.close();
    Ok(f64::from(n) / elapsed.as_secs_f64())
}

/// Median start-up of `via(ssh).fork` (to the first reply): with this executable shipped
/// each time (a fresh cache), or found in the cache.
pub(crate) fn via_startup(rounds: u32, cached: bool) -> Result<Duration, String> {
    let sshd = sshd()?;
    let home = std::env::temp_dir().join(format!("coproq-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let start_one = || -> Result<Duration, String> {
        let started = Instant::now();
        let w = Coprocess::builder()
            .via(sshd.ssh_with_cache(&home))
            .fork(|parent| {
                parent.handle("echo", |x: u64| x);
            })
            .map_err(|e| e.to_string())?;
        w.call::<u64>("echo", 1u64).map_err(|e| e.to_string())?;
        let took = started.elapsed();
        w.close();
        Ok(took)
    };
    if cached {
        start_one()?;
    }
    let mut times = Vec::new();
    for _ in 0..rounds {
        if !cached {
            let _ = std::fs::remove_dir_all(&home);
        }
        times.push(start_one()?);
    }
    let _ = std::fs::remove_dir_all(&home);
    times.sort();
    Ok(times[times.len() / 2])
}
