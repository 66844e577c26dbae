//! A worker's memory: its limit (set by the worker on itself), its resident size (read
//! by the parent between calls), and the kernel's count of out-of-memory kills.

use std::io;

use rustix::process::{Resource, Rlimit, setrlimit};

/// Limits this process's data (heap and private writable mappings) to `bytes`: an
/// allocation past it fails. Linux enforces `RLIMIT_DATA` for `mmap` too (since 4.7);
/// macOS accepts the limit but enforces it for `brk` alone, which Rust's allocator does
/// not use for large allocations.
pub(crate) fn limit_memory(bytes: u64) -> io::Result<()> {
    let limit = Rlimit {
        current: Some(bytes),
        maximum: Some(bytes),
    };
    setrlimit(Resource::Data, limit).map_err(io::Error::from)
}

/// The resident size of process `pid`, in bytes, where the system says.
#[cfg(target_os = "linux")]
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    // `statm`: sizes in pages; the second is the resident set.
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// The resident size of process `pid`, in bytes, where the system says.
#[cfg(target_vendor = "apple")]
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    super::libc::resident_bytes(pid)
}

/// The resident size of process `pid`, in bytes, where the system says.
#[cfg(not(any(target_os = "linux", target_vendor = "apple")))]
pub(crate) fn resident_bytes(_pid: u32) -> Option<u64> {
    None
}

/// The number of out-of-memory kills the kernel counted where process `pid` runs: its
/// memory cgroup's (v2 `memory.events`, v1 `memory.oom_control`), or the system's
/// (`/proc/vmstat`) where the cgroup's cannot be read. A count that grew while a worker
/// ran, and a worker dead of SIGKILL, say that the killer took it. Linux only.
#[cfg(target_os = "linux")]
pub(crate) fn oom_kills(pid: u32) -> Option<OomCounter> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let mut files = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            files.push(format!("/sys/fs/cgroup{path}/memory.events"));
            files.push(format!("/sys/fs/cgroup/unified{path}/memory.events"));
        } else if controllers.split(',').any(|c| c == "memory") {
            files.push(format!("/sys/fs/cgroup/memory{path}/memory.oom_control"));
        }
    }
    // A cgroup namespace shows the process's own cgroup as the root of the mount.
    files.push("/sys/fs/cgroup/memory.events".into());
    files.push("/sys/fs/cgroup/memory/memory.oom_control".into());
    files.push("/proc/vmstat".into());
    files.into_iter().find_map(|file| {
        let count = read_oom_kills(&file)?;
        Some(OomCounter { file, count })
    })
}

/// The number of out-of-memory kills the kernel counted: Linux only.
#[cfg(not(target_os = "linux"))]
pub(crate) fn oom_kills(_pid: u32) -> Option<OomCounter> {
    None
}

/// Where the kernel counts out-of-memory kills, and the count when it was read.
#[derive(Debug, Clone)]
pub(crate) struct OomCounter {
    file: String,
    count: u64,
}

impl OomCounter {
    /// Whether the kernel counted an out-of-memory kill since this was read.
    pub(crate) fn grew(&self) -> bool {
        read_oom_kills(&self.file).is_some_and(|now| now > self.count)
    }
}

/// The `oom_kill` line of a counter file.
fn read_oom_kills(file: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}
