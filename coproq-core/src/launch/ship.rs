//! Fork workers anywhere: `Builder::via(prefix).fork(entry)` runs this executable through
//! a command prefix that runs its last argument as a shell command (`ssh host`, `sh -c`).
//!
//! The far side needs only a POSIX `sh` (and `head -c`, `cksum`, `uname`). A short script
//! checks the OS and CPU architecture, looks for this executable in its cache
//! (`${XDG_CACHE_HOME:-$HOME/.cache}/coproq/<hash>-<size>`, checked by `cksum`), and says
//! on its stdout whether it has it (`C`) or needs it (`S`). The parent then sends the
//! executable over the prefix's stdin, which the script writes to a temporary name,
//! checks and renames into place (readable and writable by the user alone); then it
//! execs it in fork mode, and the link runs over the same stdin and stdout.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::stdio::{Handshake, Started, connect_piped, start_failed, start_piped};
use super::{EXIT_STATUS_WAIT, MARKER, Marker, Mode};
use crate::error::{Error, Result};
use crate::link::{Handlers, HandshakeError, Link};
use crate::options::Options;
use crate::process::WorkerProcess;
use crate::sys;
use crate::wire::Entry;

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

/// This executable, read once, with what names and checks it on the far side.
struct Executable {
    bytes: Vec<u8>,
    /// `cksum`'s output for it: CRC and size.
    cksum: String,
    /// The cache file's name.
    name: String,
}

fn executable() -> io::Result<&'static Executable> {
    static EXE: OnceLock<std::result::Result<Executable, String>> = OnceLock::new();
    EXE.get_or_init(|| {
        let bytes = std::fs::read(sys::self_exe().map_err(|e| e.to_string())?)
            .map_err(|e| format!("cannot read this executable: {e}"))?;
        let cksum = format!("{} {}", posix_cksum(&bytes), bytes.len());
        let name = format!("{:016x}-{}", fnv1a(&bytes), bytes.len());
        Ok(Executable { bytes, cksum, name })
    })
    .as_ref()
    .map_err(|e| io::Error::other(e.clone()))
}

/// The CRC that POSIX `cksum` prints: CRC-32 (polynomial 0x04C11DB7, MSB first) over the
/// bytes and then their length, complemented.
fn posix_cksum(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = (i as u32) << 24;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04C1_1DB7
                } else {
                    crc << 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let update = |crc: u32, byte: u8| (crc << 8) ^ TABLE[((crc >> 24) ^ u32::from(byte)) as usize];
    let mut crc = bytes.iter().fold(0u32, |crc, &b| update(crc, b));
    let mut len = bytes.len();
    while len > 0 {
        crc = update(crc, (len & 0xff) as u8);
        len >>= 8;
    }
    !crc
}

/// A 64-bit FNV-1a hash, for the cache file's name (the content is checked by `cksum`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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

/// The script the prefix runs on the far side.
fn script(exe: &Executable, marker: &str) -> String {
    let (os, arches) = platform();
    let arch_check = if arches.is_empty() {
        String::new()
    } else {
        format!("case \"$m\" in {}) ;; *) bad=1 ;; esac; ", arches.join("|"))
    };
    format!(
        r#"s=$(uname -s); m=$(uname -m); bad=; [ "$s" = "{os}" ] || bad=1; {arch_check}if [ -n "$bad" ]; then echo "coproq: the far side runs $s $m" >&2; exit {OTHER_PLATFORM}; fi
umask 077; d="${{XDG_CACHE_HOME:-$HOME/.cache}}/coproq"; f="$d/{name}"
if [ -f "$f" ] && [ -x "$f" ] && [ "$(cksum < "$f")" = "{cksum}" ]; then printf C; else
printf S; mkdir -p "$d" && chmod 700 "$d" || exit 1; t="$f.$$.tmp"; head -c {size} > "$t" || exit 1
if [ "$(cksum < "$t")" != "{cksum}" ]; then rm -f "$t"; echo "coproq: the executable arrived damaged" >&2; exit 1; fi
chmod 700 "$t" && mv -f "$t" "$f" || exit 1; fi
{MARKER}='{marker}' exec "$f""#,
        name = exe.name,
        cksum = exe.cksum,
        size = exe.bytes.len(),
    )
}

/// Parent side of `via(prefix).fork(entry)`: starts the worker on the far side, sending
/// this executable first if it is not cached there.
pub(crate) fn spawn_worker(
    prefix: &Prefix,
    entry: Entry,
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
    };
    let cmd = prefix.command(script(exe, &marker.to_string()));
    let (mut input, mut output, process, tail) = start_piped(cmd, options, &spawn_error)?;
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
        start_failed(&why, status, &stderr, &spawn_error)
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
            if output
                .write_all(&exe.bytes)
                .and_then(|()| output.flush())
                .is_err()
            {
                return Err(fail(
                    HandshakeError::Closed,
                    " (sending the executable failed)",
                ));
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
    };
    connect_piped(input, output, &started, handshake, options, handlers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cksum_matches_posix_cksum() {
        // `printf '' | cksum` and `printf 'hello\n' | cksum`.
        assert_eq!(posix_cksum(b""), 4_294_967_295);
        assert_eq!(posix_cksum(b"hello\n"), 3_015_617_425);
    }
}
