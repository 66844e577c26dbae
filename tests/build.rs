//! Decides, when the tests are built, which of them this machine can run, so that a test
//! that cannot run shows as ignored, with its reason, instead of passing without running:
//!
//! - `coproq_no_sshd`: `/usr/sbin/sshd` is missing (the ssh tests need it), unless
//!   `COPROQ_REQUIRE_SSHD=1`, which makes them run, and fail, instead.
//! - `coproq_root`: the tests run as root (the `via` cache tests make files of other
//!   users).
//! - `coproq_small_memory`: the machine has under 8 GiB of memory (the 1 GiB shared
//!   memory test needs room beside the other tests).
//! - `coproq_setuid`: as root, with a temporary directory where set-user-ID bits count
//!   (not mounted `nosuid`) and without `no_new_privs` (which would void them).

use std::path::Path;

const SSHD: &str = "/usr/sbin/sshd";

fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(coproq_no_sshd, coproq_root, coproq_setuid, coproq_small_memory)"
    );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok());
    // Unknown (macOS has no /proc) counts as enough: the test then says what it needs.
    if total_kib.is_some_and(|kib| kib < 8 << 20) {
        println!("cargo::rustc-cfg=coproq_small_memory");
    }
    println!("cargo::rerun-if-env-changed=COPROQ_REQUIRE_SSHD");
    // Checked again whenever sshd comes or goes (a missing path reruns every build).
    println!("cargo::rerun-if-changed={SSHD}");
    let required = std::env::var("COPROQ_REQUIRE_SSHD").as_deref() == Ok("1");
    if !Path::new(SSHD).exists() && !required {
        println!("cargo::rustc-cfg=coproq_no_sshd");
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
    };
    let root = field("Uid:").as_deref() == Some("0");
    if root {
        println!("cargo::rustc-cfg=coproq_root");
    }
    let no_new_privs = field("NoNewPrivs:").as_deref() == Some("1");
    if root && !no_new_privs && !nosuid(&std::env::temp_dir()) {
        println!("cargo::rustc-cfg=coproq_setuid");
    }
}

/// Whether the file system holding `dir` is mounted `nosuid` (Linux; elsewhere assumed).
fn nosuid(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return true;
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    // The longest mount point that holds `dir` is the one it lies on.
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let point = fields.nth(4)?;
            let options = fields.next()?;
            dir.starts_with(point)
                .then(|| (point.len(), options.split(',').any(|o| o == "nosuid")))
        })
        .max_by_key(|(len, _)| *len)
        .is_none_or(|(_, nosuid)| nosuid)
}
