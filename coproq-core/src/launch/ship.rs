//! Fork workers anywhere: `Builder::via(prefix).fork(entry)` runs this executable through
//! a command prefix that runs its last argument as a shell command (`ssh host`, `sh -c`).
//!
//! The far side needs a POSIX `sh` with `head -c` and `uname`, and `sha256sum` or
//! `shasum` to cache. A short script (`ship.sh`) checks the OS and CPU architecture,
//! looks for this executable in its cache
//! (`${XDG_CACHE_HOME:-$HOME/.cache}/coproq/<sha-256>`), and says on its stdout whether
//! it has it (`C`) or needs it (`S`). A cached copy counts only if it is the user's own
//! regular file, in a directory chain that nobody else can write, with the SHA-256 its
//! name says. The parent then sends the executable over the prefix's stdin, which the
//! script writes to a file it creates exclusively, checks and renames into place
//! (readable and writable by the user alone); then it starts it in fork mode, with the
//! user's own umask, and the link runs over the same stdin and stdout.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::stdio::{Handshake, Started, connect_piped, start_failed, start_piped};
use super::{EXIT_STATUS_WAIT, MARKER, Marker, Mode};
use crate::error::{Error, Result};
use crate::link::{Handlers, HandshakeError, Link, PipeOutput};
use crate::options::Options;
use crate::process::WorkerProcess;
use crate::sys;
use crate::wire::ForkEntry;

/// A command prefix that runs its last argument as a shell command.
#[derive(Debug, Clone)]
pub(crate) struct Prefix {
    program: OsString,
    args: Vec<OsString>,
    /// Variables set (`Some`) or removed (`None`) for the prefix.
    envs: Vec<(OsString, Option<OsString>)>,
    dir: Option<std::path::PathBuf>,
}

impl Prefix {
    pub(crate) fn new(cmd: &Command) -> Self {
        Self {
            program: cmd.get_program().to_owned(),
            args: cmd.get_args().map(ToOwned::to_owned).collect(),
            envs: cmd
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
                .collect(),
            dir: cmd.get_current_dir().map(ToOwned::to_owned),
        }
    }

    fn command(&self, script: String) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).arg(script);
        for (key, value) in &self.envs {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

/// This executable, read once, with the digest that names and checks it on the far side.
struct Executable {
    bytes: Vec<u8>,
    /// Its SHA-256, in lowercase hex, as `sha256sum` prints it.
    digest: String,
}

fn executable() -> io::Result<&'static Executable> {
    static EXE: OnceLock<std::result::Result<Executable, String>> = OnceLock::new();
    EXE.get_or_init(|| {
        let bytes = std::fs::read(sys::self_exe().map_err(|e| e.to_string())?)
            .map_err(|e| format!("cannot read this executable: {e}"))?;
        let digest = sha256_hex(&bytes);
        Ok(Executable { bytes, digest })
    })
    .as_ref()
    .map_err(|e| io::Error::other(e.clone()))
}

