//! A private OpenSSH server on 127.0.0.1, for tests of workers over ssh: started on a
//! free port with generated host and client keys, stopped (and its files removed) when
//! dropped.
//!
//! Where `/usr/sbin/sshd` is missing, the tests that need it are built ignored, with the
//! reason (see `build.rs`), unless `COPROQ_REQUIRE_SSHD=1` (which `.ci/run` sets after
//! installing it): then they run, and a missing sshd fails them.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// A running sshd and the client settings that reach it.
#[derive(Debug)]
pub struct Sshd {
    dir: PathBuf,
    port: u16,
    server: Child,
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .stdout(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success(), "ssh-keygen failed");
}

impl Sshd {
    /// Whether sshd is installed here.
    #[must_use]
    pub fn installed() -> bool {
        Path::new(SSHD).exists()
    }

    /// Starts a server.
    ///
    /// # Panics
    ///
    /// If sshd is missing (the tests that call this are ignored where it was missing when
    /// they were built) or does not start.
    #[must_use]
    pub fn start(test: &str) -> Self {
        assert!(
            Self::installed(),
            "{test}: {SSHD} is not installed (apt-get install openssh-server)"
        );
        let dir = std::env::temp_dir().join(format!("coproq-sshd-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        keygen(&dir.join("host_key"));
        keygen(&dir.join("client_key"));
        keygen(&dir.join("stranger_key"));
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        // Root's sshd wants its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin yes\nStrictModes no\nAcceptEnv XDG_CACHE_HOME\nLogLevel ERROR\n",
            d = dir.display()
        );
        std::fs::write(dir.join("sshd_config"), config).unwrap();
        let server = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .spawn()
            .expect("sshd starts");
        let sshd = Self { dir, port, server };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sshd
    }

    /// The port it listens on (127.0.0.1).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ssh` to this server with the authorized key, ready for a remote command.
    #[must_use]
    pub fn ssh(&self) -> Command {
        self.ssh_with_key("client_key", "127.0.0.1")
    }

    /// `ssh` with a key the server does not know.
    #[must_use]
    pub fn ssh_as_stranger(&self) -> Command {
        self.ssh_with_key("stranger_key", "127.0.0.1")
    }

    /// `ssh` to a host name that does not resolve.
    #[must_use]
    pub fn ssh_to_nowhere(&self) -> Command {
        self.ssh_with_key("client_key", "no-such-host.invalid")
    }

    fn ssh_with_key(&self, key: &str, host: &str) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.arg("-i")
            .arg(self.dir.join(key))
            .args(["-p", &self.port.to_string()])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "IdentitiesOnly=yes"])
            .arg(host);
        ssh
    }

    /// `ssh` that sends `XDG_CACHE_HOME=cache` to the far side.
    #[must_use]
    pub fn ssh_with_cache(&self, cache: &Path) -> Command {
        let mut ssh = self.ssh();
        // `-o` options must come before the host: rebuild with it in front.
        let args: Vec<_> = ssh.get_args().map(ToOwned::to_owned).collect();
        let mut with = Command::new("ssh");
        with.arg("-o")
            .arg(format!("SetEnv=XDG_CACHE_HOME={}", cache.display()))
            .args(args);
        ssh = with;
        ssh
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Sessions end first (their server processes are the master's to reap), then
        // the master goes.
        let master = self.server.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !crate::children(master).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
