//! The few OS facts the benchmark needs: CPU pinning, pipe sizes, resident memory.

use std::os::fd::AsRawFd;

/// Pins this process (and the workers it starts afterwards) to one CPU.
pub(crate) fn pin_to_cpu(cpu: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
            eprintln!(
                "coproq-bench: cannot pin to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    eprintln!("coproq-bench: CPU pinning is Linux-only; cpu {cpu} ignored");
}

/// The environment variable through which a measurement pins its workers.
pub(crate) const WORKER_CPU: &str = "COPROQ_BENCH_WORKER_CPU";

/// In a worker: pins it where the measurement asked, if it asked.
pub(crate) fn pin_worker() {
    if let Some(cpu) = std::env::var(WORKER_CPU).ok().and_then(|v| v.parse().ok()) {
        pin_to_cpu(cpu);
    }
}

/// Asks for a 1 MiB pipe buffer (Linux); returns the size obtained.
pub(crate) fn enlarge_pipe(fd: &impl AsRawFd) -> usize {
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on an open descriptor.
    unsafe {
        let size = libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
        if size > 0 {
            return size as usize;
        }
    }
    let _ = fd;
    64 * 1024
}

/// The resident set size of `pid` in KiB (Linux; 0 elsewhere).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// CPU time (user + system) this process has used so far, in µs, from `getrusage`.
pub(crate) fn cpu_micros() -> u64 {
    rusage_micros(libc::RUSAGE_SELF)
}

/// CPU time (user + system) the calling thread has used so far, in µs, where the system
/// says (Linux).
#[cfg_attr(
    target_os = "linux",
    allow(
        clippy::unnecessary_wraps,
        reason = "`None` where the system does not count per thread"
    )
)]
pub(crate) fn thread_cpu_micros() -> Option<u64> {
    #[cfg(target_os = "linux")]
    return Some(rusage_micros(libc::RUSAGE_THREAD));
    #[cfg(not(target_os = "linux"))]
    None
}

fn rusage_micros(who: libc::c_int) -> u64 {
    // SAFETY: getrusage writes into the zeroed struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &raw mut usage);
        usage
    };
    let micros = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    micros(usage.ru_utime) + micros(usage.ru_stime)
}