/// The SHA-256 of `bytes` in lowercase hex.
fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let mut hex = String::with_capacity(64);
    for byte in sha2::Sha256::digest(bytes) {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// What `uname -s` and `uname -m` print where this executable runs.
fn platform() -> (&'static str, &'static [&'static str]) {
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Darwin",
        "freebsd" => "FreeBSD",
        other => other,
    };
    let arch: &[&str] = match std::env::consts::ARCH {
        "x86_64" => &["x86_64", "amd64"],
        "aarch64" => &["aarch64", "arm64"],
        "x86" => &["i386", "i486", "i586", "i686"],
        _ => &[],
    };
    (os, arch)
}

/// The exit status by which the script says the far side's platform differs.
const OTHER_PLATFORM: i32 = 121;

/// The bootstrap, with `@NAME@` places for what differs per executable and start.
const SCRIPT: &str = include_str!("ship.sh");

/// What a far side that does not start the worker is asked.
const VIA_HINT: &str = "does the prefix run its last argument as a shell command (as `ssh host` \
    and `sh -c` do), and can this executable run on the far side?";

/// The script the prefix runs on the far side.
fn script(exe: &Executable, marker: &str) -> String {
    let (os, arches) = platform();
    let arch_check = if arches.is_empty() {
        String::new()
    } else {
        format!("case \"$m\" in {}) ;; *) bad=1 ;; esac", arches.join("|"))
    };
    SCRIPT
        .replace("@OS@", os)
        .replace("@ARCH_CHECK@", &arch_check)
        .replace("@OTHER_PLATFORM@", &OTHER_PLATFORM.to_string())
        .replace("@NAME@", &exe.digest)
        .replace("@DIGEST@", &exe.digest)
        .replace("@SIZE@", &exe.bytes.len().to_string())
        .replace("@MARKER_VALUE@", marker)
        .replace("@MARKER@", MARKER)
}

/// Parent side of `via(prefix).fork(entry)`: starts the worker on the far side, sending
/// this executable first if it is not cached there.
pub(crate) fn spawn_worker(
    prefix: &Prefix,
    entry: ForkEntry,
    options: &Options,
    handlers: Arc<Handlers>,
) -> Result<(Arc<Link>, Arc<WorkerProcess>)> {
    let program = prefix.program.to_string_lossy().into_owned();
    let spawn_error = |source: io::Error| Error::Spawn {
        program: program.clone(),
        source,
    };
    let exe = executable().map_err(spawn_error)?;
    let marker = Marker {
        mode: Mode::Remote,
        read: 0,
        write: 1,
        parent: 0,
        max_frame: options.link.max_frame,
        // On another machine: no descriptor crosses.
        descriptors: -1,
    };
    let cmd = prefix.command(script(exe, &marker.to_string()));
    let (mut input, output, process, tail) = start_piped(cmd, options, &spawn_error)?;
    let fail = |why: HandshakeError, reason: &str| -> Error {
        let status = process
            .wait_timeout(EXIT_STATUS_WAIT)
            .or_else(|| process.kill());
        let stderr = tail.quote();
        if status.and_then(|s| s.code()) == Some(OTHER_PLATFORM) {
            let (os, arch) = (std::env::consts::OS, std::env::consts::ARCH);
            return spawn_error(io::Error::other(format!(
                "this executable is built for {os} {arch}, but the far side differs{stderr}"
            )));
        }
        let stderr = format!("{reason}{stderr}");
        start_failed(&why, status, &stderr, &spawn_error, VIA_HINT)
    };
    // The far side says whether it has the executable.
    let deadline = Instant::now().checked_add(options.startup_timeout);
    if !sys::wait_readable(input.as_fd(), options.startup_timeout) {
        return Err(fail(HandshakeError::Silent(options.startup_timeout), ""));
    }
    let mut answer = [0u8; 1];
    match input.read(&mut answer) {
        Ok(1) if answer[0] == b'C' => {}
        Ok(1) if answer[0] == b'S' => {
            // Sent within the start-up timeout, however slowly the far side reads.
            let sent = output.try_clone().and_then(|to_far_side| {
                PipeOutput::boxed(to_far_side, None).write_until(&exe.bytes, deadline)
            });
            match sent {
                Ok(n) if n == exe.bytes.len() => {}
                Ok(_) => {
                    return Err(fail(
                        HandshakeError::Silent(options.startup_timeout),
                        " (the far side did not take the executable in time)",
                    ));
                }
                Err(_) => {
                    return Err(fail(
                        HandshakeError::Closed,
                        " (sending the executable failed)",
                    ));
                }
            }
        }
        _ => return Err(fail(HandshakeError::Closed, "")),
    }
    let handshake = Handshake {
        entry: Some(entry),
        timeout: deadline.map_or(options.startup_timeout, |d| {
            d.saturating_duration_since(Instant::now())
        }),
    };
    let started = Started {
        process: &process,
        tail: &tail,
        spawn_error: &spawn_error,
        program: &program,
        hint: VIA_HINT,
    };
    connect_piped(input, output, &started, handshake, options, handlers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_sha256sum() {
        // `printf '' | sha256sum` and `printf 'abc' | sha256sum`.
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_script_has_every_place_filled() {
        let exe = Executable {
            bytes: vec![1, 2, 3],
            digest: sha256_hex(&[1, 2, 3]),
        };
        let script = script(&exe, "remote:0:1:0:1024:-1");
        for place in [
            "@OS@",
            "@ARCH_CHECK@",
            "@NAME@",
            "@DIGEST@",
            "@SIZE@",
            "@MARKER",
        ] {
            assert!(!script.contains(place), "{place} left in {script}");
        }
        assert!(script.contains("head -c 3"));
    }
}
